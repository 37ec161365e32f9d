import numpy as np
import pytest
import torch

from paperlib.config import get_profile, override
from paperlib.evaluation import evaluate as ev
from paperlib.evaluation import intervals as iv


@pytest.fixture
def folder_config(image_folder):
    return override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(image_folder),
                                           "data.test_fraction": 0.5})


@pytest.fixture
def generated(folder_config):
    from paperlib.core.model import Generator
    from paperlib.data.datasets import build_dataset

    torch.manual_seed(0)
    G = Generator(folder_config.model).eval()
    with torch.no_grad():
        return ev.generate(G, build_dataset(folder_config.data, "test"), data_cfg=folder_config.data,
                           progress=False)


def test_all_images_give_back_the_pooled_metrics_of_evaluate(generated):
    v = iv.per_image_values(generated)
    every = np.arange(len(v["de_sum"]))
    pooled = ev.reference_values(generated)
    for m in iv.PER_IMAGE_METRICS:
        assert iv.statistic(v, every, m) == pytest.approx(pooled[m], rel=1e-9, abs=1e-9), m
    # a draw that repeats one image gives that image's own region error
    one = np.zeros(5, dtype=int) + int(np.argmax(v["de_n"]))
    assert iv.statistic(v, one, "region_de_self") == pytest.approx(
        v["de_sum"][one[0]] / v["de_n"][one[0]])
    with pytest.raises(ValueError, match="'fid_cross'"):
        iv.statistic(v, every, "fid_cross")


def fake(n, de, seed=0):
    """Per-image values with region error `de` (+ noise) on n images of 4 regions each."""
    rng = np.random.default_rng(seed)
    per = de + rng.normal(0, 1, n)
    ones = np.ones(n)
    return {"de_sum": 4 * per, "de_n": 4 * ones, "wrong_sum": 4 * (per + 3), "wrong_n": 4 * ones,
            "dh_area": per, "area": ones, "pal_own": ones, "pal_other": 2 * ones}


def test_a_constant_shift_is_held_and_equal_arms_are_undecided():
    a0, a1 = fake(60, 10.0, 0), fake(60, 10.0, 1)
    shifted = [{**v, "de_sum": v["de_sum"] + 4 * 5.0} for v in (a0, a1)]  # +5 dE on every image
    draws = iv.bootstrap({"a": [a0, a1], "b": shifted, "same": [a0, a1]}, "region_de_self", reps=300)
    lo, hi = iv.gap_interval(draws["a"], draws["b"])
    assert lo > 4 and hi < 6 and iv.interval_verdict(lo, hi) == "held"
    lo, hi = iv.gap_interval(draws["b"], draws["a"])  # the claim the other way round
    assert iv.interval_verdict(lo, hi) == "did not hold"
    lo, hi = iv.gap_interval(draws["a"], draws["same"])
    assert lo < 0 < hi and iv.interval_verdict(lo, hi).startswith("undecided")
    gain = iv.bootstrap({"a": [a0]}, "ref_gain_de_self", reps=50)["a"]
    assert np.allclose(gain, 3.0)  # wrong references cost exactly 3 on every image
    lo, hi = iv.gap_interval(gain, np.zeros_like(gain), lower_is_better=False)
    assert iv.interval_verdict(lo, hi) == "held"


def test_the_seeds_are_drawn_too():
    """Two seeds far apart: draws of the arm spread over both seeds' values, not just the mean."""
    far = [fake(40, 10.0, 0), fake(40, 20.0, 1)]
    draws = iv.bootstrap({"a": far}, "region_de_self", reps=400, seed=1)["a"]
    assert draws.min() < 12 and draws.max() > 18  # both seeds drawn twice happen


def test_the_bootstrap_refuses_arms_on_different_images():
    with pytest.raises(ValueError, match="same number of test images"):
        iv.bootstrap({"a": [fake(10, 1.0)], "b": [fake(12, 1.0)]}, "region_de_self")
    with pytest.raises(ValueError, match="at least one seed"):
        iv.bootstrap({"a": [fake(10, 1.0)], "b": []}, "region_de_self")


def test_run_values_are_cached_per_snapshot_and_image_count(folder_config, tmp_path, monkeypatch):
    from paperlib.core.model import Generator
    from paperlib.training.snapshot import FINAL, save_snapshot

    run = tmp_path / "run"
    torch.manual_seed(0)
    save_snapshot(Generator(folder_config.model), folder_config, 3, run / FINAL)
    calls = []
    real = ev.generate
    monkeypatch.setattr(iv, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = iv.run_values(run, n=6)
    again = iv.run_values(run, n=6)
    assert len(calls) == 1 and all(np.array_equal(first[k], again[k]) for k in iv.FIELDS)
    assert len(first["de_sum"]) == 6
    assert len(iv.run_values(run, n=4)["de_sum"]) == 4 and len(calls) == 2
    save_snapshot(Generator(folder_config.model), folder_config, 5, run / FINAL)  # a newer step
    iv.run_values(run, n=4)
    assert len(calls) == 3


def mock_claims(monkeypatch, de: dict, means: dict, fids: dict, acts: dict | None = None):
    """claims.claims on made-up runs: per-image region error `de` per run (the same image noise
    for all), seed means `means` (sd 0.1) and FID per seed `fids`; stored activations `acts`
    (run -> list of (outputs, real)) or none."""
    import pandas as pd

    from paperlib.study import claims

    per_image = {r: [fake(50, 0.0, s) for s in (0, 1)] for r in de}
    for r, v in de.items():
        per_image[r] = [{**x, "de_sum": x["de_sum"] + 4 * v, "wrong_sum": x["wrong_sum"] + 4 * v}
                        for x in per_image[r]]
    monkeypatch.setattr(claims.Intervals, "of", lambda self, run: per_image[run])
    monkeypatch.setattr(claims.Intervals, "activations",
                        lambda self, run: (acts or {}).get(run, []))
    cols = ["fid_cross", "region_de_self", "palette_cross", "ssim_self", "ref_gain_de_self",
            "palette_follow_cross"]
    table = pd.DataFrame([{"run": r, **{c: v for c in cols}, "region_de_self": v,
                           **{c + "_sd": 0.1 for c in cols}} for r, v in means.items()])
    long = pd.DataFrame([{"reference": "image", "run": r, "seed": s, "metric": "fid_cross",
                          "value": v} for r, vs in fids.items() for s, v in enumerate(vs)])
    monkeypatch.setattr(claims, "metrics_table", lambda *a, **k: long)
    monkeypatch.setattr(claims, "summarise", lambda df, metrics: table)
    monkeypatch.setattr(claims, "attention_accuracy", lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(claims, "read_metrics_pair", lambda *a, **k: {})
    return claims


def test_claims_on_per_image_metrics_are_judged_by_their_intervals(monkeypatch):
    """SCFT 5 dE below the better of addition and AdaIN on every image: held, with its
    interval; triplet and L1 alike: undecided, although the seed means differ in the claimed
    direction by more than their spread, with the seeds it would need; FID: the interval over
    seeds, and no KID interval without stored activations."""
    from paperlib.study.registry import MAIN

    de = {MAIN: 8.0, "scft-triplet": 10.0, "add": 15.0, "adain": 16.0, "scft-l1": 10.0,
          "scft-none": 10.0, "sga": 11.0}
    means = {**de, "scft-l1": 10.5}  # the seed means say triplet beats L1 by 0.5 > sd 0.1
    fids = {r: [v - 0.1, v + 0.1] for r, v in de.items()}
    claims = mock_claims(monkeypatch, de, means, fids)
    rows = claims.claims("mini", (0, 1), reps=200).set_index("claim")
    assert rows.loc["fig3", "verdict"] == "held"
    import re

    lo, hi = map(float, re.search(r"95% interval of the gap (\S+) to (\S+)\]",
                                  rows.loc["fig3", "ours"]).groups())
    assert 4 < lo < 5 < hi < 6  # the two seeds' noise differs: the seed draws widen it
    assert re.fullmatch(r"triplet best: undecided: the interval holds 0 \(about \d+ seeds would "
                        r"decide it at this gap\); L1 worse than none: undecided.*",
                        rows.loc["fig17", "verdict"])
    assert rows.loc["fig1", "verdict"] == "gain: held; palette: held"  # gain 3, ratio 0.5
    # FID over seeds: SCFT 9.9 / 10.1 against addition 14.9 / 15.1. A drawn mean of two seeds
    # is 0.1 * sqrt(2) off its mean when both draws are one seed (1 in 4), so the gap is
    # 5 +- 0.2 * sqrt(2) in 1 draw of 16 on each side: more than the 2.5% tails.
    ours = rows.loc["table1", "ours"]
    assert "[95% interval of the FID gap over seeds 4.72 to 5.28]" in ours
    assert "no KID interval" in ours and rows.loc["table1", "verdict"] == "held"
    assert "no KID interval" in rows.loc["sga", "ours"]
    assert rows.loc["sga", "verdict"] == "did not hold"  # SGA 11 against SCFT 10


def test_fid_claims_get_a_kid_interval_from_stored_activations(monkeypatch):
    """FID gaps of 1 with seeds 2 apart: undecided, with the seeds a 1/sqrt(seeds) width would
    need; addition's and AdaIN's outputs shifted off the real images: KID held. A single seed
    per arm: no intervals, the seed-spread rule."""
    import re

    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 8))
    near = [(real + rng.normal(0, 0.3, real.shape), real) for _ in range(3)]
    far = [(x + 0.5, r) for x, r in near]
    de = {"scft-triplet": 10.0, "add": 15.0, "adain": 16.0, "scft-l1": 10.0, "scft-none": 10.0}
    fids = {"scft-triplet": [10.0, 12.0, 14.0], "add": [11.0, 13.0, 15.0], "adain": [20.0] * 3}
    means = {**de, "scft-triplet": 12.0, "add": 13.0, "adain": 20.0}
    claims = mock_claims(monkeypatch, de, means, fids,
                         {"scft-triplet": near, "add": far, "adain": far})
    rows = claims.claims("mini", (0, 1, 2), reps=400).set_index("claim")
    ours, judgement = rows.loc["table1", ["ours", "verdict"]]
    lo, hi = map(float, re.search(r"FID gap over seeds (\S+) to (\S+)\]", ours).groups())
    needed = iv.seeds_needed(lo, hi, 3)
    assert lo < 0 < hi and needed > 3
    assert "95% interval of the KID gap to add over images and seeds" in ours
    assert judgement == (f"FID: undecided: the interval holds 0 (about {needed} seeds would "
                         f"decide it at this gap); KID: held")
    one = {r: v[:1] for r, v in fids.items()}
    claims = mock_claims(monkeypatch, de, means, one, {"scft-triplet": near[:1], "add": far[:1]})
    rows = claims.claims("mini", (0,), reps=100).set_index("claim")
    assert "interval" not in rows.loc["table1", "ours"].replace("no KID interval", "")
    assert rows.loc["table1", "verdict"] == "held"  # a gap of 1 against an sd of 0.1
def test_images_without_regions_sum_to_zero():
    """Images 0 and 3 have no closed region, image 1 two, image 2 one: the per-image sums of
    the concatenated region arrays follow the counts."""
    region = {"region_de": np.array([1.0, 2.0, 4.0]), "region_lch": np.ones((3, 3)),
              "region_area": np.array([10.0, 20.0, 30.0]), "regions_per_image": np.array([0, 2, 1, 0])}
    errors = {"region": region, "wrong": region, "palette_own": np.ones(4), "palette_other": np.ones(4)}
    v = iv.values_from_errors(errors)
    assert v["de_sum"].tolist() == [0.0, 3.0, 4.0, 0.0] and v["de_n"].tolist() == [0, 2, 1, 0]
    assert v["area"].tolist() == [0.0, 30.0, 30.0, 0.0] and v["dh_area"].tolist() == [0.0, 30.0, 30.0, 0.0]
    assert np.isnan(iv.statistic(v, np.array([0, 3]), "region_de_self"))  # a draw of no region


def test_two_seeds_carry_the_usual_variance_of_their_mean():
    """Seeds at 10 and 14 on every image (no image noise): the drawn arm has the variance of a
    mean of two runs, s^2/2 = (14 - 10)^2 / 4 = 4, not the 2 that plain resampling gives."""
    flat = lambda de: fake(30, de, 0) | {"de_sum": np.full(30, 4 * de)}  # noqa: E731
    draws = iv.bootstrap({"a": [flat(10.0), flat(14.0)]}, "region_de_self", reps=4000, seed=3)["a"]
    assert draws.mean() == pytest.approx(12.0, abs=0.15)
    assert draws.var() == pytest.approx(4.0, rel=0.1)


def test_a_claim_without_a_finite_interval_keeps_the_seed_spread_verdict():
    from paperlib.study.claims import judged

    assert judged(None, "held", "region_de_self") == ("", "held")
    assert judged((float("nan"), 1.0), "did not hold", "region_de_self") == ("", "did not hold")
    text, v = judged((0.0123, 0.0456), "x", "palette_follow_cross")
    assert text == " [95% interval of the gap 0.012 to 0.046]" and v == "held"


def test_a_drawn_mean_of_seeds_carries_the_variance_of_their_mean():
    """Over all 27 draws of three seeds, exactly: mean the seeds' mean, variance s^2 / 3."""
    import itertools

    x = np.array([10.0, 11.0, 15.0])
    picks = np.array(list(itertools.product(range(3), repeat=3)))  # (27, 3) every draw once
    draws = iv.drawn_mean(x, picks)
    assert draws.mean() == pytest.approx(x.mean(), rel=1e-12)
    assert draws.var() == pytest.approx(x.var(ddof=1) / 3, rel=1e-12)
    assert iv.drawn_mean(np.array([7.0]), np.array([0])) == 7.0  # one seed: nothing to draw


def test_the_fid_interval_over_seeds():
    """Constant seeds: zero width at the exact gap; the arms swapped or the direction turned:
    the interval mirrored; one seed: no interval."""
    assert iv.seed_gap_interval([10.0] * 3, [15.0] * 3) == (5.0, 5.0)
    assert iv.seed_gap_interval([15.0] * 3, [10.0] * 3) == (-5.0, -5.0)
    assert iv.seed_gap_interval([10.0] * 3, [15.0] * 3, lower_is_better=False) == (-5.0, -5.0)
    better, worse = [10.0, 11.0, 12.0], [15.0, 13.0, 16.0]
    lo, hi = iv.seed_gap_interval(better, worse, reps=4000)
    assert 0 < lo < 15 - 11 < hi  # around the gap of the means, 4
    assert iv.seed_gap_interval(worse, better, reps=4000) == pytest.approx((-hi, -lo))
    assert iv.seed_gap_interval(better, worse, False, reps=4000) == pytest.approx((-hi, -lo))
    assert iv.seed_gap_interval([10.0], worse) is None
    assert iv.seed_gap_interval(better, [15.0]) is None


def test_a_resampled_kid_is_kid_on_the_resampled_images():
    """Each image once: fid.kid's statistic on the whole sets; each image twice: the same
    (copies of one image are not pairs); one image left out: KID without it."""
    from paperlib.evaluation import fid

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8)) + 0.3
    k = fid.kid_kernel(a, a), fid.kid_kernel(b, b), fid.kid_kernel(a, b)
    whole = fid.kid(a, b, subsets=1, subset_size=30)[0]
    assert iv.resampled_kid(*k, np.ones(30)) == pytest.approx([whole], rel=1e-9)
    assert iv.resampled_kid(*k, np.full((2, 30), 2.0)) == pytest.approx([whole] * 2, rel=1e-9)
    drop = np.r_[np.zeros(1), np.ones(29)]
    assert iv.resampled_kid(*k, drop) == pytest.approx([fid.kid(a[1:], b[1:], 1, 29)[0]], rel=1e-9)


def test_the_kid_interval_over_images_and_seeds():
    """Identical activations: a gap of exactly 0 on every draw; one arm against itself with
    its seeds drawn independently: an interval around 0; one arm's outputs shifted off the real
    images: a positive gap whose interval excludes 0, and the other way round a negative one."""
    rng = np.random.default_rng(1)
    real = rng.normal(size=(60, 16))
    near = [real + rng.normal(0, 0.3, real.shape) for _ in range(3)]
    far = [x + 0.5 for x in near]
    assert iv.kid_gap_interval([near[0]] * 3, [near[0]] * 3, real, reps=100) == (0.0, 0.0)
    lo, hi = iv.kid_gap_interval(near, near, real, reps=200)
    assert lo < 0 < hi
    lo, hi = iv.kid_gap_interval(near, far, real, reps=200)
    assert 0 < lo < hi and iv.interval_verdict(lo, hi) == "held"
    lo, hi = iv.kid_gap_interval(far, near, real, reps=200)
    assert iv.interval_verdict(lo, hi) == "did not hold"
    with pytest.raises(ValueError, match="shaped like the real"):
        iv.kid_gap_interval(near, [real[:50]], real)


def test_seeds_needed_shrinks_the_width_as_one_over_root_seeds():
    """Gap 1, half-width 2 from 3 seeds: the width must shrink below 1, more than 2-fold, so
    more than 3 * 4 = 12 seeds; half-width 1.5: more than 6.75. Decided or zero gaps: None."""
    assert iv.seeds_needed(-1.0, 3.0, 3) == 13 and iv.seeds_needed(-3.0, 1.0, 3) == 13
    assert iv.seeds_needed(-0.5, 2.5, 3) == 7
    n = iv.seeds_needed(-0.3, 1.1, 2)  # g = 0.4, w = 0.7
    assert 0.7 * np.sqrt(2 / n) < 0.4 <= 0.7 * np.sqrt(2 / (n - 1))
    assert iv.seeds_needed(0.5, 3.0, 3) is None and iv.seeds_needed(-3.0, -0.5, 3) is None
    assert iv.seeds_needed(-1.0, 1.0, 3) is None and iv.seeds_needed(float("nan"), 1.0, 3) is None
