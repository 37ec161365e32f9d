"""Helper processes that do not outlive the process that started them.

A process that dies by SIGKILL takes nothing with it: its children live on. Each child forked
while the parent held a run folder's lock or a cache file's lock (`training.runlock`,
`paths.cache_lock`, both `flock` locks, which belong to the open file) holds the lock too,
through its copy of the file descriptor; a render pool's children, waiting for work from a
parent that is gone, would hold it for good, and the resumed run would be refused. So every
pool of this package asks Linux to kill its processes when their parent dies.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere), and die now
    if `parent` (the PID of the process that started this one) is already gone. A child is
    covered only from the moment it asks: one still starting when its parent was killed would
    otherwise live on (for a training pool's worker: take its job from the queue and hold that
    run's lock while the resumed pool wants it)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # reparented: the parent died before the request above
        os.kill(os.getpid(), signal.SIGKILL)


def render_pool(processes: int):
    """A multiprocessing.Pool of `processes` forked workers (spawned on Windows) that die with
    this process: the renderers of the OpenMoji and faces caches, which a training process may
    start while it holds its run folder's lock."""
    ctx = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
    return ctx.Pool(processes, initializer=die_with_parent, initargs=(os.getpid(),))
