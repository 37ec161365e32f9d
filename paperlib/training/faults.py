"""Fault injection for the fault-tolerance tests: kill or stall the process at a named point.

Random kills cannot reliably land in windows a few milliseconds long (a checkpoint being
written, the rename between two files), so the code marks those windows with `point(name)`,
and a test sets

    PAPERLIB_FAULT=<name>[@<n>][:<action>]

to act the n-th time (default the first) this process reaches `name`. Actions:
  kill   (default) SIGKILL this process; when the point passes the file being written, it is
         first cut to half its length, as if the kill came in the middle of the write;
  stall  sleep until killed, holding whatever the process holds (its run-folder lock).
With PAPERLIB_FAULT_MARKER=<file> the process writes its PID there first, so a test knows
that the point was reached. Without PAPERLIB_FAULT nothing happens (one dict lookup).

Points: "checkpoint-write" (checkpoint data in the temp file, not yet renamed),
"checkpoint-write-rotate" (old checkpoint renamed to checkpoint-previous.pt, new one not yet
in place), "evaluate" (outputs generated, metrics not yet computed or written).
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

from ..paths import atomic_write

ENV = "PAPERLIB_FAULT"
MARKER_ENV = "PAPERLIB_FAULT_MARKER"
_seen: dict[str, int] = {}


def points(name: str) -> Callable:
    """The `at` hook of paths.atomic_write for the points `name` (the data written, not yet
    renamed) and `name`-rotate (between the two renames)."""

    def at(stage: str, file=None) -> None:
        point(name if stage == "written" else f"{name}-{stage}", file)

    return at


def point(name: str, file=None) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    where, _, action = spec.partition(":")
    want, _, nth = where.partition("@")
    if want != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] != int(nth or 1):
        return
    marker = os.environ.get(MARKER_ENV)
    if marker:
        # whole or not at all: a test that sees the file reads the PID at once
        atomic_write(marker, lambda f: f.write(f"{os.getpid()}\n".encode()))
    if (action or "kill") == "stall":
        while True:
            time.sleep(60)
    if file is not None:
        file.flush()
        file.truncate(max(0, file.tell() // 2))
        file.flush()
    os.kill(os.getpid(), signal.SIGKILL)
