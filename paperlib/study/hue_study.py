"""`python -m paperlib hue-study`: when does hue follow the reference, lever by lever?

The main model follows its reference's lightness and chroma but has learnt one chroma axis
(yellow-blue). The study trains the registry's hue arms (`registry.HUE_ARMS`: the main model's
recipe and steps, 256 training images held out as split "val", one lever each) on each dataset,
all arms and datasets side by side in one `paperlib.training.parallel` pool, and measures every
snapshot on the validation split, never the test split: the reference-use metrics (region dE00
and its dL*/dC*/dH* split, ref_gain_de_self, palette_follow_cross) and the hue probe
(`evaluate.hue_transfer`: hues turned by 0/90/180/270 degrees, the 2x2 map from the turned
ground truth's a*b* to the output's, ideally the identity).

Layout under --work: <dataset>/<arm>/seed<S>/ (run folder: config.json, stats.jsonl, snapshots,
the measurement cache reference_use.jsonl). `summarise` reads only the caches and configs, so a
study stopped part-way can still be summarised. It writes hue_study.csv (one row per dataset,
arm, seed and snapshot), hue_study.md (per arm: the last snapshot, the first step with dH* below
DH_LEVEL and with both diagonal entries of the map above MAP_LEVEL) and hue_study.png.

On two CPU cores one arm of the main model's steps takes most of an hour; a GPU runs the whole
screen side by side (results/gpu/hue-study/). `--arms` takes any registry runs: the arms' hue
screen (`registry.ARM_HUE_ARMS`, the ablation arms' 1,000 steps) runs on two cores
(results/hue-arms/).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import CHOICES, check_config, override
from ..data.datasets import build_dataset
from ..evaluation.evaluate import HUE_PROBE_ANGLES, map_keys
from ..training.loop import resolve_device
from ..training.parallel import run_in_workers
from .long_run import log, measure_snapshots, train_seed
from .registry import HUE_ARMS, RUNS, run_config
from .reproduce import runs_dir

# [I] dH* below this counts as following hue, but only where dC* is below it too: dH* scales
# with chroma, so a washed-out output (an untrained one, say) has a small dH* without any hue.
DH_LEVEL = 10.0
MAP_LEVEL = 0.5  # [I] a diagonal entry of the chroma map above this carries that axis over
CSV, MD, PNG = "hue_study.csv", "hue_study.md", "hue_study.png"
MAP_KEYS = ("transfer_aa", "transfer_ab", "transfer_ba", "transfer_bb")
# region dE00 over regions under / from evaluate.SMALL_REGION_PX (columns of the arm table)
SIZE_KEYS = ("region_de_small", "region_de_large")
# the diagonal entries of the map at each probe angle (evaluate.hue_transfer, where measured):
# the arm table gives the weakest of them, the one an unusual colour washes out
ANGLE_DIAGONAL = tuple(k for a in HUE_PROBE_ANGLES for k in map_keys(f"_{a:.0f}")
                       if k.startswith(("transfer_aa", "transfer_bb")))


@dataclass(frozen=True)
class HueStudy:
    """What the command trains and measures (its command-line options)."""
    work: str
    arms: tuple = ()  # () = registry.HUE_ARMS
    datasets: tuple = ("openmoji", "faces")
    seeds: tuple = (0,)
    profile: str = "mini"
    steps: int = 0  # 0 = the arm's own max_steps (the main model's)
    snapshots: int = 6
    val_n: int = 256  # validation images per snapshot (0: the whole held-out split)
    device: str = "auto"
    augment_on_device: bool = False
    workers: int = 0  # 0 = pool_size's choice


def pool_size(plan: HueStudy, jobs: int) -> int:
    """Processes of the pool: plan.workers, or (0) every job at once on a GPU, which the runs
    share, and one per core on a CPU, where more trainings than cores only slow each other."""
    if plan.workers:
        return plan.workers
    if resolve_device(plan.device).type == "cuda":
        return jobs
    return max(1, os.cpu_count() or 1)


def arms_of(plan: HueStudy) -> tuple:
    return tuple(plan.arms) or tuple(HUE_ARMS)


def check(plan: HueStudy) -> HueStudy:
    """A ValueError naming the option for values the study cannot use; the plan otherwise."""
    for arm in arms_of(plan):
        if arm not in RUNS:
            raise ValueError(f"--arms {arm}: not a run of the experiment registry")
    for ds in plan.datasets:
        if ds not in CHOICES["data.dataset"]:
            raise ValueError(f"--datasets {ds}: not one of {', '.join(CHOICES['data.dataset'])}")
    if not plan.seeds or len(set(plan.seeds)) != len(plan.seeds):
        raise ValueError(f"--seeds {' '.join(map(str, plan.seeds))}: give one or more distinct seeds")
    for option, value in (("--steps", plan.steps), ("--val-n", plan.val_n),
                          ("--workers", plan.workers)):
        if value < 0:
            raise ValueError(f"{option} {value}: must be 0 or more")
    if plan.snapshots < 1:
        raise ValueError(f"--snapshots {plan.snapshots}: must be at least 1")
    return plan


def run_folder(work, dataset: str, arm: str, seed: int) -> Path:
    return Path(work) / dataset / arm / f"seed{seed}"


def arm_config(plan: HueStudy, dataset: str, arm: str, seed: int):
    """The registry arm on `dataset`, its schedule stretched to plan.steps (when given) with
    plan.snapshots snapshots, on plan.device."""
    c = run_config(plan.profile, arm, seed, dataset)
    steps = plan.steps or c.train.max_steps
    every = max(1, steps // plan.snapshots)
    c = override(c, {"train.device": plan.device, "train.max_steps": steps,
                     "train.snapshot_every": every, "train.checkpoint_every": every,
                     "train.sample_every": steps})
    if c.loss.lambda_perc == 0 and c.loss.lambda_style == 0:
        c = override(c, {"loss.random_perceptual_weights": True})  # never called: no weight file
    return check_config(c)


def study_job(task: str, *args):
    """One job of the pool: "train" or "measure" one run (study.long_run's functions)."""
    return {"train": train_seed, "measure": measure_snapshots}[task](*args)


def run(plan: HueStudy) -> Path:
    """Train and measure every (dataset, arm, seed) side by side; then write the summary into
    --work. Rerunning resumes the runs and measures only new snapshots."""
    check(plan)
    work = Path(plan.work)
    work.mkdir(parents=True, exist_ok=True)
    log_file = work / "log.txt"
    runs = [(ds, arm, s) for ds in plan.datasets for arm in arms_of(plan) for s in plan.seeds]
    configs = {r: arm_config(plan, *r) for r in runs}
    val = {ds: plan.val_n or len(build_dataset(configs[next(r for r in runs if r[0] == ds)].data, "val"))
           for ds in plan.datasets}
    t0 = time.time()
    log(log_file, "start", f"{len(runs)} runs ({', '.join(plan.datasets)} x {', '.join(arms_of(plan))}"
        f" x seeds {list(plan.seeds)}), {configs[runs[0]].train.max_steps} steps each, "
        f"measured on {val} validation images")
    jobs = ([("train", configs[r], str(run_folder(work, *r)), plan.augment_on_device, str(log_file))
             for r in runs]
            # measurement jobs after the trainings, as in long_run: none waits on a training
            + [("measure", str(run_folder(work, *r)), [("val", val[r[0]])], str(log_file), True,
                "/".join(map(str, r))) for r in runs])
    run_in_workers(study_job, jobs, pool_size(plan, len(jobs)),
                   name=lambda job: f"{job[0]} {Path(job[2] if job[0] == 'train' else job[1]).relative_to(work)}")
    log(log_file, "end", f"all {len(runs)} runs trained and measured in {time.time() - t0:.0f} s")
    summarise(work)
    return work


# --------------------------------------------------------------------------- the summary

def curve_rows(work) -> pd.DataFrame:
    """Every measured snapshot under `work`: dataset, arm, seed, step, the lever's
    description and the metrics (reference_use.jsonl rows with the hue probe)."""
    rows = []
    for cache in sorted(Path(work).glob("*/*/seed*/reference_use.jsonl")):
        run_dir = cache.parent
        dataset, arm = run_dir.parent.parent.name, run_dir.parent.name
        seed = int(run_dir.name.removeprefix("seed"))
        train = json.loads((run_dir / "config.json").read_text())["train"]
        for line in cache.read_text().splitlines():
            r = json.loads(line) if line.strip() else None
            if r and r.get("split") == "val" and "transfer_aa" in r:
                # images seen: arms with another batch size compare at equal data, not steps
                rows.append({"dataset": dataset, "arm": arm, "seed": seed,
                             "max_steps": train["max_steps"], "batch_size": train["batch_size"],
                             "lever": RUNS[arm][0] if arm in RUNS else "", **r,
                             "images": r["step"] * train["batch_size"]})
    if not rows:
        raise FileNotFoundError(f"no measured snapshots under {work} (looked for "
                                f"<dataset>/<arm>/seed<S>/reference_use.jsonl with the hue probe)")
    df = pd.DataFrame(rows).drop_duplicates(["dataset", "arm", "seed", "step"], keep="last")
    return df.sort_values(["dataset", "arm", "seed", "step"]).reset_index(drop=True)


def first_step(curve: pd.DataFrame, passes) -> float:
    """The first step of a (step-sorted) curve whose row passes; NaN if none does."""
    hit = curve[curve.apply(passes, axis=1)]
    return float(hit["step"].iloc[0]) if len(hit) else math.nan


def arm_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, arm and seed: the last snapshot's numbers and the first steps at which
    dH* and dC* < DH_LEVEL, and at which both diagonal map entries > MAP_LEVEL."""
    out = []
    for (dataset, arm, seed), curve in df.groupby(["dataset", "arm", "seed"], sort=False):
        curve = curve.sort_values("step")  # tie-safe: curve_rows dropped repeated steps
        last = curve.iloc[-1]
        out.append({"dataset": dataset, "arm": arm, "seed": seed, "steps": int(last["step"]),
                    "of": int(last["max_steps"]), "batch": int(last["batch_size"]),
                    "region_de": last["region_de_self"], "region_dc": last["region_dc_self"],
                    "region_dh": last["region_dh_self"],
                    "ref_gain_de": last["ref_gain_de_self"],
                    "palette_follow": last["palette_follow_cross"],
                    **{k.replace("transfer_", "map_"): last[k] for k in MAP_KEYS},
                    "region_dh_turned": last["region_dh_rot"],
                    "first_step_dh_below": first_step(curve, lambda r: max(
                        r["region_dh_self"], r["region_dc_self"]) < DH_LEVEL),
                    "first_step_both_axes": first_step(
                        curve, lambda r: min(r["transfer_aa"], r["transfer_bb"]) > MAP_LEVEL),
                    # the region error by region size, where measured (studies since the split)
                    **{k: last[f"{k}_self"] for k in SIZE_KEYS if f"{k}_self" in curve},
                    # NaN for a run measured before the per-angle maps, beside one after
                    **({"map_weakest_angle": pd.Series([last[k] for k in ANGLE_DIAGONAL]).min()}
                       if all(k in curve for k in ANGLE_DIAGONAL) else {})})
    return pd.DataFrame(out)


def best_arms(table: pd.DataFrame, k: int = 2, base: str = "hue-base") -> list[str]:
    """The k levers (arms other than `base`) that bring both chroma axes in soonest: on each
    dataset, ranked by the first step at which both diagonal map entries pass MAP_LEVEL (never
    counts as last), then by the weaker diagonal entry at the last snapshot, then by name; the
    union over the datasets of each one's k best, in rank order of the first dataset."""
    chosen = []
    for _, t in table[table["arm"] != base].groupby("dataset", sort=True):
        per_arm = t.groupby("arm").agg(first=("first_step_both_axes", "mean"),
                                       weaker=("map_aa", "mean"), weaker_b=("map_bb", "mean"))
        per_arm["weaker"] = per_arm[["weaker", "weaker_b"]].min(axis=1)
        # "arm" is the index: arms that never pass tie on "first", and the name settles them
        ranked = per_arm.sort_values(["first", "weaker", "arm"], ascending=[True, False, True],
                                     na_position="last").index[:k]
        chosen += [a for a in ranked if a not in chosen]
    return chosen


def summarise(work, out_dir=None) -> tuple[Path, Path, Path]:
    """Write hue_study.{csv,md,png} for the study under `work` into out_dir (default work)."""
    import matplotlib  # matplotlib only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    out_dir = Path(out_dir or work)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = curve_rows(work)
    df.to_csv(out_dir / CSV, index=False)
    table = arm_table(df)
    n = sorted(df["n"].unique().tolist())
    lines = [f"# Hue study: validation split ({n} held-out training images per snapshot; "
             f"never the test split)", "",
             f"dH* is the area-weighted hue error of the augmented-self output; map_xy is the "
             f"fitted effect of the turned ground truth's y on the output's x (a* or b*), over "
             f"pixels with chroma above 10, hues turned by 0/90/180/270 degrees: the identity "
             f"when hue follows the reference. First steps: dH* < {DH_LEVEL:g} with dC* < "
             f"{DH_LEVEL:g} too (a washed-out output has a small dH* without any hue); both "
             f"map_aa and map_bb > {MAP_LEVEL:g} (blank: not reached).", ""]
    shown = table.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}")
    lines += [shown.to_markdown(index=False), ""]
    (out_dir / MD).write_text("\n".join(lines))

    sized = [f"{k}_self" for k in SIZE_KEYS if f"{k}_self" in df]
    long = df.melt(id_vars=["dataset", "arm", "seed", "images"],
                   value_vars=["region_dh_self", "transfer_aa", "transfer_bb",
                               *(["region_de_self", *sized] if sized else [])], var_name="metric")
    grid = sns.relplot(data=long, x="images", y="value", hue="arm", style="seed", row="metric",
                       col="dataset", kind="line", marker="o", height=2.6, aspect=1.5,
                       facet_kws={"sharey": "row"})
    for (metric, _), ax in grid.axes_dict.items():
        if metric in ("region_dh_self", *MAP_KEYS):
            ax.axhline(DH_LEVEL if metric == "region_dh_self" else MAP_LEVEL, color="grey",
                       lw=0.8, ls=":")
    grid.figure.suptitle("hue study, validation split: dH* (lower is better) and the chroma "
                         "map's diagonal (1 = hue follows)", y=1.02)
    grid.figure.savefig(out_dir / PNG, dpi=90, bbox_inches="tight")
    plt.close(grid.figure)
    return out_dir / CSV, out_dir / MD, out_dir / PNG


# ----------------------------------------------------------------------------- command line

def add_hue_study_arguments(sp) -> None:
    sp.description = ("Train the hue arms of the experiment registry (or --arms) on each "
                      "--datasets side by side and measure every snapshot on split 'val' "
                      "(reference use and the hue probe's 2x2 chroma map); see "
                      "paperlib/study/hue_study.py.")
    sp.add_argument("--work", default=None, help="folder of the study (default "
                    "runs/<profile>/hue-study)")
    sp.add_argument("--profile", default="mini", help="the recipe the arms change (default mini)")
    sp.add_argument("--arms", nargs="+", default=[], help="registry runs (default the hue arms)")
    sp.add_argument("--datasets", nargs="+", default=["openmoji", "faces"],
                    help="datasets each arm trains on (default openmoji faces)")
    sp.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                    help="seeds of each arm (default 0)")
    sp.add_argument("--steps", type=int, default=0, help="steps of each run (default: the arm's own)")
    sp.add_argument("--snapshots", type=int, default=6, help="snapshots over each run (default 6)")
    sp.add_argument("--val-n", type=int, default=256,
                    help="validation images each snapshot is measured on (0: all held out)")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sp.add_argument("--augment-on-device", action="store_true",
                    help="build the augmented-self pairs on the training device (GPUs)")
    sp.add_argument("--workers", type=int, default=0, help="processes at a time (default: "
                    "every job at once on a GPU, one per core on a CPU)")


def hue_study_main(args) -> None:
    work = args.work or str(runs_dir(args.profile) / "hue-study")
    run(HueStudy(work=work, arms=tuple(args.arms), datasets=tuple(args.datasets),
                 seeds=tuple(args.seeds), profile=args.profile, steps=args.steps,
                 snapshots=args.snapshots, val_n=args.val_n, device=args.device,
                 augment_on_device=args.augment_on_device, workers=args.workers))
    print(f"wrote {work}")


def add_summary_arguments(sp) -> None:
    sp.add_argument("work", help="the --work folder of hue-study")
    sp.add_argument("--out-dir", default=None, help="where they go (default the folder itself)")
    sp.add_argument("--best", type=int, default=0, metavar="K", help="print only the K levers "
                    "that bring both chroma axes in soonest (hue_study.best_arms), one line")


def summary_main(args) -> None:
    if args.best:
        print(" ".join(best_arms(arm_table(curve_rows(args.work)), args.best)))
    else:
        for path in summarise(args.work, args.out_dir):
            print(f"wrote {path}")
