"""Jobs side by side: several processes at once, each with its share of the CPU threads.

Why: at the reproduction scale a training step is too small to keep two cores busy. On a
2-core AMD EPYC one run reaches 74 images/s with two threads and 52 with one, but two
one-thread runs together reach 99 (1.34x the two-thread run), and evaluation gains likewise.
A run's arithmetic does not change, only the thread count it runs on (float sums may differ in
their last bits, as they do between any two thread counts).

When fewer jobs are left than workers (the last run of an odd count, or the one that started
last), the idle cores go to the workers still busy: `share_cores`, which the training loop calls
at every step, raises the worker's thread count to its share of the busy workers. What that
gains is the "alone, on 2 threads" factor that `make plan` prints
(results/fp32/plan_main_recipe_avx2.txt: a 2-core AMD EPYC with AVX2 only, fp32). The switch
happens when the parent sees a job end (within a few seconds), so a run that takes the cores is
reproducible up to the order of its float sums, as above; pass `share=False` for bit-identical
runs at one thread each.

`run_in_workers` runs a list of jobs: with one worker (a single core, a GPU, or
`PAPERLIB_WORKERS=1`) in this process, one after the other; otherwise in a pool of spawned
worker processes. Each worker dies with its parent (`processes.die_with_parent`), so an interrupted
notebook leaves no orphan holding a run folder's lock, and rerunning resumes. The experiment
registry's runs go through it in study.parallel.ensure_runs; `python -m paperlib long-run`
trains its seeds and measures their snapshots in it.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

from ..processes import die_with_parent

WORKERS_ENV = "PAPERLIB_WORKERS"
# How often the parent of a pool looks at its workers: it then hands the cores of finished
# workers to the busy ones, and a notebook's bar is redrawn. A run lasts minutes.
POLL_SECONDS = 5.0

# Set in a pool worker: the count of busy workers (written by the parent) and the cores to share.
_share: tuple | None = None


def default_workers() -> int:
    """Worker processes for a pool of runs (study.parallel.ensure_runs): $PAPERLIB_WORKERS if set, else 2 on a CPU with at
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
    # not at import: a spawned worker must set its thread count (OMP_NUM_THREADS) before torch loads
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """The cores shared out evenly, at least one thread each."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int, busy=None, cores: int = 1, parent: int = 0) -> None:
    global _share
    die_with_parent(parent)
    _share = None if busy is None else (busy, cores)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["TQDM_DISABLE"] = "1"  # the parent draws one bar for all jobs
    # not at import: a spawned worker must set its thread count (OMP_NUM_THREADS) before torch loads
    import torch

    torch.set_num_threads(threads)


def share_cores() -> int:
    """In a pool worker started with `share=True`: set this process's thread count to its share
    of the cores among the workers still busy, and return it. Elsewhere, return the current
    count and change nothing. Cheap enough to call at every training step."""
    # not at import: a spawned worker must set its thread count (OMP_NUM_THREADS) before torch loads
    import torch

    if _share is None:
        return torch.get_num_threads()
    busy, cores = _share
    threads = threads_per_worker(max(1, busy.value), cores)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def steps_done(path: Path) -> int:
    """The last step logged in a run's stats.jsonl (0 before the first log line)."""
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


def run_in_workers(fn, jobs: list[tuple], workers: int, *, name=str, on_poll=None,
                   share: bool = True) -> list:
    """fn(*job) for every job, `workers` at a time, each worker on its share of the cores;
    returns the results in the order of `jobs`. With one worker the jobs run here, one after
    the other; otherwise in spawned processes that die with this one, taking jobs in order
    (a job that waits for an earlier one's output cannot starve it). `fn` must be importable
    by name (a module-level function).

    A failing job stops the pool: the jobs in flight are killed (run folders resume on the next
    call) and RuntimeError("<name(job)> failed: <its error>") is raised. While waiting,
    on_poll(jobs finished, whether any finished since the last call) is called every few
    seconds. With `share`, workers still busy when others have no job left take the idle cores
    at their next `share_cores` call.
    """
    if workers <= 1:
        return [fn(*job) for job in jobs]

    workers = min(workers, len(jobs))
    context = multiprocessing.get_context("spawn")
    # Each worker runs one job at a time, so min(workers, jobs not finished) are busy.
    busy = context.RawValue("i", workers) if share else None
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(threads_per_worker(workers), busy, os.cpu_count() or 1,
                                         os.getpid()))
    futures: dict = {}
    try:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
            if busy is not None:
                busy.value = min(workers, len(pending))
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
