"""`python -m paperlib long-run-summary FOLDER`: a markdown table and a plot of what
`python -m paperlib long-run` wrote into FOLDER (curves-seed*.jsonl, stats-seed*.jsonl, meta.json).

Writes long_run_summary.md and long_run_summary.png into --out-dir (default FOLDER). The curves
are evaluate.reference_use at every snapshot: region dE00 with the image's own augmented
reference ('self'), its lightness / chroma / hue split, ref_gain_de_self, palette_follow_cross
and the attention hit rate, on the test split (and dashed, on the first training images). For
comparison, the repository's own equal-recipe runs (REPO_RUNS: 1,000 and 3,000 steps) are read
from their metrics.jsonl under --runs-root (default runs/<profile>) when they are there; a
log-linear fit through the final values of the schedules says how many steps the target needs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.evaluate import read_metrics
from .reproduce import runs_dir

TARGET = 12.0  # region dE00 (self) on the test split that the reproduction aims at
METRICS = [("region_de_self", "region dE00 (self)"), ("region_dl_self", "|dL*|"),
           ("region_dc_self", "|dC*|"), ("region_dh_self", "|dH*|"),
           ("ref_gain_de_self", "gain dE00"), ("palette_follow_cross", "palette ratio"),
           ("attention_hit_rate", "hit rate")]
# the repository's CPU runs of the same recipe, compared with when their folders are present
REPO_RUNS = [("scft-triplet", 0), ("scft-triplet", 1), ("scft-triplet-3x", 0), ("scft-triplet-3x", 1)]
SUMMARY_MD, SUMMARY_PNG = "long_run_summary.md", "long_run_summary.png"


def read_jsonl(path: Path) -> list[dict]:
    """The JSON lines of a file; [] if it is missing. A bad line is a ValueError naming it."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise ValueError(f"{path}: line {number} is not valid JSON ({e.msg})") from None
    return rows


def _seed_of(path: Path) -> int:
    return int(path.stem.split("seed")[-1])


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(curves, training stats, meta.json) of a long-run output folder."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no long-run output folder at {folder}")
    curves, stats = [], []
    for p in sorted(folder.glob("curves-seed*.jsonl")):
        curves += [{**r, "seed": r.get("seed", _seed_of(p))} for r in read_jsonl(p)]
    for p in sorted(folder.glob("stats-seed*.jsonl")):
        stats += [{**r, "seed": _seed_of(p)} for r in read_jsonl(p)]
    if not curves and not stats:
        raise FileNotFoundError(f"{folder} holds no curves-seed*.jsonl or stats-seed*.jsonl: "
                                f"is it the --out folder of python -m paperlib long-run?")
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
    c = pd.DataFrame(curves)
    if not c.empty:
        # a sort on several keys is np.lexsort, which is stable: keep="last" is the later line
        c = (c.sort_values(["seed", "split", "step"])
             .drop_duplicates(["seed", "split", "n", "step"], keep="last").reset_index(drop=True))
    return c, pd.DataFrame(stats), meta


def last_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """Each seed's row at its highest step, ordered by (step, seed). Seeds that end at the same
    step are tied on "step"; the seed key orders them the same on every CPU (numpy's default
    sort on one key returns ties in an order that depends on the SIMD kernel it dispatches to)."""
    return df.sort_values(["step", "seed"]).groupby("seed").tail(1)


def profile_of(meta: dict) -> str:
    for entry in meta.get("runs", {}).values():
        return entry.get("config", {}).get("profile", "mini")
    return "mini"


def repo_runs(runs_root: Path) -> pd.DataFrame:
    """Final region dE00 (self, test split) of the repository's 1x and 3x runs, where present."""
    rows = []
    for name, seed in REPO_RUNS:
        found = [r for r in read_metrics(runs_root / f"{name}-seed{seed}")
                 if r["metric"] == "region_de_self"]
        if found:
            rows.append({"run": name, "seed": seed, "step": found[-1]["step"],
                         "region_de_self": found[-1]["value"]})
    return pd.DataFrame(rows)


def fmt(x, d=2) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def markdown(c: pd.DataFrame, s: pd.DataFrame, meta: dict, ref: pd.DataFrame) -> str:
    runs = meta.get("runs", {})
    on_gpu = any(e.get("runner", {}).get("gpu") for e in runs.values())
    out = [f"# Long `{profile_of(meta)}` run{' on one GPU' if on_gpu else ''}: does region "
           f"dE00 (self) reach {TARGET:g}?", ""]
    if runs:
        out += ["| seed | N (planned) | last snapshot | finished | ms/step (calibrated) | "
                "ms/step (stats.jsonl, median) | train s | GPU | torch |",
                "|---|---|---|---|---|---|---|---|---|"]
        for seed, e in sorted(runs.items()):
            r = e.get("runner", {})
            batch = e.get("config", {}).get("train", {}).get("batch_size", 16)
            g = s[s["seed"] == int(seed)] if not s.empty else s
            actual = float((batch / g["images_per_sec"]).median() * 1e3) if len(g) else float("nan")
            snaps = e.get("snapshots") or [0]
            out.append(f"| {seed} | {r.get('max_steps', '?')} | {max(snaps)} | "
                       f"{'yes' if e.get('final_snapshot') else 'no (stopped by the time guard)'} | "
                       f"{fmt(r.get('sec_per_step', float('nan')) * 1e3, 1)} | {fmt(actual, 1)} | "
                       f"{fmt(r.get('train_seconds'), 0)} | {r.get('gpu')} | {r.get('torch')} |")
        out.append("")
    if c.empty:
        return "\n".join(out + ["(no curve rows)"]) + "\n"
    test = c[c["split"] == "test"]
    n_test = int(test["n"].max()) if not test.empty else 0
    out += [f"## Reference use at every snapshot, test split (n = {n_test}, eval seed 0)", "",
            "| seed | step | " + " | ".join(lbl for _, lbl in METRICS) + " |",
            "|---" * (len(METRICS) + 2) + "|"]
    for _, r in test.iterrows():
        out.append(f"| {r['seed']} | {r['step']} | " + " | ".join(
            fmt(r[m], 3 if m in ("palette_follow_cross", "attention_hit_rate") else 2)
            for m, _ in METRICS) + " |")
    out.append("")
    last = last_per_seed(test)
    out += ["## Last snapshot", "", "| seed | step | region dE00 | reaches 12? | gain | "
            "palette ratio | hit rate |", "|---|---|---|---|---|---|---|"]
    for _, r in last.iterrows():
        out.append(f"| {r['seed']} | {r['step']} | {fmt(r['region_de_self'])} | "
                   f"{'yes' if r['region_de_self'] <= TARGET else 'no'} | "
                   f"{fmt(r['ref_gain_de_self'])} | {fmt(r['palette_follow_cross'], 3)} | "
                   f"{fmt(r['attention_hit_rate'], 3)} |")
    out.append("")
    # How the final value moves with the length of the schedule: the repository's runs and this one
    pts = [(int(g["step"].iloc[0]), float(g["region_de_self"].mean()), f"{name} (repo)")
           for name, g in (ref.groupby("run") if not ref.empty else [])]
    if last["step"].nunique() == 1:
        pts.append((int(last["step"].iloc[0]), float(last["region_de_self"].mean()), "this run"))
    else:
        for _, r in last.iterrows():
            pts.append((int(r["step"]), float(r["region_de_self"]), f"this run, seed {r['seed']}"))
    pts.sort()  # tie-safe: a list of whole tuples (steps, value, label)
    out += ["## Final region dE00 against the schedule's length (mean over seeds)", "",
            "| schedule | steps | region dE00 |", "|---|---|---|"]
    out += [f"| {lbl} | {st} | {fmt(v)} |" for st, v, lbl in pts]
    if len(pts) >= 3:
        x = np.log10([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        b, a = np.polyfit(x, y, 1)
        need = 10 ** ((TARGET - a) / b) if b < 0 else float("inf")
        b2, a2 = np.polyfit(x[-2:], y[-2:], 1)
        need2 = 10 ** ((TARGET - a2) / b2) if b2 < 0 else float("inf")
        out += ["", f"Log-linear fit of the final values, dE00 = {a:.2f} {b:+.2f} log10(steps): "
                    f"{fmt(-b)} dE00 less per tenfold steps; 12 would need ~{need:,.0f} steps. "
                    f"From the last two schedules only: {fmt(-b2)} per tenfold, ~{need2:,.0f} steps. "
                    f"(Each value is the end of a full schedule, LR decayed to 0; within one run "
                    f"the curve also flattens because the LR decays over its second half.)"]
    tr = c[c["split"] == "train"]
    if not tr.empty:
        lt = last_per_seed(tr)
        out += ["", f"Training images (first {int(tr['n'].max())}, notebook 02's setting), last "
                    f"snapshot: region dE00 " + ", ".join(
                        f"seed {r['seed']} {fmt(r['region_de_self'])} (step {r['step']})"
                        for _, r in lt.iterrows())
                + " — the train/test gap says how much of the error is generalisation."]
    if not s.empty:
        s2 = last_per_seed(s)
        out += ["", "Last logged training losses: " + ", ".join(
            f"seed {int(r['seed'])} step {int(r['step'])}: g_rec {fmt(r['g_rec'], 4)}, g_tr {fmt(r['g_tr'], 3)}"
            for _, r in s2.iterrows())]
    return "\n".join(out) + "\n"


def plot(c: pd.DataFrame, s: pd.DataFrame, ref: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt  # matplotlib only when a figure is drawn

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    ax = axes.ravel()
    colors = {0: "tab:blue", 1: "tab:orange", 2: "tab:green", 3: "tab:red"}
    for (seed, split), g in (c.groupby(["seed", "split"]) if not c.empty else []):
        ls, lab = ("-", f"seed {seed}, test (n={int(g['n'].max())})") if split == "test" else \
            ("--", f"seed {seed}, train (n={int(g['n'].max())})")
        col = colors.get(seed, None)
        kw = dict(color=col, ls=ls, marker="o", ms=3)
        ax[0].plot(g["step"], g["region_de_self"], label=lab, **kw)
        ax[1].plot(g["step"], g["ref_gain_de_self"], label=lab, **kw)
        ax[2].plot(g["step"], g["palette_follow_cross"], label=lab, **kw)
        if split == "test":
            for m, mk in (("region_dl_self", "s"), ("region_dc_self", "^"), ("region_dh_self", "v")):
                ax[3].plot(g["step"], g[m], color=col, marker=mk, ms=3,
                           ls={"region_dl_self": "-", "region_dc_self": "--",
                               "region_dh_self": ":"}[m], label=f"{m[7:9]} seed {seed}")
        ax[4].plot(g["step"], g["attention_hit_rate"], label=lab, **kw)
    if not ref.empty:
        ax[0].scatter(ref["step"], ref["region_de_self"], marker="x", color="k", zorder=5,
                      label="repo: 1k / 3k-step runs, test")
    ax[0].axhline(TARGET, color="red", lw=1, ls="--", label=f"target {TARGET:g}")
    ax[2].axhline(1.0, color="grey", lw=0.8, ls=":")
    titles = ["region dE00, own reference (lower is better)", "ref_gain_de_self (dE00 saved)",
              "palette_follow_cross (below 1: follows the reference)",
              "area-weighted |dL*| / |dC*| / |dH*| (test)", "attention hit rate",
              "training loss (g_rec, 200-step mean) and lr_g"]
    for a, t in zip(ax, titles):
        a.set_title(t, fontsize=10)
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    for a in ax[:5]:
        if a.lines:
            a.legend(fontsize=7)
    if not s.empty:
        for seed, g in s.groupby("seed"):
            # a resumed run can log a step twice: stable keeps the file's order for the pair
            g = g.sort_values("step", kind="stable")
            gap = g["step"].diff().median()
            k = max(1, int(round(200 / gap))) if gap == gap and gap > 0 else 1
            ax[5].plot(g["step"], g["g_rec"].rolling(k, min_periods=1).mean(),
                       color=colors.get(seed), label=f"g_rec seed {seed}")
        a2 = ax[5].twinx()
        g = s[s["seed"] == s["seed"].min()].sort_values("step", kind="stable")
        a2.plot(g["step"], g["lr_g"], color="grey", lw=0.8, ls=":", label="lr_g")
        a2.set_ylabel("lr_g", fontsize=8)
        ax[5].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(folder, out_dir=None, runs_root=None) -> tuple[str, Path, Path]:
    """Write the summary of a long-run folder; returns (markdown, .md path, .png path)."""
    folder = Path(folder)
    c, s, meta = load(folder)
    out_dir = Path(out_dir) if out_dir else folder
    ref = repo_runs(Path(runs_root) if runs_root else runs_dir(profile_of(meta)))
    text = markdown(c, s, meta, ref)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_MD).write_text(text)
    plot(c, s, ref, out_dir / SUMMARY_PNG)
    return text, out_dir / SUMMARY_MD, out_dir / SUMMARY_PNG


# ----------------------------------------------------------------------------- command line

def add_summary_arguments(sp) -> None:
    sp.add_argument("folder", help="the --out folder of long-run")
    sp.add_argument("--out-dir", default=None, help="where long_run_summary.{md,png} go "
                    "(default the folder itself)")
    sp.add_argument("--runs-root", default=None, help="where the repository's runs of the "
                    "recipe are, for comparison (default runs/<profile>)")


def summary_main(args) -> None:
    text, md, png = summarise(args.folder, args.out_dir, args.runs_root)
    print(text)
    print(f"wrote {md} and {png}")
