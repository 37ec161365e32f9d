"""Intervals for the claims: a bootstrap over seeds and test images of the per-image metrics.

`evaluate` reports each metric over the whole test split, pooled (region errors over all
regions of all images). A claim compares two arms by such numbers, and two seeds say little
about how far a gap could move. Here each test image keeps its own sums, so that any resample
of the images gives the pooled metric again:
- region_de_self: sum of region dE00 over the image's regions, and their count;
- region_dh_self: the area-weighted |dH*| sum and the region area;
- ref_gain_de_self: the same sums with another image's augmented reference (evaluate's
  self_wrong);
- palette_follow_cross: the image's palette distance to its own and to a third image's
  reference.

The bootstrap draws the test images with replacement, the same draw for every arm (they were
scored on the same images and augmentations: a paired comparison), and each arm's seeds with
replacement (the training runs are independent). A gap whose 95% interval holds zero is
undecided; seeds_needed says how many seeds its observed gap would roughly take to decide.

FID is not a mean over images: it gets an interval over seeds alone (seed_gap_interval, one
FID per run). KID, an unbiased MMD, can be computed again on any resample of the images: from
the Inception activations evaluate stores per run (per_image_acts-<split>.npz) and the real
images' cached ones, kid_gap_interval draws images (paired) and seeds as above.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.datasets import build_dataset
from ..training.snapshot import load_generator, load_pt, resolve_snapshot
from . import fid, metrics
from .evaluate import colour_errors, first_n, generate
# the per-image values are stored by evaluate too (as it scores a run), so they live below both
from .per_image import FIELDS, PER_IMAGE_METRICS, per_image_file, save_values, values_from_errors  # noqa: F401
from .per_image import load_activations


def per_image_values(out: dict) -> dict[str, np.ndarray]:
    """The per-image sums (FIELDS, each (N,)) of evaluate.generate's output `out`."""
    return values_from_errors(colour_errors(out))


def statistic(v: dict, idx: np.ndarray, metric: str) -> float:
    """`metric` pooled over the images `idx` (repeats count again), as evaluate pools it over
    the whole split: with idx = all images, evaluate's value."""
    def ratio(num, den):
        d = v[den][idx].sum()
        return float(v[num][idx].sum() / d) if d > 0 else float("nan")

    if metric == "region_de_self":
        return ratio("de_sum", "de_n")
    if metric == "region_dh_self":
        return ratio("dh_area", "area")
    if metric == "ref_gain_de_self":
        return ratio("wrong_sum", "wrong_n") - ratio("de_sum", "de_n")
    if metric == "palette_follow_cross":
        return float(np.nanmean(v["pal_own"][idx]) / np.nanmean(v["pal_other"][idx]))
    raise ValueError(f"no per-image form of metric {metric!r}; known: {', '.join(PER_IMAGE_METRICS)}")


def drawn_mean(x: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """The mean over the seeds `pick` (..., k), indices drawn with replacement from the k seeds'
    values x ((k,) or (..., k)). Drawing k seeds with replacement gives (k-1)/k of the usual
    variance of a mean over seeds (half of it for two), so the drawn seeds' deviations from
    x's mean are scaled by sqrt(k/(k-1)); with one seed, x's mean."""
    pick = np.asarray(pick)
    x = np.broadcast_to(np.asarray(x, np.float64), pick.shape)
    k, mean = pick.shape[-1], x.mean(-1)
    if k < 2:
        return mean
    dev = (np.take_along_axis(x, pick, -1) - mean[..., None]).mean(-1)
    return mean + np.sqrt(k / (k - 1)) * dev


def bootstrap(values: dict[str, list[dict]], metric: str, reps: int = 1000,
              seed: int = 0) -> dict[str, np.ndarray]:
    """`reps` bootstrap draws of `metric` per arm. values: arm -> one per-image dict per seed,
    all on the same test images. Each draw takes the images with replacement (one draw for
    all arms) and each arm's seeds with replacement, and averages the arm's seeds (drawn_mean).
    With one seed only the images vary: the interval says nothing about training noise
    (Intervals in study/claims.py asks for two)."""
    sizes = {len(v["de_sum"]) for seeds in values.values() for v in seeds}
    if len(sizes) != 1 or not all(values.values()):
        raise ValueError(f"bootstrap needs every arm with at least one seed, all on the same "
                         f"number of test images; got {({a: [len(v['de_sum']) for v in s] for a, s in values.items()})}")
    n = sizes.pop()
    rng = np.random.default_rng(seed)
    out = {a: np.empty(reps) for a in values}
    for r in range(reps):
        idx = rng.integers(0, n, n)
        for arm, seeds in values.items():
            x = np.array([statistic(v, idx, metric) for v in seeds])  # (k,) one per seed
            out[arm][r] = drawn_mean(x, rng.integers(0, len(x), len(x)))
    return out


def gap_interval(better: np.ndarray, worse: np.ndarray, lower_is_better: bool = True,
                 level: float = 0.95) -> tuple[float, float]:
    """The `level` percentile interval of the gap by which `better` beats `worse` (paired
    bootstrap draws; positive = the claimed direction)."""
    gap = (worse - better) if lower_is_better else (better - worse)
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(gap, [tail, 100 - tail])
    return float(lo), float(hi)


def seed_gap_interval(better: list[float], worse: list[float], lower_is_better: bool = True,
                      reps: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float] | None:
    """The `level` interval of the gap by which arm `better` beats arm `worse` on a metric with
    one value per run (FID), over seeds alone: each draw takes each arm's seeds with
    replacement, independently (the runs are), and compares their drawn_mean. None when an arm
    has fewer than two seeds: one says nothing about training noise."""
    if min(len(better), len(worse)) < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = [drawn_mean(x, rng.integers(0, len(x), (reps, len(x)))) for x in (better, worse)]
    return gap_interval(*draws, lower_is_better, level)


def resampled_kid(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray,
                  counts: np.ndarray) -> np.ndarray:
    """KID's unbiased MMD^2 between sets X and Y of N paired items, from their kernel matrices
    (N, N), for each draw of the items given as counts (R, N) (how often each item was drawn;
    the same draw for X and Y). A pair of copies of one item is left out of the within-set
    means as the diagonal is: it is the same sample, not two. With counts all 1, fid.kid's
    statistic on the whole sets."""
    c = np.atleast_2d(np.asarray(counts, np.float64))  # (R, N)
    m, same = c.sum(-1), (c * c).sum(-1)  # (R,) draws; ordered pairs of one item, with itself

    def within(k):
        return (((c @ k) * c).sum(-1) - (c * c) @ np.diag(k)) / (m * m - same)

    return within(kxx) + within(kyy) - 2 * ((c @ kxy) * c).sum(-1) / (m * m)


def kid_gap_interval(better: list[np.ndarray], worse: list[np.ndarray], real: np.ndarray,
                     reps: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The `level` interval of KID(worse) - KID(better) (positive: `better` is nearer the real
    images). better, worse: each arm's activations (N, D) per seed, of outputs made from the
    same N test sketches of which `real` (N, D) holds the images. Each draw takes the test
    images with replacement, one draw for both arms and the real set (a paired draw: image i
    is sketch i's truth), scores every run on it (resampled_kid), and takes each arm's seeds
    with replacement (drawn_mean). The kernels are computed once per run (N x N); a draw then
    costs only quadratic forms in the counts, so 1000 draws of 445 images take seconds."""
    n = len(real)
    if n < 2 or not better or not worse or any(a.shape != real.shape for a in [*better, *worse]):
        raise ValueError(f"kid_gap_interval needs every run's activations shaped like the real "
                         f"ones {real.shape}, at least one run per arm")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=reps)  # (R, N)
    krr = fid.kid_kernel(real, real)

    def arm(runs):
        x = np.stack([resampled_kid(fid.kid_kernel(a, a), krr, fid.kid_kernel(a, real), counts)
                      for a in runs], -1)  # (R, k)
        return drawn_mean(x, rng.integers(0, len(runs), (reps, len(runs))))

    return gap_interval(arm(better), arm(worse), True, level)


def seeds_needed(lo: float, hi: float, seeds: int) -> int | None:
    """Roughly how many seeds per arm the gap's interval (lo, hi) from `seeds` seeds would take
    to exclude zero at the same observed gap g = (lo + hi) / 2: with the half-width
    w = (hi - lo) / 2 shrinking as 1/sqrt(seeds), the least n with w * sqrt(seeds / n) < |g|,
    n = floor(seeds * (w / g)^2) + 1. The part of the width due to the test images does not
    shrink with seeds, so for an interval over images and seeds this is a lower bound. None
    when g is 0 (no number of seeds decides it) or the interval already excludes zero."""
    g, w = (lo + hi) / 2, (hi - lo) / 2
    if not np.isfinite(g) or g == 0 or lo > 0 or hi < 0:
        return None
    return int(np.floor(seeds * (w / g) ** 2)) + 1


def interval_verdict(lo: float, hi: float) -> str:
    """"held" when the whole interval of the gap is on the claimed side, "did not hold" when
    it is all on the other side, else "undecided" (the interval holds zero)."""
    if lo > 0:
        return "held"
    if hi < 0:
        return "did not hold"
    return "undecided: the interval holds 0"


def run_values(run_dir, *, n: int | None = None, seed: int = 0, split: str = "test",
               progress: bool = False) -> dict[str, np.ndarray]:
    """The per-image values of a run's current snapshot on the first n images of `split` (None:
    the run's data.eval_limit, as evaluate takes them), cached in the run folder."""
    run_dir = Path(run_dir)
    G, config, step = load_generator(run_dir)
    meta = {"step": int(step), "split": split, "eval_seed": seed,
            "limit": config.data.eval_limit if n is None else n}
    cache = per_image_file(run_dir, split)
    if cache.exists():
        with np.load(cache) as z:
            if json.loads(str(z["meta"])) == meta:
                return {k: z[k] for k in FIELDS}
    ds = first_n(build_dataset(config.data, split), meta["limit"])
    values = per_image_values(generate(G, ds, seed=seed, data_cfg=config.data, progress=progress))
    save_values(run_dir, values, meta)
    return values


def run_activations(run_dir, split: str = "test") -> tuple[np.ndarray, np.ndarray] | None:
    """The Inception activations (N, D) of a run's cross-reference outputs on `split`, stored by
    evaluate for its current snapshot, and those of the real images (N, D) from fid's cache.
    None when either is missing: runs evaluated before the activations were stored, an older
    snapshot's, or a cleared cache."""
    stored = load_activations(run_dir, split)
    if stored is None:
        return None
    acts, meta = stored
    try:
        step = load_pt(resolve_snapshot(run_dir))["step"]
    except FileNotFoundError:
        return None
    real = fid.cached_reference_activations(meta["real_key"]) if meta["step"] == step else None
    return (acts, real) if real is not None and real.shape == acts.shape else None
