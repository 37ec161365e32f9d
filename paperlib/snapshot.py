"""Evaluation snapshots (generator only) and atomic file writes.

Resume state (networks, optimisers, schedulers, RNG, step) lives in the run folder's
`checkpoint-latest.pt` and is written by `paperlib.train`; what evaluation, colorize and the
notebooks load is the much smaller generator snapshot kept apart from it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import Config, from_dict, to_dict
from .paths import atomic_write

FINAL = "snapshot-final.pt"


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save through a temp file and a rename: a kill never leaves half a checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f))


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
    found = sorted(p.glob("snapshot-*.pt"), key=lambda f: f.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{p} holds no generator snapshot (snapshot-*.pt): "
                                f"has its training run finished?")
    return found[-1]


def load_generator(run_or_file, device: str | torch.device = "cpu"):
    """Return (generator in eval mode, Config, step) from a run folder or snapshot file."""
    from .model import Generator

    path = resolve_snapshot(run_or_file)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable paperlib snapshot: {e}") from None
    if not isinstance(blob, dict) or "generator" not in blob or "config" not in blob:
        raise ValueError(f"{path} is not a paperlib generator snapshot (missing keys)")
    config = from_dict(blob["config"])
    g = Generator(config.model)
    g.load_state_dict(blob["generator"])
    return g.to(device).eval(), config, int(blob.get("step", 0))
