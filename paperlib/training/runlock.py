"""One training process per run folder: an advisory lock on `<run>/train.lock`.

`fcntl.flock` locks belong to the open file, and the kernel drops them when the process dies,
however it dies (SIGKILL, out of memory, a crash), so a killed run never leaves its folder
stuck: there is no stale-PID guessing. The PID written into the file is only for the message a
refused second process prints. (flock is per machine: two machines sharing a run folder over
NFS are not protected.)
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "train.lock"


class RunLockedError(RuntimeError):
    pass


class RunLock:
    """Context manager holding the run folder's lock; raises RunLockedError if it is taken."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"run folder {self.run_dir} is in use by another training process (PID {holder}); "
                f"wait for it to finish or stop it, or choose another --run-dir") from None
        # The file is truncated and rewritten, never deleted: deleting it would let a third
        # process lock a new file of the same name while a second one waits on the old one.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None
