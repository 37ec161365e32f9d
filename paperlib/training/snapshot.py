"""Evaluation snapshots (generator only), atomic file writes, and reading .pt files safely.

Resume state (networks, optimisers, schedulers, RNG, step) lives in the run folder's
`checkpoint-latest.pt` (`paperlib.training.checkpoint`); what evaluation, colorize and the
notebooks load is the much smaller generator snapshot kept apart from it.

Every .pt file is read by `load_pt`: torch's weights-only unpickler, which builds tensors and
plain values (dicts, lists, tuples, numbers, strings) and refuses anything else, so a shared
or downloaded file cannot run code when it is opened. Snapshots have always held only such
values; checkpoints written before their NumPy RNG state was stored as a tensor hold one
uint32 NumPy array, which is allowed as data (`NUMPY_ARRAY_GLOBALS`).
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import Config, from_dict, to_dict
from ..core.model import Generator
from ..paths import atomic_write

FINAL = "snapshot-final.pt"

# What a pickled uint32 NumPy array needs (found through ndarray's own reduce, which names the
# reconstruct function of whichever NumPy is installed): it rebuilds an array from bytes and
# calls nothing else, so allowing it keeps loading free of code.
NUMPY_ARRAY_GLOBALS = [np.ndarray(0).__reduce__()[0], np.ndarray, np.dtype,
                       type(np.dtype(np.uint32))]


class UnsafeFileError(ValueError):
    """A .pt file holding a pickled object other than tensors and plain values; not loaded."""


def load_pt(path: str | os.PathLike):
    """torch.load that runs no code: tensors, plain values and uint32 NumPy arrays only.
    A file holding anything else is an UnsafeFileError naming it and what it holds; an
    unreadable one (truncated, empty, not a torch file) is a ValueError naming it."""
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAY_GLOBALS), warnings.catch_warnings():
            # a damaged file's first byte can read as an odd pickle protocol; torch warns about
            # it before failing, and the failure below already names the file
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        # torch's message is a page of advice; the name of the refused object is what matters
        found = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(e))
        if found:
            raise UnsafeFileError(
                f"{path} was not loaded: it holds a pickled object ({found.group(1) or found.group(2)}) "
                f"besides tensors and plain values, and unpickling it could run code; paperlib "
                f"snapshots and checkpoints never hold one") from None
        raise ValueError(f"{path} is unreadable (not a file torch.save wrote)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        # the first sentence: torch's zip reader goes on with advice about checkpoints
        detail = str(e).strip().splitlines()[0].split(". ")[0][:200] if str(e).strip() else ""
        raise ValueError(f"{path} is unreadable ({type(e).__name__}"
                         f"{': ' + detail if detail else ''})") from None


def atomic_save(obj, path: str | os.PathLike, **kwargs) -> None:
    """torch.save through a temp file and a rename: a kill never leaves half a checkpoint.
    `kwargs` go to `paths.atomic_write` (previous=..., at=...)."""
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
    path = resolve_snapshot(run_or_file)
    blob = load_pt(path)
    if isinstance(blob, dict) and "G" in blob and "opt_g" in blob:
        raise ValueError(f"{path} is a training checkpoint (resume state), not a generator "
                         f"snapshot: pass the run folder or one of its snapshot-*.pt files")
    if not isinstance(blob, dict) or "generator" not in blob or "config" not in blob:
        raise ValueError(f"{path} is not a paperlib generator snapshot (missing keys)")
    theirs, step = blob["generator"], blob.get("step", 0)
    # An edited or foreign file can hold anything under the right keys; each is checked here
    # so that it fails with the file's name, not deep inside torch.
    if not isinstance(theirs, dict) or not all(isinstance(k, str) and torch.is_tensor(v)
                                               for k, v in theirs.items()):
        raise ValueError(f"{path} is not a paperlib generator snapshot (its 'generator' entry "
                         f"is {type(theirs).__name__}, not a dict of named tensors)")
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"{path} is not a paperlib generator snapshot (its 'step' entry is "
                         f"{step!r}, not an integer)")
    try:
        config = from_dict(blob["config"])
        g = Generator(config.model)
    except Exception as e:  # a config dict of the wrong shape fails in many ways
        raise ValueError(f"{path} is not a paperlib generator snapshot (its stored config "
                         f"cannot build a generator: {type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    mine = g.state_dict()
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
    return g.to(device).eval(), config, step
