"""paperlib.paths: the lock a process holds while it builds a cache file."""
import os

import pytest

from paperlib.paths import built_or_locked, cache_lock


def test_a_lock_held_by_a_process_that_ended_is_free(tmp_path):
    target = tmp_path / "cache" / "renders.npz"
    pid = os.fork()
    if pid == 0:  # the child takes the lock and dies holding it
        with cache_lock(target):
            os._exit(0)
    os.waitpid(pid, 0)
    import fcntl

    fd = os.open(str(target) + ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
    finally:
        os.close(fd)


def test_where_no_lock_file_can_be_made_the_build_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ran = []
    with cache_lock(blocker / "cache" / "renders.npz"):  # its folder cannot exist
        ran.append(1)
    assert ran == [1]


def test_an_existing_file_is_read_without_the_lock(tmp_path):
    target = tmp_path / "renders.npz"
    target.write_bytes(b"x")
    with built_or_locked(target):
        pass
    assert not (tmp_path / "renders.npz.lock").exists()
    target.unlink()
    with built_or_locked(target):
        assert (tmp_path / "renders.npz.lock").exists()


def test_the_build_inside_the_lock_may_raise(tmp_path):
    target = tmp_path / "renders.npz"
    with pytest.raises(ValueError, match="bad svg"):
        with cache_lock(target):
            raise ValueError("bad svg")
    with cache_lock(target):  # released by the error
        pass
