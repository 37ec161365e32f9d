"""training.snapshot: which snapshot a run folder stands for."""
import os
from pathlib import Path

import pytest

from paperlib.training.snapshot import FINAL, resolve_snapshot


@pytest.mark.parametrize("listing", [sorted, lambda found: sorted(found, reverse=True)])
def test_snapshots_of_one_mtime_resolve_to_the_highest_step(tmp_path, monkeypatch, listing):
    """A copy or a checkout can give every snapshot the same mtime; the newest is then the one
    with the highest (zero-padded) step, in whichever order the file system lists them."""
    for step in (100, 200, 50):
        (tmp_path / f"snapshot-{step:07d}.pt").write_bytes(b"")
        os.utime(tmp_path / f"snapshot-{step:07d}.pt", ns=(10**18, 10**18))
    glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(listing(glob(self, pattern))))
    assert resolve_snapshot(tmp_path).name == "snapshot-0000200.pt"


def test_the_newest_snapshot_wins_and_the_final_one_before_it(tmp_path):
    for step, mtime in ((100, 3), (200, 2)):  # 200 rewritten earlier: mtime, not name, decides
        (tmp_path / f"snapshot-{step:07d}.pt").write_bytes(b"")
        os.utime(tmp_path / f"snapshot-{step:07d}.pt", ns=(mtime * 10**18, mtime * 10**18))
    assert resolve_snapshot(tmp_path).name == "snapshot-0000100.pt"
    (tmp_path / FINAL).write_bytes(b"")
    assert resolve_snapshot(tmp_path).name == FINAL
