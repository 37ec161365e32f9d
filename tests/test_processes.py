"""A render pool's processes die with the process that started them, and with them the locks
they inherited (paperlib/processes.py)."""
import os
import signal
import time
from pathlib import Path

from conftest import alive
from paperlib.processes import render_pool
from paperlib.training.runlock import RunLock, RunLockedError


def children_of(pid: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                # the field after the parenthesised command name: state, then the parent's PID
                stat = (d / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def test_a_killed_owner_takes_its_render_pool_and_its_run_lock_with_it(tmp_path):
    """A process holding a run folder's lock starts a render pool (one worker busy, one idle)
    and is SIGKILLed, as a training process that renders a cold cache can be. Its pool's
    processes, which hold the lock through the file descriptor they inherited, die too, and
    the run folder is free again. Without the pool's death request they would wait for work
    for good, and the folder would stay refused."""
    run, ready = tmp_path / "run", tmp_path / "ready"
    owner = os.fork()
    if owner == 0:
        try:
            with RunLock(run):
                pool = render_pool(2)
                pool.apply_async(time.sleep, (600,))
                ready.write_text("ready")
                time.sleep(600)
        finally:
            os._exit(1)
    try:
        deadline = time.time() + 60
        while not (ready.exists() and len(children_of(owner)) >= 2) and time.time() < deadline:
            time.sleep(0.05)
        workers = children_of(owner)
        assert len(workers) >= 2, "the pool did not start"
        try:
            with RunLock(run):
                raise AssertionError("the owner's lock was free while it lived")
        except RunLockedError:
            pass
    finally:
        os.kill(owner, signal.SIGKILL)
        os.waitpid(owner, 0)
    # A loaded two-core machine can delay the deaths by seconds: the bound is wide, the test
    # asks that they die, not how fast.
    deadline = time.time() + 60
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    try:
        assert not any(alive(w) for w in workers), "a pool process outlived its owner"
        with RunLock(run):
            pass
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
