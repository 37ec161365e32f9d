"""Evaluation snapshots (generator only) and atomic file writes.

Resume state (networks, optimisers, schedulers, RNG, step) lives in the run folder's
`checkpoint-latest.pt` (`paperlib.training.checkpoint`); what evaluation, colorize and the
notebooks load is the much smaller generator snapshot kept apart from it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import Config, from_dict, to_dict
from ..paths import atomic_write

FINAL = "snapshot-final.pt"


def atomic_save(obj, path: str | os.PathLike, **kwargs) -> None:
    """torch.save through a temp file and a rename: a kill never leaves half a checkpoint.
    `kwargs` go to `paths.atomic_write` (previous=..., fault=...)."""
    atomic_write(path, lambda f: torch.save(obj, f), **kwargs)


def save_snapshot(generator: torch.nn.Module, config: Config, step: int, path) -> None:
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    atomic_save({"generator": state, "config": to_dict(config), "step": int(step)}, path)


def resolve_snapshot(run_or_file: str | os.PathLike) -> Path:
    """A run folder (its final snapshot, else the newest one) or a snapshot file itself."""
    p = Path(run_or_file)
    if p.is_file():
        return p
    if not p.exists():
        raise FileNotFoundError(f"no run folder or snapshot file at {p}")
    if (p / FINAL).is_file():
        return p / FINAL
    # glob's order is the file system's; the name (zero-padded step) orders equal mtimes, as
    # after a copy or checkout that gave every file the same one
    found = sorted(p.glob("snapshot-*.pt"), key=lambda f: (f.stat().st_mtime, f.name))
    if not found:
        raise FileNotFoundError(f"{p} holds no generator snapshot (snapshot-*.pt): "
                                f"has its training run finished?")
    return found[-1]


def load_generator(run_or_file, device: str | torch.device = "cpu"):
    """Return (generator in eval mode, Config, step) from a run folder or snapshot file."""
    from ..core.model import Generator

    path = resolve_snapshot(run_or_file)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable paperlib snapshot: {e}") from None
    if isinstance(blob, dict) and "G" in blob and "opt_g" in blob:
        raise ValueError(f"{path} is a training checkpoint (resume state), not a generator "
                         f"snapshot: pass the run folder or one of its snapshot-*.pt files")
    if not isinstance(blob, dict) or "generator" not in blob or "config" not in blob:
        raise ValueError(f"{path} is not a paperlib generator snapshot (missing keys)")
    config = from_dict(blob["config"])
    g = Generator(config.model)
    mine = g.state_dict()
    theirs = blob["generator"]
    wrong = [k for k in mine if k in theirs and tuple(theirs[k].shape) != tuple(mine[k].shape)]
    absent = [k for k in mine if k not in theirs] + [k for k in theirs if k not in mine]
    if wrong or absent:
        # A snapshot whose weights were not made with the config stored beside them (edited
        # or stitched together); torch's own message would list every tensor.
        first = (f"{wrong[0]} is {tuple(theirs[wrong[0]].shape)} in the file but "
                 f"{tuple(mine[wrong[0]].shape)} for the stored config" if wrong
                 else f"{absent[0]} is in only one of them")
        raise ValueError(f"{path}: its weights do not fit the config stored with it "
                         f"(model.width={config.model.width}, model.aggregation="
                         f"{config.model.aggregation!r}, profile {config.profile!r}): "
                         f"{len(wrong) + len(absent)} tensors differ, e.g. {first}")
    g.load_state_dict(theirs)
    return g.to(device).eval(), config, int(blob.get("step", 0))
