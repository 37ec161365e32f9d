"""Registry runs side by side: several runs at once, each with its share of the CPU threads.

Why: at the reproduction scale a training step is too small to keep two cores busy. On a
2-core AMD EPYC one run reaches 74 images/s with two threads and 52 with one, but two
one-thread runs together reach 99 (1.34x the two-thread run), and evaluation gains likewise.
A run's arithmetic does not change, only the thread count it runs on (float sums may differ in
their last bits, as they do between any two thread counts).

`ensure_runs` trains and evaluates a list of (run, seed) jobs. With one worker (a single core,
a GPU, or `PAPERLIB_WORKERS=1`) it runs them in this process, one after the other; otherwise
in a pool of spawned worker processes. Each worker dies with its parent (PR_SET_PDEATHSIG), so
an interrupted notebook leaves no orphan holding a run folder's lock, and rerunning resumes.
`run_in_workers` is that pool for any list of jobs (`python -m paperlib long-run` trains its
seeds and measures their snapshots in it).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

WORKERS_ENV = "PAPERLIB_WORKERS"
REFRESH_SECONDS = 30.0


def default_workers() -> int:
    """Worker processes for `ensure_runs`: $PAPERLIB_WORKERS if set, else 2 on a CPU with at
    least two cores, else 1 (a GPU run keeps the device to itself)."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{WORKERS_ENV}={text!r}: expected a whole number of at least 1")
        return n
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """The cores shared out evenly, at least one thread each."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(threads: int) -> None:
    _die_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["TQDM_DISABLE"] = "1"  # the parent draws one bar for all jobs
    import torch

    torch.set_num_threads(threads)


def _job(profile: str, name: str, seed: int, evaluate: bool, no_reference: bool,
         progress: bool = False, dataset: str = "openmoji") -> str:
    """Train one run (resuming) and evaluate it, each only if not done yet."""
    from ..study.registry import ensure_evaluated, ensure_trained

    path = ensure_trained(profile, name, seed, progress=progress, dataset=dataset)
    if evaluate:
        ensure_evaluated(profile, name, seed, dataset, progress=progress)
        if no_reference:
            ensure_evaluated(profile, name, seed, dataset, no_reference=True, progress=progress)
    return str(path)


def steps_done(path: Path) -> int:
    """The last step logged in a run's stats.jsonl (0 before the first log line)."""
    import json

    try:
        lines = (path / "stats.jsonl").read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def _is_done(profile: str, name: str, seed: int, evaluate: bool, no_reference: bool,
             dataset: str) -> bool:
    from ..evaluation.evaluate import read_metrics
    from ..study.registry import is_trained, run_path

    if not is_trained(profile, name, seed, dataset):
        return False
    if not evaluate:
        return True
    path = run_path(profile, name, seed, dataset)
    return bool(read_metrics(path)) and (not no_reference or bool(read_metrics(path, no_reference=True)))


def ensure_runs(profile: str, jobs, *, evaluate=True, no_reference: bool = False,
                workers: int | None = None, progress: bool = True,
                dataset: str | None = None) -> list[Path]:
    """Train every (run, seed) in `jobs` that is not complete and evaluate it on the test split
    (with `no_reference`, with the zero reference too). `evaluate` is True, False, or the names
    of the runs to evaluate. Finished work is skipped. Returns the run folders in the order of
    `jobs`.

    Longer runs start first, so the pool's workers finish close together. A failing job stops
    the pool (runs in flight are killed and resume on the next call) and its error is raised
    with the run's name. `dataset` None means $PAPERLIB_DATASET, else openmoji; the workers
    are given it by name.
    """
    from ..config import get_dataset
    from ..study.registry import run_config, run_path

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
                       workers, name=lambda job: f"run {job[1]} seed {job[2]}", on_poll=redraw)
    finally:
        bar.close()
    return paths


def run_in_workers(fn, jobs: list[tuple], workers: int, *, name=str, on_poll=None) -> list:
    """fn(*job) for every job, `workers` at a time, each worker on its share of the cores;
    returns the results in the order of `jobs`. With one worker the jobs run here, one after
    the other; otherwise in spawned processes that die with this one, taking jobs in order
    (a job that waits for an earlier one's output cannot starve it). `fn` must be importable
    by name (a module-level function).

    A failing job stops the pool: the jobs in flight are killed (run folders resume on the next
    call) and RuntimeError("<name(job)> failed: <its error>") is raised. While waiting,
    on_poll(jobs finished, whether any finished since the last call) is called every few
    seconds.
    """
    if workers <= 1:
        return [fn(*job) for job in jobs]
    import multiprocessing

    workers = min(workers, len(jobs))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads_per_worker(workers),))
    futures: dict = {}
    try:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=5, return_when=FIRST_EXCEPTION)
            if on_poll is not None:
                on_poll(len(futures) - len(pending), bool(done))
            for f in done:
                if f.exception() is not None:
                    raise RuntimeError(f"{name(jobs[futures[f]])} failed: {f.exception()}") \
                        from f.exception()
    finally:
        # On error the other workers are killed: their runs resume from the last checkpoint.
        if any(not f.done() for f in futures):
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)
    results = [None] * len(jobs)
    for f, i in futures.items():
        results[i] = f.result()
    return results
