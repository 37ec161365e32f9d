"""A first colouring within minutes: the main model of one dataset, one seed, and nothing else.

`make try` (`python -m paperlib try`) renders the dataset if needed, says up front how long the
training takes on this CPU (from a few timed steps), and trains `registry.MAIN` with seed 0
under a progress bar. `colorize` and notebook 08 then work on it; the full study
(`make reproduce`) trains the other runs beside it and reuses this one. A run trained from its
first step records the command's wall time (data, timing, training) beside the training
estimate in results/try_times.tsv, one row per dataset, profile, CPU and precision: the file
the README's time table reads. `--plan` says the estimate and trains nothing.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..training.loop import is_complete, train
from ..training.parallel import steps_done
from ..training.precision import cpu_name, resolve
from ..training.steptime import step_seconds
from ..config import get_dataset
from ..paths import atomic_write, repo_root
from .registry import MAIN, run_config, run_path
from .reproduce import prepare

TRY_TIMES_HEADER = ("dataset", "profile", "cpu", "precision", "steps", "minutes",
                    "estimated_minutes")


def update_try_times(text: str, dataset: str, profile: str, cpu: str, precision: str,
                     steps: int, minutes: float, estimated: float) -> str:
    """try_times.tsv with the row of (dataset, profile, cpu, precision) replaced by this
    training's time; the other rows kept, sorted, under a header."""
    rows: dict[tuple[str, ...], tuple[str, ...]] = {}
    for line in text.splitlines():
        fields = tuple(line.split("\t"))
        if fields == TRY_TIMES_HEADER or len(fields) != len(TRY_TIMES_HEADER):
            continue
        rows[fields[:4]] = fields
    row = (dataset, profile, cpu, precision, str(steps), f"{minutes:.1f}", f"{estimated:.1f}")
    rows[row[:4]] = row
    return "".join("\t".join(r) + "\n" for r in [TRY_TIMES_HEADER] + sorted(rows.values()))


def record_time(dataset: str, profile: str, cpu: str, precision: str, steps: int,
                minutes: float, estimated: float) -> Path:
    path = repo_root() / "results" / "try_times.tsv"
    old = path.read_text() if path.exists() else ""
    new = update_try_times(old, dataset, profile, cpu, precision, steps, minutes, estimated)
    atomic_write(path, lambda f: f.write(new.encode()))
    return path


def first_model(profile: str = "mini", dataset: str | None = None, seed: int = 0, *,
                progress: bool = True, out=sys.stdout, plan_only: bool = False) -> Path:
    """Train (or resume, or find finished) the main model of `dataset`; its run folder.
    plan_only: say how long it would take and train nothing."""
    config = run_config(profile, MAIN, seed, dataset)
    path = run_path(profile, MAIN, seed, dataset)
    if is_complete(path):
        print(f"{MAIN} seed {seed} on {config.data.dataset} is trained: {path}", file=out)
        return path
    t0 = time.monotonic()  # the whole command's cost: the data, the timing and the training
    prepare(config)
    left = max(0, config.train.max_steps - steps_done(path))
    seconds = step_seconds(config, steps=3, warmup=1)
    decision = resolve(config.train.precision, "cpu", warn=False)
    print(f"{cpu_name()}, {decision.precision}: about {left * seconds / 60:.0f} min for the "
          f"{left} steps left of {MAIN} seed {seed} on {config.data.dataset} "
          f"({seconds:.2f} s a step, timed here; snapshots and samples add a little)",
          file=out, flush=True)
    if plan_only:
        return path
    train(config, path, progress=progress)
    minutes = (time.monotonic() - t0) / 60
    print(f"trained in {minutes:.1f} min", file=out)
    # Only a run trained from its first step says what `make try` costs; a resumed one does not.
    if left == config.train.max_steps and profile != "smoke":
        record_time(config.data.dataset, profile, cpu_name(), decision.precision, left, minutes,
                    left * seconds / 60)
    return path


def add_try_arguments(sp) -> None:
    sp.add_argument("--profile", default="mini", help="the profile (default mini)")
    sp.add_argument("--dataset", default=None, help="openmoji or faces (default: "
                    "$PAPERLIB_DATASET, else openmoji)")
    sp.add_argument("--seed", type=int, default=0, help="the training seed (default 0)")
    sp.add_argument("--plan", action="store_true", help="time a few steps, say how long the "
                    "training would take on this CPU, and train nothing")


def try_main(args) -> int:
    path = first_model(args.profile, get_dataset(args.dataset), args.seed, plan_only=args.plan)
    if args.plan:
        return 0
    print(f"trained: {path}\ncolour a sketch with it:\n  python -m paperlib colorize "
          f"--checkpoint {path} --sketch SKETCH.png --reference REFERENCE.png --out OUT.png\n"
          f"or open notebooks/08_try_it.ipynb")
    return 0
