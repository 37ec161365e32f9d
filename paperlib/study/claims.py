"""The paper's claims judged against our runs: each claim of paper.CLAIMS with its evidence as
numbers and a verdict that takes the spread between seeds into account."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import STUDY_DATASETS
from ..evaluation.evaluate import decimals, read_metrics
from ..evaluation.intervals import (bootstrap, gap_interval, interval_verdict, kid_gap_interval,
                                    run_activations, run_values, seed_gap_interval, seeds_needed)
from ..evaluation.metrics import attention_hit_rate
from ..paths import repo_root
from ..training.snapshot import FINAL
from .published import CLAIMS
from .registry import MAIN, SEEDS, load_config, run_path
from .reproduce import results_dir
from .tables import example_batch, metrics_table, outputs, summarise


def attention_accuracy(profile: str, names, seeds=(0,), n: int = 64, *,
                       dataset: str | None = None) -> pd.DataFrame:
    """Top-1 attention on the true correspondence over n augmented-self test images."""
    rows = []
    for name in names:
        for seed in seeds:
            if not (run_path(profile, name, seed, dataset) / FINAL).exists():
                continue
            config = load_config(run_path(profile, name, seed, dataset))
            batch = example_batch(config, n=n, seed=0)
            _, aux = outputs(profile, [name], batch, seed, return_attention=True,
                             dataset=dataset)[name]
            rows.append({"run": name, "seed": seed,
                         "hit_rate": attention_hit_rate(aux["attention"], batch["corr"],
                                                        batch["corr_mask"]),
                         "chance": 1 / aux["attention"].shape[-1]})
    return pd.DataFrame(rows)


def verdict(better: float, worse: float, spread: float, lower_is_better: bool = True) -> str:
    """How a claim fared: `better` beats `worse` by more than `spread` (the larger standard
    deviation between seeds) -> "held"; by no more than it -> "same direction, inside the seed
    spread"; not at all -> "did not hold"."""
    gap = (worse - better) if lower_is_better else (better - worse)
    if gap <= 0:
        return "did not hold"
    if gap <= spread:
        return "same direction, inside the seed spread"
    return "held"


class Intervals:
    """Bootstrap intervals over seeds and test images (evaluation.intervals) of the gaps the
    claims compare, with each run's per-image values and activations read once."""

    def __init__(self, profile: str, seeds, dataset: str | None, reps: int = 1000):
        self.profile, self.seeds, self.dataset, self.reps = profile, tuple(seeds), dataset, reps
        self.values: dict[str, list] = {}
        self.acts: dict[str, list | None] = {}

    def finished(self, run: str) -> list:
        """The folders of the run's seeds that finished training."""
        paths = [run_path(self.profile, run, s, self.dataset) for s in self.seeds]
        return [p for p in paths if (p / FINAL).exists()]

    def count(self, *runs: str) -> int:
        """The fewest seeds with per-image values among `runs`: those their interval drew."""
        return min(len(self.of(r)) for r in runs)

    def of(self, run: str) -> list:
        if run not in self.values:
            self.values[run] = [run_values(p) for p in self.finished(run)]
        return self.values[run]

    def activations(self, run: str) -> list | None:
        """(outputs', real images') activations of each finished seed of `run` (run_activations);
        None when a seed has none stored (evaluated before evaluate kept them)."""
        if run not in self.acts:
            got = [run_activations(p) for p in self.finished(run)]
            self.acts[run] = None if any(g is None for g in got) else got
        return self.acts[run]

    def kid_gap(self, better: str, worse: str) -> tuple[float, float] | None:
        """95% interval of KID(worse) - KID(better) over test images and seeds
        (kid_gap_interval); None when an arm has fewer than two seeds, a seed without stored
        activations, or the arms were scored against different real images."""
        arms = [self.activations(better), self.activations(worse)]
        if any(a is None or len(a) < 2 for a in arms):
            return None
        reals = [real for a in arms for _, real in a]
        if any(not np.array_equal(r, reals[0]) for r in reals[1:]):
            return None
        return kid_gap_interval([x for x, _ in arms[0]], [x for x, _ in arms[1]], reals[0],
                                self.reps)

    def gap(self, better: str, worse: str | None, metric: str, lower_is_better: bool = True,
            reference: float = 0.0) -> tuple[float, float] | None:
        """95% interval of the gap by which run `better` beats run `worse` on `metric` (or the
        number `reference` when `worse` is None); None when a run has no finished seed."""
        arms = {better: self.of(better)} | ({worse: self.of(worse)} if worse else {})
        if any(len(v) < 2 for v in arms.values()):
            return None  # one seed says nothing about training noise: the seed-spread rule
        draws = bootstrap(arms, metric, self.reps)
        other = draws[worse] if worse else np.full(self.reps, reference)
        return gap_interval(draws[better], other, lower_is_better)


def judged(interval: tuple[float, float] | None, fallback: str, metric: str,
           seeds: int | None = None, gap: str = "gap") -> tuple[str, str]:
    """(the interval as text, at the metric's decimals, and its verdict); without a finite
    interval (a run with fewer than two seeds, or draws without a value), the seed-spread
    verdict `fallback`. An undecided verdict says roughly how many seeds its observed gap would
    need (seeds_needed), given the `seeds` per arm the interval drew from. `gap` names the gap
    in the text."""
    if interval is None or not np.isfinite(interval).all():
        return "", fallback
    lo, hi = interval
    d = decimals(metric)
    judgement = interval_verdict(lo, hi)
    needed = seeds_needed(lo, hi, seeds) if seeds else None
    if needed is not None:
        judgement += f" (about {needed} seeds would decide it at this gap)"
    return f" [95% interval of the {gap} {lo:.{d}f} to {hi:.{d}f}]", judgement


def reference_use(boot: Intervals, summary: pd.DataFrame, run: str) -> dict:
    """Fig. 1's claim on one run: does the right reference save colour error (gain > 0), and do
    cross outputs sit nearer their own reference's palette (ratio < 1)? `summary` is
    `summarise` over the runs, indexed by run. The means, interval texts and verdicts."""
    def sd(m):
        v = float(summary.loc[run, m + "_sd"]) if run in summary.index else float("nan")
        return v if v == v else 0.0

    gain = float(summary.loc[run, "ref_gain_de_self"]) if run in summary.index else float("nan")
    ratio = float(summary.loc[run, "palette_follow_cross"]) if run in summary.index else float("nan")
    gain_text, gain_verdict = judged(
        boot.gap(run, None, "ref_gain_de_self", lower_is_better=False),
        verdict(gain, 0.0, sd("ref_gain_de_self"), lower_is_better=False), "ref_gain_de_self",
        boot.count(run))
    ratio_text, ratio_verdict = judged(
        boot.gap(run, None, "palette_follow_cross", reference=1.0),
        verdict(ratio, 1.0, sd("palette_follow_cross")), "palette_follow_cross", boot.count(run))
    return {"gain": gain, "ratio": ratio, "gain_text": gain_text, "gain_verdict": gain_verdict,
            "ratio_text": ratio_text, "ratio_verdict": ratio_verdict}


def claims(profile: str, seeds=SEEDS, *, dataset: str | None = None,
           reps: int = 1000) -> pd.DataFrame:
    """Each claim of the paper (paper.CLAIMS) against our runs, with the evidence as numbers.

    Claims on per-image metrics (region error, reference gain, palette ratio) are judged by a
    bootstrap interval of the gap over seeds and test images (Intervals): "held" when it lies
    on the claimed side of zero, "did not hold" when on the other, else "undecided", with
    roughly how many seeds the observed gap would need (seeds_needed). FID is not a mean over
    images: the FID claims are judged by an interval over seeds (seed_gap_interval), with
    KID's interval over images and seeds beside it where the runs stored their Inception
    activations (Intervals.kid_gap). Without an interval (fewer than two seeds), the
    seed-spread rule of `verdict`, where "inside the seed spread" means the gap is no larger
    than the larger standard deviation between seeds of the two arms compared: not evidence
    either way."""
    boot = Intervals(profile, seeds, dataset, reps)

    df = metrics_table(profile, None, seeds, dataset=dataset)
    df = df[df["reference"] == "image"] if not df.empty else df
    s = summarise(df, ["fid_cross", "kid_cross", "region_de_self", "palette_cross", "ssim_self",
                       "ref_gain_de_self", "palette_follow_cross"]).set_index("run")

    def get(run, m):
        return float(s.loc[run, m]) if run in s.index and m in s.columns else float("nan")

    def per_seed(run, m) -> list[float]:
        """The run's value of metric m for each seed that has one."""
        if df.empty:
            return []
        rows = df[(df["run"] == run) & (df["metric"] == m)].sort_values("seed", kind="stable")
        return [float(v) for v in rows["value"] if v == v]

    def fid_claim(better: str, worse: str, kid_worse: str) -> tuple[str, str]:
        """Run `better` has a lower FID than run `worse`: the interval texts of the FID gap
        over seeds and of the KID gap (against `kid_worse`) over images and seeds, and the
        verdict: FID's interval, else the seed-spread rule, with KID's interval beside it
        where there is one."""
        spread = verdict(get(better, "fid_cross"), get(worse, "fid_cross"),
                         sd(better, worse, m="fid_cross"))
        fids = per_seed(better, "fid_cross"), per_seed(worse, "fid_cross")
        fid_text, fid_verdict = judged(seed_gap_interval(*fids, reps=reps), spread, "fid_cross",
                                       min(map(len, fids)), gap="FID gap over seeds")
        kid = boot.kid_gap(better, kid_worse)
        if kid is None or not np.isfinite(kid).all():
            return (fid_text + " [no KID interval: it needs two seeds per arm whose evaluation "
                    "stored the Inception activations, which runs evaluated before that lack]",
                    fid_verdict)
        drawn = min(len(boot.activations(r)) for r in (better, kid_worse))
        kid_text, kid_verdict = judged(kid, "", "kid_cross", drawn,
                                       gap=f"KID gap to {kid_worse} over images and seeds")
        return fid_text + kid_text, f"FID: {fid_verdict}; KID: {kid_verdict}"

    def sd(*runs_, m):
        vals = [float(s.loc[r, m + "_sd"]) for r in runs_ if r in s.index]
        vals = [v for v in vals if v == v]
        return max(vals) if vals else 0.0

    def better_of(runs, metric, fallback):
        """The run with the lower mean of `metric`; `fallback` where a mean is missing."""
        vals = [get(r, metric) for r in runs]
        return runs[int(np.argmin(vals))] if np.isfinite(vals).all() else fallback

    def scft_vs_others(key: str, metric: str, label: str):
        """SCFT against the better of addition and AdaIN on one metric (lower is better)."""
        best_other = min(("add", "adain"), key=lambda r: get(r, metric))
        if metric == "fid_cross":
            text, judgement = fid_claim("scft-triplet", best_other,
                                        better_of(("add", "adain"), "kid_cross", best_other))
        else:
            text, judgement = judged(
                boot.gap("scft-triplet", best_other, metric),
                verdict(get("scft-triplet", metric), get(best_other, metric),
                        sd("scft-triplet", best_other, m=metric)),
                metric, boot.count("scft-triplet", best_other))
        return (key, CLAIMS[key],
                f"{label} SCFT {get('scft-triplet', metric):.2f} vs addition "
                f"{get('add', metric):.2f}, AdaIN {get('adain', metric):.2f}{text}", judgement)

    # The main model uses its reference when the right one saves colour error (gain > 0) and
    # cross outputs sit nearer their own reference's palette than another's (ratio < 1). It is
    # judged on MAIN; the aggregation arms on the same recipe are quoted beside it.
    main = MAIN
    f1 = reference_use(boot, s, main)
    gain, ratio = f1["gain"], f1["ratio"]
    gain_text, gain_verdict, ratio_text, ratio_verdict = (
        f1["gain_text"], f1["gain_verdict"], f1["ratio_text"], f1["ratio_verdict"])
    rows = [("fig1", CLAIMS["fig1"],
             f"{main}: the right reference saves {gain:.2f} dE2000 against another "
             f"image's{gain_text}; palette distance to its own reference / to another's "
             f"{ratio:.3f} (1 = reference ignored){ratio_text}. On the same recipe: addition "
             f"{get('add', 'ref_gain_de_self'):.2f} / "
             f"{get('add', 'palette_follow_cross'):.3f}, AdaIN "
             f"{get('adain', 'ref_gain_de_self'):.2f} / {get('adain', 'palette_follow_cross'):.3f}",
             f"gain: {gain_verdict}; palette: {ratio_verdict}")]
    rows += [scft_vs_others("table1", "fid_cross", "FID (cross ref.)"),
             scft_vs_others("fig3", "region_de_self", "region dE2000")]
    best_other = min(("scft-l1", "scft-none"), key=lambda r: get(r, "region_de_self"))
    triplet_text, triplet = judged(
        boot.gap("scft-triplet", best_other, "region_de_self"),
        verdict(get("scft-triplet", "region_de_self"), get(best_other, "region_de_self"),
                sd("scft-triplet", best_other, m="region_de_self")), "region_de_self",
        boot.count("scft-triplet", best_other))
    l1_text, l1_vs_none = judged(
        boot.gap("scft-none", "scft-l1", "region_de_self"),
        verdict(get("scft-none", "region_de_self"), get("scft-l1", "region_de_self"),
                sd("scft-none", "scft-l1", m="region_de_self")), "region_de_self",
        boot.count("scft-none", "scft-l1"))
    rows.append(("fig17", CLAIMS["fig17"],
                 f"region dE2000 triplet {get('scft-triplet', 'region_de_self'):.2f}, L1 "
                 f"{get('scft-l1', 'region_de_self'):.2f}, none {get('scft-none', 'region_de_self'):.2f}"
                 f" (triplet against the better of the two{triplet_text}; none against L1{l1_text}); "
                 f"FID triplet {get('scft-triplet', 'fid_cross'):.2f}, L1 {get('scft-l1', 'fid_cross'):.2f}, "
                 f"none {get('scft-none', 'fid_cross'):.2f}",
                 f"triplet best: {triplet}; L1 worse than none: {l1_vs_none}"))
    acc = attention_accuracy(profile, ["scft-triplet", "scft-l1", "scft-none"], seeds,
                             dataset=dataset)
    if not acc.empty:
        m = acc.groupby("run")["hit_rate"].agg(["mean", "std"]).fillna(0.0)
        chance = float(acc["chance"].iloc[0])
        trip = float(m.loc["scft-triplet", "mean"]) if "scft-triplet" in m.index else float("nan")
        none = float(m.loc["scft-none", "mean"]) if "scft-none" in m.index else float("nan")
        spread = float(m["std"].max())
        rows.append(("fig14", CLAIMS["fig14"],
                     "attention top-1 on the true cell: " + ", ".join(
                         f"{r} {v:.3f}" for r, v in m["mean"].items()) + f"; chance {chance:.3f}",
                     verdict(trip, max(none, chance), spread, lower_is_better=False)))
    noref = read_metrics_pair(profile, seeds, dataset=dataset)
    if noref:
        rows.append(("fig5", CLAIMS["fig5"],
                     f"no-reference model (mean of {noref['seeds']} seeds): FID with zero reference "
                     f"{noref['zero']:.2f}, with a reference {noref['image']:.2f}; full model with "
                     f"a reference {get('scft-triplet', 'fid_cross'):.2f}",
                     "plausibility is a judgement: see fig_no_reference.png"))
    if "sga" in s.index:
        sga_text, sga_verdict = fid_claim("sga", "scft-triplet", "scft-triplet")
        rows.append(("sga", CLAIMS["sga"],
                     f"FID (cross ref.) SGA {get('sga', 'fid_cross'):.2f} vs SCFT "
                     f"{get('scft-triplet', 'fid_cross'):.2f}{sga_text}; region dE2000 SGA "
                     f"{get('sga', 'region_de_self'):.2f} vs SCFT "
                     f"{get('scft-triplet', 'region_de_self'):.2f}", sga_verdict))
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "verdict"])


CLAIMS_FILE = "claims.csv"


def committed(profile: str, dataset: str) -> tuple[pd.DataFrame, dict] | None:
    """The claims that `dataset`'s own reproduction wrote (notebook 07: claims.csv in its results
    folder), as (a table of claim, ours, verdict; the file's provenance), or None where the file
    is missing or holds no verdicts of that dataset. Only the dataset's own columns are read: its
    own notebook 07 computed them from its runs, never from another folder's file."""
    path = results_dir(profile, dataset) / CLAIMS_FILE
    if not path.is_file():
        return None
    prov = {}
    for line in path.read_text().splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        prov[key] = value
    table = pd.read_csv(path, comment="#", keep_default_na=False)
    ours, verdict = f"ours ({dataset})", f"verdict ({dataset})"
    if not {"claim", ours, verdict} <= set(table.columns):
        return None
    table = table[["claim", ours, verdict]].set_axis(["claim", "ours", "verdict"], axis=1)
    if table["verdict"].str.startswith("not run").all():
        return None
    return table, prov


def by_dataset(profile: str, seeds=SEEDS, datasets=None) -> pd.DataFrame:
    """`claims` on each study dataset side by side: one row per claim, an `ours` and a
    `verdict` column per dataset, and `datasets agree` saying whether the verdicts are the
    same. A dataset whose runs are not on this machine is read from the claims.csv its own
    reproduction committed (`committed`), and `attrs["read"]` says so, with that file's commit
    and precision, for the provenance; a dataset with neither gets "not run" and the command
    that runs it."""
    datasets = list(datasets or STUDY_DATASETS)
    out = pd.DataFrame({"claim": list(CLAIMS), "paper": list(CLAIMS.values())})
    ran, read = [], {}
    for d in datasets:
        if metrics_table(profile, None, seeds, dataset=d).empty:
            stored = committed(profile, d)
            if stored is None:
                command = "make reproduce" + ("" if d == "openmoji" else f" DATASET={d}")
                out[f"ours ({d})"] = ""
                out[f"verdict ({d})"] = f"not run ({command})"
                continue
            table, prov = stored
            where = results_dir(profile, d) / CLAIMS_FILE
            if where.is_relative_to(repo_root()):  # (smoke keeps its results beside its runs)
                where = where.relative_to(repo_root())
            read[f"{d} claims"] = (f"read from {where.as_posix()} "
                                   f"(its reproduction: git commit {prov.get('git commit', '?')}, "
                                   f"precision {prov.get('precision', 'not recorded')}, steps "
                                   f"{prov.get('steps', '?')}, seeds {prov.get('seeds', '?')}); "
                                   "its runs are not on this machine")
        else:
            table = claims(profile, seeds, dataset=d)
        ran.append(d)
        table = table.set_index("claim")
        out[f"ours ({d})"] = out["claim"].map(table["ours"]).fillna("")
        out[f"verdict ({d})"] = out["claim"].map(table["verdict"]).fillna("not measured")
    if len(ran) < 2:
        out["datasets agree"] = "one dataset run" if ran else "none run"
    else:
        same = out[[f"verdict ({d})" for d in ran]].nunique(axis=1) == 1
        out["datasets agree"] = same.map({True: "yes", False: "no: the verdicts differ"})
    out.attrs["read"] = read
    return out


def read_metrics_pair(profile: str, seeds=(0,), *, dataset: str | None = None) -> dict:
    """FID (cross references) of the no-reference model with an image reference and with a
    zero-filled one, each the mean over the seeds that have both (as the full model's FID beside
    it is), and how many seeds that is; {} when no seed has both."""
    pairs = []
    for seed in seeds:
        pair = {}
        for ref, flag in (("image", False), ("zero", True)):
            rows = [r for r in read_metrics(run_path(profile, "scft-noref", seed, dataset),
                                                no_reference=flag)
                    if r["metric"] == "fid_cross"]
            if rows:
                pair[ref] = rows[0]["value"]
        if len(pair) == 2:
            pairs.append(pair)
    if not pairs:
        return {}
    return {"image": sum(p["image"] for p in pairs) / len(pairs),
            "zero": sum(p["zero"] for p in pairs) / len(pairs), "seeds": len(pairs)}
