"""Registry runs side by side: several runs of the experiment registry at once, in the pool of
training.parallel (each worker with its share of the CPU threads).

`ensure_runs` trains and evaluates a list of (run, seed) jobs. With one worker (a single core,
a GPU, or `PAPERLIB_WORKERS=1`) it runs them in this process, one after the other; otherwise
in a pool of spawned worker processes that die with their parent, so an interrupted notebook
leaves no orphan holding a run folder's lock, and rerunning resumes.
"""
from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from ..config import get_dataset
from ..evaluation.evaluate import read_metrics
from ..training.parallel import (default_workers, run_in_workers, share_cores, steps_done,
                                threads_per_worker)
from .registry import ensure_evaluated, ensure_trained, is_trained, run_config, run_path

REFRESH_SECONDS = 30.0


def _job(profile: str, name: str, seed: int, evaluate: bool, no_reference: bool,
         progress: bool = False, dataset: str = "openmoji") -> str:
    """Train one run (resuming) and evaluate it, each only if not done yet."""
    path = ensure_trained(profile, name, seed, progress=progress, dataset=dataset)
    if evaluate:
        share_cores()
        ensure_evaluated(profile, name, seed, dataset, progress=progress)
        if no_reference:
            ensure_evaluated(profile, name, seed, dataset, no_reference=True, progress=progress)
    return str(path)


def _is_done(profile: str, name: str, seed: int, evaluate: bool, no_reference: bool,
             dataset: str) -> bool:
    if not is_trained(profile, name, seed, dataset):
        return False
    if not evaluate:
        return True
    path = run_path(profile, name, seed, dataset)
    return bool(read_metrics(path)) and (not no_reference or bool(read_metrics(path, no_reference=True)))


def ensure_runs(profile: str, jobs, *, evaluate=True, no_reference: bool = False,
                workers: int | None = None, progress: bool = True,
                dataset: str | None = None, share: bool = True) -> list[Path]:
    """Train every (run, seed) in `jobs` that is not complete and evaluate it on the test split
    (with `no_reference`, with the zero reference too). `evaluate` is True, False, or the names
    of the runs to evaluate. Finished work is skipped. Returns the run folders in the order of
    `jobs`.

    Longer runs start first, so the pool's workers finish close together. A failing job stops
    the pool (runs in flight are killed and resume on the next call) and its error is raised
    with the run's name. `dataset` None means $PAPERLIB_DATASET, else openmoji; the workers
    are given it by name. With `share`, the last runs take the cores that finished workers
    leave idle (training.parallel.share_cores); without it every run keeps one share.
    """
    dataset = get_dataset(dataset)
    jobs = [(str(n), int(s)) for n, s in jobs]
    paths = [run_path(profile, n, s, dataset) for n, s in jobs]
    names = None if isinstance(evaluate, bool) else set(evaluate)
    scored = {j: evaluate if names is None else j[0] in names for j in jobs}
    todo = [j for j in dict.fromkeys(jobs) if not _is_done(profile, *j, scored[j], no_reference, dataset)]
    if not todo:
        return paths
    steps = {j: run_config(profile, *j, dataset).train.max_steps for j in todo}
    todo.sort(key=lambda j: -steps[j])
    workers = min(workers or default_workers(), len(todo))
    if workers <= 1:
        for name, seed in todo:
            _job(profile, name, seed, scored[name, seed], no_reference, progress, dataset)
        return paths

    total = sum(steps.values())
    bar = tqdm(total=total, desc=f"{len(todo)} runs, {workers} at a time x "
                                 f"{threads_per_worker(workers)} thread(s)",
               unit="step", dynamic_ncols=True, **({} if progress else {"disable": True}))
    # The bar was drawn when it was made: the first timed redraw is REFRESH_SECONDS later.
    shown = [time.monotonic()]

    def redraw(finished: int, any_ended: bool) -> None:
        # Redrawn every REFRESH_SECONDS or when a run ends: a notebook keeps every redraw of
        # the bar in its saved output, and a reproduction runs for tens of minutes.
        if any_ended or time.monotonic() - shown[0] >= REFRESH_SECONDS:
            bar.n = sum(min(steps[j], steps_done(run_path(profile, *j, dataset))) for j in todo)
            bar.set_postfix_str(f"{finished}/{len(todo)} runs done", refresh=False)
            bar.refresh()
            shown[0] = time.monotonic()

    try:
        run_in_workers(_job, [(profile, n, s, scored[n, s], no_reference, False, dataset)
                              for n, s in todo],
                       workers, name=lambda job: f"run {job[1]} seed {job[2]}", on_poll=redraw,
                       share=share)
    finally:
        bar.close()
    return paths
