import json

import pytest

from paperlib.evaluation import dynamics
from paperlib.config import get_profile, override
from paperlib.training.loop import train


def test_training_seconds_adds_up_the_logged_windows(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"train": {"batch_size": 4}}))
    # 10 steps at 8 img/s (5 s), then 10 more at 20 img/s (2 s)
    lines = [{"step": 10, "images_per_sec": 8.0}, {"step": 20, "images_per_sec": 20.0}]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert dynamics.training_seconds(tmp_path) == pytest.approx(7.0)


@pytest.fixture
def snap_run(tmp_path, image_folder):
    run = tmp_path / "run"
    c = override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(image_folder),
                                        "data.test_fraction": 0.5, "train.max_steps": 4,
                                        "train.snapshot_every": 2})
    train(c, run, progress=False)
    return run


def test_curve_has_one_row_per_snapshot_and_is_cached(snap_run):
    assert [s for s, _ in dynamics.snapshots(snap_run)] == [2, 4]
    df = dynamics.reference_use_curve(snap_run, split="test", n=6, progress=False)
    assert list(df["step"]) == [2, 4]
    for m in dynamics.CURVE_METRICS:
        assert m in df
    assert df["palette_follow_cross"].between(0, 10).all()
    cache = (snap_run / dynamics.CURVE_FILE).read_text().splitlines()
    again = dynamics.reference_use_curve(snap_run, split="test", n=6, progress=False)
    assert (snap_run / dynamics.CURVE_FILE).read_text().splitlines() == cache  # nothing recomputed
    assert again.equals(df)
    # another split is measured separately, not read from the test rows
    train_rows = dynamics.reference_use_curve(snap_run, split="train", n=6, progress=False)
    assert len(train_rows) == 2 and len((snap_run / dynamics.CURVE_FILE).read_text().splitlines()) == 4


def test_curve_scores_the_runs_curve_images_by_default(snap_run):
    """n None takes the run's data.curve_images (12 in smoke); a run whose config.json predates
    the field scores 48, as every curve did before it."""
    import json

    assert dynamics.curve_images(snap_run) == get_profile("smoke").data.curve_images == 12
    df = dynamics.reference_use_curve(snap_run, split="test", progress=False)
    rows = [json.loads(x) for x in (snap_run / dynamics.CURVE_FILE).read_text().splitlines()]
    assert list(df["step"]) == [2, 4] and {r["n"] for r in rows} == {12}
    cfg_path = snap_run / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["data"]["curve_images"]
    cfg_path.write_text(json.dumps(cfg))
    assert dynamics.curve_images(snap_run) == 48 == get_profile("mini").data.curve_images
