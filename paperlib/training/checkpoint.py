"""Resume state of a training run: what checkpoint-latest.pt holds, and how a run folder is resumed.

A checkpoint holds everything a bit-exact resume needs (networks, optimisers, schedulers, the
gradient scaler, every RNG, the step) and the config that wrote it. The one before it is kept as
checkpoint-previous.pt, so a damaged latest file costs the steps since the previous one, never
the run. A folder that shows training had begun (stats, snapshots, samples) but holds no usable
checkpoint is refused with a message naming the files: it is never silently trained again from
scratch. The checkpoint dict's keys are a file format: runs written by earlier code load.
"""
from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from ..config import Config, to_dict, to_json
from ..paths import atomic_write
from . import faults
from .snapshot import atomic_save, load_pt
from .stats import STATS

if TYPE_CHECKING:
    from .loop import Nets

CHECKPOINT = "checkpoint-latest.pt"
PREVIOUS = "checkpoint-previous.pt"


class CheckpointError(RuntimeError):
    """A run folder that cannot be resumed; the message names the file and what to do."""


# ----------------------------------------------------------------------------- writing

def checkpoint_state(nets: Nets, sched_g, sched_d, rngs: list, step: int, config: Config) -> dict:
    """What checkpoint-latest.pt holds: everything a bit-exact resume needs."""
    return {"G": nets.g_plain.state_dict(), "D": nets.d_plain.state_dict(),
            "opt_g": nets.opt_g.state_dict(), "opt_d": nets.opt_d.state_dict(),
            "sched_g": sched_g.state_dict(), "sched_d": sched_d.state_dict(),
            "scaler": nets.scaler.state_dict(), "rng": rngs, "step": step,
            "config": to_dict(config),
            **({"G_ema": nets.G_ema.state_dict()} if nets.G_ema is not None else {})}
MACHINE = "machine"  # config.json's record of where a run started; not a config field


def write_checkpoint(run_dir: Path, state: dict) -> None:
    """Replace checkpoint-latest.pt atomically; the file it replaces becomes checkpoint-previous.pt."""
    atomic_save(state, Path(run_dir) / CHECKPOINT, previous=Path(run_dir) / PREVIOUS,
                at=faults.points("checkpoint-write"))


def rng_state(gens: dict[str, torch.Generator]) -> dict:
    # NumPy's state as a tensor and plain values: a checkpoint then holds nothing that the
    # weights-only loader (`snapshot.load_pt`) must be told to allow
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(gauss)),
             "python": random.getstate(), **{k: g.get_state() for k, g in gens.items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def gather_rng_states(gens: dict[str, torch.Generator], world: int = 1) -> list[dict]:
    """Every rank's RNG state, in rank order (each rank draws its own augmentations). Under
    torchrun all ranks must call it together."""
    if world <= 1:
        return [rng_state(gens)]
    states: list = [None] * world
    dist.all_gather_object(states, rng_state(gens))
    return states


def set_rng_state(state: dict, gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]  # keys: a tensor, or (older checkpoints) a NumPy array
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(state["python"])
    for k, g in gens.items():
        g.set_state(state[k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- reading

_CHECKPOINT_KEYS = {"G", "D", "opt_g", "opt_d", "sched_g", "sched_d", "scaler", "rng", "step",
                    "config"}


def read_checkpoint(path: Path, config: Config) -> dict:
    """The resume state in `path`, or CheckpointError saying why this run cannot use it
    (unreadable, not a training checkpoint, or written under another config)."""
    try:
        blob = load_pt(path)
    except ValueError as e:  # truncated, empty, foreign, or holding a pickled object
        raise CheckpointError(str(e)) from None
    if not isinstance(blob, dict) or not _CHECKPOINT_KEYS <= set(blob):
        missing = sorted(_CHECKPOINT_KEYS - set(blob)) if isinstance(blob, dict) else ["all"]
        raise CheckpointError(f"{path} is not a training checkpoint (missing {', '.join(missing)})")
    ours = json.loads(to_json(config))
    theirs = json.loads(json.dumps(blob["config"]))
    if isinstance(theirs, dict):
        theirs.pop(MACHINE, None)  # where it ran is no setting of the run
    theirs = with_new_fields(theirs, ours)
    differences = _diff(theirs, ours)
    if differences:
        shown = "; ".join(d.replace(" -> ", " in the checkpoint, ", 1) + " in this run"
                          for d in differences[:8])
        raise CheckpointError(f"{path} was written by a run with another config ({shown}"
                              f"{'; ...' if len(differences) > 8 else ''})")
    if config.train.ema_decay > 0 and "G_ema" not in blob:
        raise CheckpointError(f"{path} is not a training checkpoint (missing G_ema)")
    return blob


def _started(run_dir: Path) -> list[str]:
    """What in `run_dir` shows that training had begun (empty for a fresh folder)."""
    found = []
    stats = run_dir / STATS
    if stats.exists() and stats.stat().st_size > 0:
        found.append(stats.name)
    found += sorted(p.name for p in run_dir.glob("snapshot-*.pt"))[:3]
    if any((run_dir / "samples").glob("step-*.png")):
        found.append("samples/")
    found += sorted(p.name for p in run_dir.glob("checkpoint-*.damaged"))
    return found


def load_resume_state(run_dir: Path, config: Config, main: bool = True) -> dict | None:
    """The checkpoint to resume from: checkpoint-latest.pt, else (with a warning)
    checkpoint-previous.pt; None for a run that has not started. A started run with no
    usable checkpoint is a CheckpointError naming the files: it is never silently restarted."""
    latest, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    problems = []
    for path in (latest, previous):
        if not path.exists():
            continue
        try:
            blob = read_checkpoint(path, config)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if path == previous:
            why = problems[0] if problems else (f"{latest} is missing (the process was stopped "
                                                f"while replacing it)")
            note = ""
            if latest.exists() and main:
                # Kept for inspection, and out of the way: the next save would otherwise rotate
                # the damaged file into checkpoint-previous.pt.
                latest.replace(latest.with_name(latest.name + ".damaged"))
                note = f" (the damaged file is kept as {latest.name}.damaged)"
            warnings.warn(f"{why}; resuming from {previous.name} at step {int(blob['step'])} "
                          f"instead{note}", stacklevel=3)
        return blob
    started = _started(run_dir)
    if problems or started:
        what = "; ".join(problems) if problems else f"{latest} does not exist"
        if not previous.exists():
            what += f"; there is no {previous.name} to fall back on"
        held = (f"It holds a started run ({', '.join(started)}) that" if started
                else "The run")
        raise CheckpointError(
            f"cannot resume the run in {run_dir}: {what}. {held} would be trained again from "
            f"scratch. Put a good checkpoint back as {latest.name}, or delete the folder (or "
            f"choose another --run-dir) to start over.")
    return None


# ----------------------------------------------------------------------------- resuming

def restore(blob: dict, nets: Nets, sched_g, sched_d, gens: dict[str, torch.Generator],
            rank: int = 0) -> int:
    """Put a checkpoint's state into freshly built networks, optimisers, schedulers and RNGs
    (before any DDP wrapping); returns the step to continue from. `rank` picks this process's
    RNG state from a checkpoint written under torchrun."""
    nets.G.load_state_dict(blob["G"])
    if nets.G_ema is not None:
        nets.G_ema.load_state_dict(blob["G_ema"])
    nets.D.load_state_dict(blob["D"])
    nets.opt_g.load_state_dict(blob["opt_g"])
    nets.opt_d.load_state_dict(blob["opt_d"])
    match_state_layout(nets.opt_g)
    match_state_layout(nets.opt_d)
    sched_g.load_state_dict(blob["sched_g"])
    sched_d.load_state_dict(blob["sched_d"])
    nets.scaler.load_state_dict(blob["scaler"])
    set_rng_state(blob["rng"][rank], gens)
    return int(blob["step"])


def match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give each optimiser state tensor its parameter's memory layout. The fused Adam kernel walks
    a parameter and its moments in memory order, so moments in another layout (a checkpoint
    written before a layout change, such as the residual convolutions' tap layout) would update
    the wrong elements without any error (measured on torch 2.14)."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for k, v in state.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def trim_stats(path: Path, step: int) -> None:
    """Drop stats lines past the resumed step (and a line torn by a kill): they are logged
    again as those steps are redone, so the file reads as if training never stopped."""
    if not path.exists():
        return
    keep, changed = [], False
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            changed = True
            continue
        if row.get("step", 0) > step:
            changed = True
            continue
        keep.append(line)
    if changed:
        text = "".join(x + "\n" for x in keep)
        atomic_write(path, lambda f: f.write(text.encode()))


def write_or_check_config(config: Config, run_dir: Path, machine: dict | None = None) -> None:
    """config.json of a new run, with `machine` (the device and the precision it resolved to)
    under its own key; for an existing one, a ValueError naming the fields that differ (a run is
    resumed only with the settings it was started with; the machine may differ)."""
    path = run_dir / "config.json"
    text = to_json(config)
    if path.exists():
        theirs = json.loads(path.read_text())
        theirs.pop(MACHINE, None)
        old = with_new_fields(theirs, json.loads(text))
        if old != json.loads(text):
            raise ValueError(
                f"{run_dir} already holds a run with a different config; resume it with the same "
                f"settings or choose another run folder (differences: "
                f"{_diff(old, json.loads(text))})")
        return
    if machine is not None:
        text = json.dumps({**json.loads(text), MACHINE: machine}, indent=2, sort_keys=True)
    atomic_write(path, lambda f: f.write((text + "\n").encode()))


def recorded_precision(run_dir: Path) -> str | None:
    """The precision an existing run folder's config.json says it trains in (None for a new
    folder, or one whose config.json cannot be read: write_or_check_config then decides)."""
    try:
        return json.loads((Path(run_dir) / "config.json").read_text())["train"]["precision"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_machine(run_dir: Path) -> dict:
    """config.json's record of the machine a run started on: device, precision and why ({} for
    a run from before it was recorded, or an unreadable file)."""
    try:
        found = json.loads((Path(run_dir) / "config.json").read_text()).get(MACHINE, {})
    except (OSError, ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def with_new_fields(theirs: dict, ours: dict) -> dict:
    """`theirs` (a config written by an earlier run) with the fields it lacks taken from `ours`:
    a field added to the config since that run was written cannot have been set differently
    by it, so a run from before (say, before the faces fields) still resumes. Fields that both
    have are compared as they are."""
    out = dict(theirs)
    for k, v in ours.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = with_new_fields(out[k], v)
    return out


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, prefix + k + ".")
        elif va != vb:
            out.append(f"{prefix}{k}: {va} -> {vb}")
    return out
