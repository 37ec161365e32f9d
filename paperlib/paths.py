"""Where the project keeps things: the repository root and the cache of renders and weights."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


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


def atomic_write(dst: str | os.PathLike, write: Callable) -> None:
    """write(binary file) into a temp file beside dst, then rename: a kill at any moment leaves
    either the old file or the new one, never half of one."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
