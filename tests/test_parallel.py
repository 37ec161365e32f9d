"""Registry runs side by side (paperlib.study.parallel, on the pool of paperlib.training.parallel): same results as one after the other,
resumable, errors named, and the thread share each worker gets."""
from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import pytest
import torch

from paperlib.processes import die_with_parent
from paperlib.study import parallel, registry
from paperlib.training import parallel as pool
from paperlib.training.snapshot import load_generator


def _weights(path: Path) -> dict:
    G, _, _ = load_generator(path)
    return {k: v.clone() for k, v in G.state_dict().items()}


def test_default_workers_reads_the_environment(monkeypatch):
    monkeypatch.setenv(pool.WORKERS_ENV, "3")
    assert pool.default_workers() == 3
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(pool.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=pool.WORKERS_ENV):
            pool.default_workers()
    monkeypatch.delenv(pool.WORKERS_ENV)
    assert pool.default_workers() == (1 if torch.cuda.is_available()
                                      else max(1, min(2, os.cpu_count() or 1)))


@pytest.mark.parametrize("workers,cores,expected", [(2, 2, 1), (1, 2, 2), (2, 16, 8), (4, 2, 1)])
def test_threads_per_worker_shares_the_cores(workers, cores, expected):
    assert pool.threads_per_worker(workers, cores) == expected


def report_threads(marker: str, end_at_once: bool, wait_s: float) -> tuple[int, int]:
    """A pool job (module level, so a spawned worker can import it): its thread count at the
    start, and at its end. The job that ends at once writes `marker`; the other waits until the
    other has ended (two minutes at most, a loaded machine's margin), then until the parent has
    seen it (its count changes), or `wait_s` seconds."""
    first = pool.share_cores()
    if end_at_once:
        Path(marker).write_text("ended")
        return first, torch.get_num_threads()
    deadline = time.monotonic() + 120
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    deadline = min(deadline, time.monotonic() + wait_s)
    while time.monotonic() < deadline:
        if pool.share_cores() != first:
            break
        time.sleep(0.1)
    return first, torch.get_num_threads()


@pytest.mark.slow
@pytest.mark.parametrize("share", [True, False])
def test_a_run_left_alone_takes_the_cores_of_the_finished_worker(tmp_path, monkeypatch, share):
    """Two workers on four cores: two threads each. Once one has no job left, the other's next
    share_cores call gives it all four (with share=False it keeps two). Outside a pool
    share_cores changes nothing."""
    monkeypatch.setattr(os, "cpu_count", lambda: 4)  # read in this process, for the pool
    monkeypatch.setattr(pool, "POLL_SECONDS", 0.5)  # the parent's polls, for this test's pool
    marker = str(tmp_path / "ended")
    # With share, two minutes leave a loaded machine a wide margin (the job stops waiting as
    # soon as its count changes); without, the job waits four of the parent's polls.
    wait_s = 120 if share else 4 * pool.POLL_SECONDS
    jobs = [(marker, False, wait_s), (marker, True, wait_s)]
    alone, other = pool.run_in_workers(report_threads, jobs, 2, share=share)
    assert other == (2, 2)
    assert alone == ((2, 4) if share else (2, 2))
    before = torch.get_num_threads()
    assert pool.share_cores() == before == torch.get_num_threads()


@pytest.mark.slow
def test_two_workers_train_and_evaluate_like_one(fake_root, monkeypatch, capfd):
    """Two smoke runs in a pool of two one-thread workers that keep their one thread to the end
    (share=False), then the same two runs again in this process with one thread: the same weights (fp32 smoke runs are deterministic at a fixed
    thread count) and the same metrics rows. The pool's one bar ends at all steps and all runs,
    and is redrawn only when a run ends or REFRESH_SECONDS have passed."""
    jobs = [("scft-triplet", 0), ("add", 0)]
    # Drawn even under TQDM_DISABLE=1 (make test sets it; an explicit argument wins).
    monkeypatch.setattr(parallel, "tqdm", functools.partial(parallel.tqdm, disable=False))
    # No timed redraw can fall inside this test however loaded the machine is, so the count
    # below is exact: the timed redraws are counted against a clock of our own in the next test.
    monkeypatch.setattr(parallel, "REFRESH_SECONDS", 1e9)
    paths = parallel.ensure_runs("smoke", jobs, workers=2, progress=True, share=False)
    bar = capfd.readouterr().err
    steps = sum(registry.run_config("smoke", n, s).train.max_steps for n, s in jobs)
    assert "2 runs, 2 at a time x" in bar and f"{steps}/{steps}" in bar and "2/2 runs done" in bar, bar
    # tqdm draws once at the start and once on close, starts each redraw with a \r, and the
    # pool redraws once per wait that saw a run end (at most once per run).
    assert bar.count("\r") <= 2 + len(jobs), bar
    assert [p.name for p in paths] == ["scft-triplet-seed0", "add-seed0"]
    pooled = {p.name: (_weights(p), (p / "metrics.jsonl").read_text()) for p in paths}
    for p in paths:
        assert (p / "snapshot-final.pt").exists() and (p / "metrics.jsonl").exists()

    # A second call finds everything done and starts no worker.
    monkeypatch.setattr(pool, "ProcessPoolExecutor", None)
    assert parallel.ensure_runs("smoke", jobs, workers=2, progress=False) == paths

    solo_root = fake_root / "solo"
    (solo_root / "paperlib").mkdir(parents=True)
    (solo_root / "pyproject.toml").write_text("")
    monkeypatch.chdir(solo_root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        solo = parallel.ensure_runs("smoke", jobs, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    for p in solo:
        w, metrics = pooled[p.name]
        for k, v in _weights(p).items():
            assert torch.equal(v, w[k]), (p.name, k)
        values = lambda text: {(r["metric"], r["reference"]): r["value"]  # noqa: E731
                               for r in map(json.loads, text.splitlines())}
        got, want = values((p / "metrics.jsonl").read_text()), values(metrics)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9), (p.name, k)


def test_pool_bar_redraws_every_refresh_interval_and_when_a_run_ends(fake_root, monkeypatch, capfd):
    """The pool's bar against a clock of our own: each poll of the pool advances it by the poll
    timeout (5 s), the first run ends at 100 s and the second at 150 s. Timed redraws fall at
    30, 60, 90 and 130 s (each REFRESH_SECONDS after the last draw), and one redraw follows
    each run's end: 6 redraws, plus the first draw and the close. Starting the interval at 0
    instead of at the first draw (the old behaviour) adds a redraw at the first poll."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    clock = [1000.0]
    monkeypatch.setattr(parallel, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(parallel, "tqdm", functools.partial(parallel.tqdm, disable=False))
    submitted: list[Future] = []

    class FakePool:
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, fn, *args):
            submitted.append(Future())
            return submitted[-1]

        def shutdown(self, **kwargs):
            pass

    polls = [0]

    def fake_wait(pending, timeout, return_when):
        clock[0] += timeout
        polls[0] += 1
        ends = {20: submitted[0], 30: submitted[1]}
        if polls[0] in ends:
            ends[polls[0]].set_result(None)
        done = {f for f in pending if f.done()}
        return done, set(pending) - done

    monkeypatch.setattr(pool, "ProcessPoolExecutor", FakePool)
    monkeypatch.setattr(pool, "wait", fake_wait)
    parallel.ensure_runs("smoke", [("scft-triplet", 0), ("add", 0)], workers=2, progress=True)
    bar = capfd.readouterr().err
    assert polls[0] == 30
    assert "2/2 runs done" in bar, bar
    assert bar.count("\r") == 2 + 6, bar


def test_a_failing_run_is_named(fake_root):
    """A job that cannot start (its run folder holds another width's config) stops the pool
    with an error naming the run and the seed; the other job's folder is left resumable."""
    from paperlib.config import to_json
    from paperlib.study.registry import run_config

    bad = fake_root / "runs" / "smoke" / "add-seed1"
    bad.mkdir(parents=True)
    other = run_config("smoke", "add", 1)
    other = type(other)(**{**other.__dict__, "model": type(other.model)(
        **{**other.model.__dict__, "width": other.model.width * 2})})
    (bad / "config.json").write_text(to_json(other))
    with pytest.raises(RuntimeError, match="run add seed 1 failed"):
        parallel.ensure_runs("smoke", [("scft-triplet", 1), ("add", 1)], workers=2, progress=False)


def test_a_worker_whose_parent_is_already_gone_dies_at_once():
    """The window a worker's death request cannot cover: its parent killed while it was still
    starting. It then finds another parent (it was reparented) and kills itself."""
    import signal

    for parent, killed in ((None, False), (-1, True)):  # its own parent, then one that is gone
        pid = os.fork()
        if pid == 0:
            try:
                die_with_parent(os.getppid() if parent is None else parent)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL) == killed


@pytest.mark.slow
def test_workers_die_with_their_parent(fake_root):
    """A parent SIGKILLed alone (a kernel restart, say) takes its workers with it: the worker
    stalled at a checkpoint, holding its run folder's lock, is gone, and the run resumes."""
    import signal
    import subprocess
    import sys
    import time

    # not at the module's top: a spawned worker imports this module for its jobs, and conftest
    # sets the thread count when imported
    from conftest import alive, processes_with_env

    marker = fake_root / "worker.pid"
    code = ("from paperlib.study import parallel; parallel.ensure_runs('smoke', "
            "[('scft-triplet', 2), ('add', 2)], workers=2, progress=False)")
    env = {**os.environ, "PAPERLIB_FAULT": "checkpoint-write:stall",
           "PAPERLIB_FAULT_MARKER": str(marker)}
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=fake_root, env=env)
    tree = f"PAPERLIB_FAULT_MARKER={marker}"
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline and parent.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), "no worker reached its first checkpoint write"
        worker = int(marker.read_text())
        assert worker != parent.pid and alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        # The worker notices its parent's death by polling; a loaded two-core machine can
        # delay that by seconds, so the bound is wide: the test asks that it dies, not how fast.
        deadline = time.time() + 60
        while alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(worker), "the worker outlived its parent"
        # and so does the rest of the tree (the other worker, and any renderer either had
        # forked: each holds the run folder's lock it was started under)
        while processes_with_env(tree) and time.time() < deadline:
            time.sleep(0.1)
        assert not processes_with_env(tree), "a process of the killed pool lives on"
    finally:
        if parent.poll() is None:
            parent.kill()
    # Resumed without the evaluation, in this process: the question is the lock the killed
    # worker held, not the pool (whose start costs each worker seconds of imports).
    paths = parallel.ensure_runs("smoke", [("scft-triplet", 2), ("add", 2)], evaluate=False,
                                 workers=1, progress=False)
    assert all((p / "snapshot-final.pt").exists() for p in paths)
