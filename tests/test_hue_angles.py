"""The hue probe per angle over registry runs: study.tables.hue_angle_table (cached in the run
folder), its figure, and the target on the map's diagonal at every angle (study.targets)."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from paperlib.config import get_profile, override
from paperlib.core.model import Generator
from paperlib.evaluation.evaluate import HUE_PROBE_ANGLES
from paperlib.study import figures, tables, targets
from paperlib.study.registry import MAIN
from paperlib.training.snapshot import FINAL, save_snapshot

from conftest import ConstantColour, ReferenceCopier

matplotlib.use("Agg")
ANGLES = [f"{a:.0f}" for a in HUE_PROBE_ANGLES]


STAND_INS = {"copier": ReferenceCopier, "constant": ConstantColour}


@pytest.fixture
def runs(tmp_path, image_folder, monkeypatch):
    """A runs folder for tables.run_path: finished runs `<kind>-seed<S>` whose final snapshot
    (a real smoke generator's, on conftest's drawings, no warp and no jitter, so that a copied
    reference is the ground truth) loads as the stand-in of that kind. Returns a function that
    writes one: (kind, seed, step) -> run folder."""
    config = override(get_profile("smoke"), {
        "data.dataset": "folder", "data.root": str(image_folder), "data.test_fraction": 0.5,
        "data.tps_scale": 0.0, "data.color_jitter": 0.0})
    real = tables.load_generator

    def load(path, *args, **kwargs):
        _, cfg, step = real(path, *args, **kwargs)
        return STAND_INS[path.parent.name.split("-seed")[0]]().eval(), cfg, step

    monkeypatch.setattr(tables, "load_generator", load)
    monkeypatch.setattr(tables, "run_path",
                        lambda profile, name, seed, dataset=None: tmp_path / f"{name}-seed{seed}")

    def finished(kind: str, seed: int, step: int = 5):
        run = tmp_path / f"{kind}-seed{seed}"
        run.mkdir(exist_ok=True)
        save_snapshot(Generator(config.model), override(config, {"train.seed": seed}), step,
                      run / FINAL)
        return run

    return finished


def test_a_row_per_run_seed_and_angle_and_unfinished_runs_left_out(runs, tmp_path):
    runs("copier", 0), runs("copier", 1, step=7), runs("constant", 0)
    (tmp_path / "constant-seed1").mkdir()  # started, never finished: no final snapshot
    table = tables.hue_angle_table("smoke", ["copier", "constant"], [0, 1], n=8)
    assert list(table.columns) == ["run", "seed", "step", "angle", "aa", "ab", "ba", "bb"]
    assert list(table["angle"]) == (ANGLES + [tables.POOLED]) * 3
    assert list(zip(table["run"], table["seed"]))[::5] == [("copier", 0), ("copier", 1),
                                                          ("constant", 0)]
    assert list(table["step"])[::5] == [5, 7, 5]
    copier = table[table["run"] == "copier"]
    np.testing.assert_allclose(copier[["aa", "ab", "ba", "bb"]].to_numpy(),
                               np.tile([1.0, 0.0, 0.0, 1.0], (len(copier), 1)), atol=0.02)
    constant = table[table["run"] == "constant"]
    np.testing.assert_allclose(constant[["aa", "ab", "ba", "bb"]].to_numpy(), 0, atol=1e-6)
    # a pivot keeps the angles in order (as text, "180" would sort before "90")
    wide = table.pivot_table(index=["run", "seed"], columns="angle", values="aa", observed=True)
    assert list(wide.columns) == ANGLES + [tables.POOLED]
    assert tables.hue_angle_table("smoke", ["constant"], [1]).empty


def test_a_second_call_reads_the_cache_until_the_snapshot_or_the_images_change(runs, monkeypatch):
    run = runs("copier", 0)
    calls = []
    real = tables.hue_transfer

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(tables, "hue_transfer", counted)
    first = tables.hue_angle_table("smoke", ["copier"], [0], n=8)
    assert len(calls) == 1 and calls[0]["split"] == "test"
    again = tables.hue_angle_table("smoke", ["copier"], [0], n=8)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, again)
    [row] = [json.loads(line) for line in (run / tables.HUE_ANGLE_FILE).read_text().splitlines()]
    assert {k: row[k] for k in ("step", "n", "eval_seed", "split")} == {
        "step": 5, "n": 8, "eval_seed": 0, "split": "test"}
    # other images, another evaluation seed, a new final snapshot: each measured anew, once
    tables.hue_angle_table("smoke", ["copier"], [0], n=6)
    tables.hue_angle_table("smoke", ["copier"], [0], n=8, seed=1)
    assert len(calls) == 3
    runs("copier", 0, step=9)
    assert list(tables.hue_angle_table("smoke", ["copier"], [0], n=8)["step"].unique()) == [9]
    tables.hue_angle_table("smoke", ["copier"], [0], n=8)
    assert len(calls) == 4
    assert len((run / tables.HUE_ANGLE_FILE).read_text().splitlines()) == 4


def as_main(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(run=MAIN)


def test_a_copier_meets_the_angle_target_and_a_constant_colour_does_not(runs):
    for kind in STAND_INS:
        runs(kind, 0)
    follow = as_main(tables.hue_angle_table("smoke", ["copier"], [0], n=8))
    ignore = as_main(tables.hue_angle_table("smoke", ["constant"], [0], n=8))
    t = targets.HUE_ANGLE_TARGET
    assert t.label == "map diagonal at every probe angle >= 0.5" and t.runs == (MAIN,)
    met, seeds, words = targets.angle_verdict(t, targets.angle_values(follow)[MAIN])
    assert met is True and words.startswith("met (weakest: ") and seeds[0] > 0.95
    met, seeds, words = targets.angle_verdict(t, targets.angle_values(ignore)[MAIN])
    assert met is False and words.startswith("not met (weakest: ") and abs(seeds[0]) < 1e-6

    text = targets.section({}, hue_angles=follow)
    [row] = [line for line in text.splitlines() if line.startswith(f"| `{t.label}`")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["main model", MAIN] and float(cells[3]) > 0.95 and cells[3] == cells[4]
    assert cells[5].startswith("met (weakest: ")
    assert t.why in text and "main model: 1 of 4 met" in text
    text = targets.section({}, hue_angles=ignore)
    [row] = [line for line in text.splitlines() if line.startswith(f"| `{t.label}`")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert abs(float(cells[3])) < 0.01 and cells[5].startswith("not met (weakest: ")
    assert "main model: 0 of 4 met" in text


def per_angle(values: dict) -> pd.DataFrame:
    """A hue_angle_table of one run: (entry, angle) -> per-seed values; the rest of the map 0,
    and pooled rows that would meet the target."""
    rows = []
    for seed in range(len(next(iter(values.values())))):
        for angle in ANGLES:
            rows.append({"run": MAIN, "seed": seed, "step": 1, "angle": angle, "ab": 0.0,
                         "ba": 0.0, "aa": values.get(("aa", angle), [0.9] * 9)[seed],
                         "bb": values.get(("bb", angle), [0.9] * 9)[seed]})
        rows.append({"run": MAIN, "seed": seed, "step": 1, "angle": tables.POOLED, "aa": 0.9,
                     "ab": 0.0, "ba": 0.0, "bb": 0.9})
    return pd.DataFrame(rows)


def test_the_weakest_entry_decides_and_straddling_seeds_are_named():
    t = targets.HUE_ANGLE_TARGET
    # b* at 180 degrees: 0.45 and 0.61, mean 0.53: met on the mean, one seed under 0.5
    table = per_angle({("bb", "180"): [0.45, 0.61], ("aa", "180"): [0.56, 0.58]})
    met, seeds, words = targets.angle_verdict(t, targets.angle_values(table)[MAIN])
    assert met is True and seeds == [0.45, 0.61]
    assert words == ("met on the mean; the seeds straddle 0.5 (0.61 meets it, 0.45 does not) "
                     "(weakest: b*<-b* at 180 degrees)")
    # one entry under on the mean fails the target, however well the others and the pool do
    table = per_angle({("aa", "90"): [0.40, 0.48]})
    met, seeds, words = targets.angle_verdict(t, targets.angle_values(table)[MAIN])
    assert met is False and words == "not met (weakest: a*<-a* at 90 degrees)"
    # a NaN entry (too few coloured pixels) is not measured, not a zero
    table = per_angle({("aa", "90"): [float("nan"), float("nan")]})
    assert targets.angle_verdict(t, targets.angle_values(table)[MAIN])[0] is True
    assert targets.angle_verdict(t, {}) == (None, [], "not measured")


def test_the_section_judges_the_angles_only_when_their_table_is_given():
    values = {MAIN: {"region_de_self": [13.46, 13.98]}}
    plain = targets.section(values)
    assert targets.HUE_ANGLE_TARGET.label not in plain and "main model: 1 of 3 met" in plain
    text = targets.section(values, hue_angles=per_angle({("bb", "180"): [0.2, 0.3]}))
    assert "main model: 1 of 4 met" in text
    assert text.count(targets.HUE_ANGLE_TARGET.label) == 2  # its row and its reason
    # the existing rows are unchanged; the new row comes after them
    assert text.index("`region_dh_self <= 8`") < text.index(targets.HUE_ANGLE_TARGET.label)
    assert "| 0.25 | 0.20, 0.30 | not met (weakest: b*<-b* at 180 degrees) |" in text
    assert targets.section(values, hue_angles=pd.DataFrame()).count("| not measured |") > 0


def test_the_figure_shows_both_diagonal_entries_per_angle_with_target_and_goal():
    table = per_angle({("bb", "180"): [0.2, 0.3]})
    table = pd.concat([table, table.assign(run="scft-triplet-grid8", aa=table["aa"] - 0.1)])
    fig = figures.hue_angle_points(table)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    for ax, name in zip(fig.axes, ("a*<-a*", "b*<-b*")):
        assert ax.get_title().startswith(name)
        assert [t.get_text() for t in ax.get_xticklabels()] == ANGLES  # pooled rows not drawn
        levels = sorted(ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() in ("--", ":"))
        assert levels == [targets.HUE_ANGLE_TARGET.threshold, targets.HUE_ANGLE_GOAL] == [0.5, 0.7]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [MAIN, "scft-triplet-grid8"]
    # every seed a point: 2 runs x 4 angles x 2 seeds in each panel
    points = sum(len(c.get_offsets()) for c in fig.axes[1].collections)
    assert points >= 16
    matplotlib.pyplot.close(fig)
