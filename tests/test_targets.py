"""study.targets: the targets defined once, judged on both sides of each threshold, and the
headline's Targets section that notebook 07 writes from them."""
import math

import pandas as pd
import pytest

from paperlib.study import figures, tables, targets
from paperlib.study.registry import ARMS, MAIN
from paperlib.study.targets import AT_LEAST, AT_MOST, TARGETS, Target


def by(metric: str, run: str = MAIN) -> Target:
    [t] = [t for t in TARGETS if t.metric == metric and run in t.runs]
    return t


def test_the_targets_are_the_ones_the_results_quote():
    assert (by("ref_gain_de_self").direction, by("ref_gain_de_self").threshold) == (AT_LEAST, 15.0)
    assert (by("region_de_self").direction, by("region_de_self").threshold) == (AT_MOST, 14.0)
    assert targets.targets_for("openmoji") == TARGETS
    # every arm but SCFT + L1, the main model among them, is held to the dataset's hue target
    for dataset, level in (("openmoji", 8.0), ("faces", 5.0)):
        for arm in ARMS:
            hue = [t for t in targets.targets_for(dataset)
                   if t.metric == "region_dh_self" and arm in t.runs]
            assert [t.threshold for t in hue] == ([] if arm == "scft-l1" else [level]), (dataset, arm)
    for dataset in ("openmoji", "faces"):
        assert all(t.why.startswith("[I] ") for t in targets.targets_for(dataset))


@pytest.mark.parametrize("t", TARGETS, ids=lambda t: f"{t.label} ({t.scope})")
def test_met_on_the_good_side_and_at_the_threshold_not_on_the_bad_side(t):
    good = 1.0 if t.direction == AT_LEAST else -1.0
    assert t.met(t.threshold) and t.met(t.threshold + good * 0.01)
    assert not t.met(t.threshold - good * 0.01)
    assert targets.verdict(t, [t.threshold + good, t.threshold + 2 * good]) == (True, "met")
    assert targets.verdict(t, [t.threshold - good, t.threshold - 2 * good]) == (False, "not met")


def test_the_direction_decides_which_side_meets():
    up = Target("m", AT_LEAST, 10.0, ("r",), "runs", "[I] higher is better")
    down = Target("m", AT_MOST, 10.0, ("r",), "runs", "[I] lower is better")
    assert up.met(11) and not up.met(9)
    assert down.met(9) and not down.met(11)
    with pytest.raises(ValueError, match="direction"):
        Target("m", ">", 1.0, ("r",), "runs", "[I]")


def test_seeds_on_both_sides_say_so_and_the_mean_decides():
    t = by("region_de_self")  # <= 14
    assert targets.verdict(t, [13.46, 13.98]) == (True, "met")
    met, words = targets.verdict(t, [13.5, 14.9])  # mean 14.2: not met, one seed under
    assert met is False and words.startswith("not met on the mean")
    assert "straddle 14" in words and "13.50 meets it" in words and "14.90 does not" in words
    met, words = targets.verdict(t, [13.0, 14.6])  # mean 13.8: met, one seed over
    assert met is True and words.startswith("met on the mean") and "14.60 does not" in words
    assert targets.verdict(t, []) == (None, "not measured")


def long_metrics(values: dict) -> pd.DataFrame:
    """A long metrics table (tables.metrics_table's columns) of run -> metric -> per-seed values."""
    return pd.DataFrame([{"run": run, "seed": seed, "metric": m, "value": v}
                         for run, metrics in values.items() for m, seeds in metrics.items()
                         for seed, v in enumerate(seeds)])


VALUES = {MAIN: {"ref_gain_de_self": [18.0, 20.0], "palette_follow_cross": [0.6, 0.7],
                 "region_de_self": [13.5, 14.9], "region_dh_self": [5.0, 6.0]},
          **{arm: {"region_dh_self": [6.0, 7.0]} for arm in ARMS[1:]},
          "adain": {"region_dh_self": [9.0, 10.0]}}


def test_seed_values_read_the_long_table_in_seed_order():
    df = long_metrics(VALUES)
    df = pd.concat([df, df.assign(value=df["value"] + 2.0)])  # two rows per seed: averaged
    got = targets.seed_values(df, ARMS)
    assert got[MAIN]["region_de_self"] == pytest.approx([14.5, 15.9])
    assert set(got) == set(ARMS)
    assert targets.seed_values(df, [MAIN]).keys() == {MAIN}


def test_the_section_mentions_every_target_and_run_with_its_verdict():
    text = targets.section(targets.seed_values(long_metrics(VALUES)))
    assert text.startswith("## Targets\n")
    for t in TARGETS:
        assert f"`{t.label}`" in text and t.why in text
        for run in t.runs:
            assert f"| {run} |" in text
    rows = {line.split(" | ")[2]: line for line in text.splitlines()
            if line.startswith("| `region_dh_self <= 8`")}
    assert rows["adain"].endswith("| not met |") and rows["add"].endswith("| met |")
    assert rows[MAIN].endswith("| met |") and "scft-l1" not in rows
    [region] = [line for line in text.splitlines() if line.startswith("| `region_de_self")]
    assert "| 14.20 | 13.50, 14.90 | not met on the mean; the seeds straddle 14" in region
    assert "main model: 2 of 3 met; every arm but SCFT + L1: 5 of 6 met." in text


def test_a_run_without_values_is_not_measured_and_not_counted_as_met():
    text = targets.section({MAIN: {"ref_gain_de_self": [16.0]}})
    assert f"| {MAIN} | 16.00 | 16.00 | met |" in text
    assert "| add | - | - | not measured |" in text
    assert "main model: 1 of 3 met" in text


def test_two_seeds_are_rebuilt_from_mean_and_sd():
    df = long_metrics({"a": {"region_de_self": [13.0, 15.0]}, "b": {"region_de_self": [12.0]}})
    summary = tables.summarise(df, ["region_de_self"])
    rebuilt = targets.seeds_from_summary(summary)
    assert rebuilt["a"]["region_de_self"] == pytest.approx([13.0, 15.0])
    assert rebuilt["b"]["region_de_self"] == [12.0]  # one seed: its value, no spread
    assert math.isclose(sum(rebuilt["a"]["region_de_self"]) / 2, 14.0)


def test_the_headline_ends_with_its_sections(tmp_path):
    table = pd.DataFrame([{"run": MAIN, "seeds": 2, "region_de_self": "13.72 ± 0.37"}])
    plain = tables.save_headline(table, tmp_path, {"profile": "mini"}).read_text()
    section = targets.section({MAIN: {"region_de_self": [13.46, 13.98]}})
    text = tables.save_headline(table, tmp_path, {"profile": "mini"},
                                sections=[section]).read_text()
    # the committed headlines gained their section this way: appended after a blank line
    assert text == plain + "\n" + section
    assert text.index("Provenance:") < text.index("## Targets")


def test_the_figures_draw_the_targets_of_the_runs_they_show():
    assert targets.thresholds("region_dh_self", [MAIN, "add"]) == [(8.0, "every arm but SCFT + L1")]
    assert targets.thresholds("region_dh_self", ["add"], targets.targets_for("faces")) == [
        (5.0, "every arm but SCFT + L1")]
    assert targets.thresholds("region_dh_self", ["scft-l1"]) == []
    assert targets.thresholds("ref_gain_de_self", [MAIN]) == [(15.0, "main model")]
    assert targets.thresholds("ref_gain_de_self", ["recipe-l1-triplet"]) == []
    curve = pd.DataFrame([{"run": run, "step": s, "minutes": 0.0, "metric": "ref_gain_de_self",
                           "value": float(s)} for run in ("openmoji", "faces") for s in (1, 2)])
    fig = figures.reference_use_curves(curve, target_runs=[MAIN])
    lines = [ln.get_ydata()[0] for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert lines == [15.0]
    fig = figures.reference_use_curves(curve)  # runs named "openmoji" and "faces": no target
    assert not [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
