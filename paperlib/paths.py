"""Where the project keeps things: the repository root and the cache of renders and weights."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding pyproject.toml and
    paperlib/; else `start` itself. Notebooks run from notebooks/ and still find the root."""
    p = Path(start or os.getcwd()).resolve()
    for candidate in (p, *p.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "paperlib").is_dir():
            return candidate
    return p


def cache_root() -> Path:
    """$PAPERLIB_CACHE if set, else <repo root>/.cache (git-ignored)."""
    env = os.environ.get("PAPERLIB_CACHE")
    return Path(env) if env else repo_root() / ".cache"


class DiskFullError(OSError):
    """No space left (ENOSPC, or a quota, EDQUOT) while writing a file; the message names the
    file and its folder and says that the file it would have replaced is intact."""

    def __init__(self, dst: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror)
        self.filename = str(dst)
        self.cause = OSError(cause.errno, cause.strerror)
        self.message = (f"disk full: no space left on the device holding {dst.parent} while "
                        f"writing {dst.name} ({cause.strerror}); {dst.name} was left as it was "
                        f"before. Free some space there and rerun the same command.")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # a worker process hands its exception to the parent by pickling it; OSError's own
        # reduce passes (errno, strerror, filename), which is not this signature, and the pool
        # then reports a broken process instead of the full disk
        return type(self), (Path(self.filename), self.cause)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# torch.save's zip writer reports a full disk as RuntimeError("... unexpected pos ..."), not as
# OSError; a failed write with less than this left on the device is taken for a full disk
NEARLY_FULL_BYTES = 16 * 2**20


def disk_nearly_full(folder: str | os.PathLike) -> bool:
    """Whether the device holding `folder` has less than NEARLY_FULL_BYTES left for this user."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize < NEARLY_FULL_BYTES


def atomic_write(dst: str | os.PathLike, write: Callable, *, previous: str | os.PathLike | None = None,
                 at: Callable[[str, BinaryIO | None], None] | None = None) -> None:
    """write(binary file) into a temp file beside dst, then rename: a kill at any moment leaves
    either the old file or the new one, never half of one.

    The data is fsynced before the rename, so a crash of the machine (not only of the process)
    cannot leave a renamed but empty file. With `previous`, the file being replaced is kept
    under that name (renamed, not copied) once the new one is fully written. `at(stage, file)`,
    when given, is called at two moments a test may want to interrupt: "written" (the data is in
    the temp file, which is passed) and "rotate" (between the two renames; file None); the
    fault-injection hooks come in this way (training.faults.points), so this module, at the
    bottom of the package, knows nothing of them. A full disk raises DiskFullError; the temp
    file is removed.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if at is not None:
                at("written", f)
            os.fsync(f.fileno())
        if previous is not None and dst.exists():
            os.replace(dst, previous)
            if at is not None:
                at("rotate", None)
        os.replace(tmp, dst)
    except BaseException as exc:
        # asked before the temp file is removed, which frees what it had taken
        full = ((isinstance(exc, OSError) and exc.errno in DISK_FULL)
                or (isinstance(exc, RuntimeError) and disk_nearly_full(dst.parent)))
        if os.path.exists(tmp):
            os.unlink(tmp)
        if full:
            cause = exc if isinstance(exc, OSError) else OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise DiskFullError(dst, cause) from exc
        raise


def append_atomic(path: str | os.PathLike, text: str) -> None:
    """Append `text` to a small text file (metrics, caches) all at once: the file is rewritten
    through `atomic_write`, so a kill never leaves a torn last line or half of a group of lines
    that belong together."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    atomic_write(path, lambda f: f.write(old + text.encode()))


@contextlib.contextmanager
def cache_lock(path: str | os.PathLike) -> Iterator[None]:
    """Held while this process builds the cache file `path` (renders, converted weights, real
    images' activations). Another process that needs the same file waits here, then finds it
    built and reads it: two processes starting on a cold cache (a notebook and the tests of
    `make test`, two notebooks, the workers of a pool) would otherwise each build it, each
    rendering every OpenMoji SVG in a pool of its own. Callers look for the file again once
    they hold the lock. The lock is the kernel's (flock on `<path>.lock`), so a killed builder
    leaves none held; where that file cannot be made (a read-only cache), the build goes on
    unlocked and the caller's own write says what is wrong."""
    lock = Path(str(path) + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def built_or_locked(path: str | os.PathLike):
    """The context to build cache file `path` in: none where it already exists (the caller
    reads it), else `cache_lock(path)`."""
    return contextlib.nullcontext() if Path(path).is_file() else cache_lock(path)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files that `atomic_write` leaves behind when its process is killed
    (`<name>.<random>.tmp`). Call only while no other process writes to `folder`."""
    removed = []
    for p in Path(folder).glob("*.*.tmp"):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed
