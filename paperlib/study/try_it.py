"""A first colouring within minutes: the main model of one dataset, one seed, and nothing else.

`make try` (`python -m paperlib try`) renders the dataset if needed, says up front how long the
training takes on this CPU (from a few timed steps), and trains `registry.MAIN` with seed 0
under a progress bar. `colorize` and notebook 08 then work on it; the full study
(`make reproduce`) trains the other runs beside it and reuses this one.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..training.loop import is_complete, train
from ..training.parallel import steps_done
from ..training.precision import cpu_name, resolve
from ..training.steptime import step_seconds
from ..config import get_dataset
from .registry import MAIN, run_config, run_path
from .reproduce import prepare


def first_model(profile: str = "mini", dataset: str | None = None, seed: int = 0, *,
                progress: bool = True, out=sys.stdout) -> Path:
    """Train (or resume, or find finished) the main model of `dataset`; its run folder."""
    config = run_config(profile, MAIN, seed, dataset)
    path = run_path(profile, MAIN, seed, dataset)
    if is_complete(path):
        print(f"{MAIN} seed {seed} on {config.data.dataset} is trained: {path}", file=out)
        return path
    prepare(config)
    left = max(0, config.train.max_steps - steps_done(path))
    seconds = step_seconds(config, steps=3, warmup=1)
    decision = resolve(config.train.precision, "cpu", warn=False)
    print(f"{cpu_name()}, {decision.precision}: about {left * seconds / 60:.0f} min for the "
          f"{left} steps left of {MAIN} seed {seed} on {config.data.dataset} "
          f"({seconds:.2f} s a step, timed here; snapshots and samples add a little)",
          file=out, flush=True)
    train(config, path, progress=progress)
    return path


def add_try_arguments(sp) -> None:
    sp.add_argument("--profile", default="mini", help="the profile (default mini)")
    sp.add_argument("--dataset", default=None, help="openmoji or faces (default: "
                    "$PAPERLIB_DATASET, else openmoji)")
    sp.add_argument("--seed", type=int, default=0, help="the training seed (default 0)")


def try_main(args) -> int:
    path = first_model(args.profile, get_dataset(args.dataset), args.seed)
    print(f"trained: {path}\ncolour a sketch with it:\n  python -m paperlib colorize "
          f"--checkpoint {path} --sketch SKETCH.png --reference REFERENCE.png --out OUT.png\n"
          f"or open notebooks/08_try_it.ipynb")
    return 0
