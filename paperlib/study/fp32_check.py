"""What a CPU without bf16 units reproduces: the main model trained in float32, scored beside the
committed bf16 tables.

`precision="auto"` trains in float32 where bf16 would be emulated. `python -m paperlib
fp32-check --dataset D` trains the main model in float32 (`scft-triplet-fp32`, the
seeds of the committed tables), evaluates it as notebook 02 evaluates the main model, and
writes results/fp32/main_<dataset>.{csv,md}: per metric, the committed bf16 mean and seed
spread, the float32 mean and spread and seeds, and the difference in units of the larger
spread; and Fig. 1's verdict (the only claim judged on the main model) for the float32 runs.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import get_dataset
from ..training.checkpoint import recorded_machine, recorded_precision
from .claims import Intervals, reference_use
from .parallel import ensure_runs
from .registry import MAIN, SEEDS, run_path
from .reproduce import results_dir
from .tables import metrics_table, provenance, save_table, summarise

FP32_RUN = "scft-triplet-fp32"
METRICS = ("region_de_self", "region_dh_self", "region_dl_self", "region_dc_self",
           "ref_gain_de_self", "palette_follow_cross", "fid_cross", "kid_cross", "ssim_self")
# A float32 mean counts as "within the seed spread" when it is at most this many of the larger
# of the two spreads (sd over seeds) away from the bf16 mean. [I]: with two seeds an sd is a
# rough estimate, so the threshold is loose on purpose and the z column is given as it is.
WITHIN = 2.0


def committed_main(profile: str, dataset: str) -> pd.Series:
    """The main model's row of the committed table_all_runs.csv of `dataset`."""
    path = results_dir(profile, dataset) / "table_all_runs.csv"
    table = pd.read_csv(path, comment="#").set_index("run")
    if MAIN not in table.index:
        raise ValueError(f"{path} has no row for the main model {MAIN}")
    return table.loc[MAIN]


def comparison(bf16: pd.Series, fp32: pd.DataFrame, seeds) -> pd.DataFrame:
    """Per metric: the bf16 mean and sd (committed), the float32 mean, sd and per-seed values
    (`fp32`: the long metrics rows of the float32 runs), and their difference in units of the
    larger sd."""
    wide = fp32.pivot_table(index="seed", columns="metric", values="value")
    rows = []
    for m in METRICS:
        if m not in wide.columns or m not in bf16.index:
            continue
        values = wide[m].reindex(list(seeds))
        mean, sd = float(values.mean()), float(values.std())
        spread = max(float(bf16[m + "_sd"]), sd)
        diff = mean - float(bf16[m])
        z = abs(diff) / spread if spread > 0 else float("inf")
        rows.append({"metric": m, "bf16_mean": float(bf16[m]), "bf16_sd": float(bf16[m + "_sd"]),
                     "fp32_mean": mean, "fp32_sd": sd,
                     **{f"fp32_seed{s}": float(v) for s, v in values.items()},
                     "difference": diff, "difference_in_sd": z, "within_spread": z <= WITHIN})
    return pd.DataFrame(rows)


def run(profile: str = "mini", dataset: str = "openmoji", seeds=SEEDS, *,
        out: Path | None = None, train: bool = True) -> Path:
    """Train (if `train`) and evaluate the float32 main model, then write the comparison."""
    if train:
        ensure_runs(profile, [(FP32_RUN, s) for s in seeds], evaluate=True, dataset=dataset)
    df = metrics_table(profile, [FP32_RUN], seeds, dataset=dataset)
    if df.empty:
        raise FileNotFoundError(f"no metrics of {FP32_RUN} on {dataset}: train it first "
                                f"(without --no-train)")
    df = df[df["reference"] == "image"]
    precisions = {recorded_precision(run_path(profile, FP32_RUN, s, dataset)) for s in seeds}
    if precisions != {"fp32"}:
        raise ValueError(f"{FP32_RUN} on {dataset} was not trained in float32 alone: {precisions}")
    table = comparison(committed_main(profile, dataset), df, seeds)
    f1 = reference_use(Intervals(profile, seeds, dataset), summarise(df, list(METRICS)).set_index("run"),
                       FP32_RUN)
    note = (f"The main model ({MAIN}) trained in float32 against the committed bf16 tables "
            f"(results{'' if dataset == 'openmoji' else '/' + dataset}/table_all_runs.csv). "
            f"Fig. 1 on the float32 runs: the right reference saves {f1['gain']:.2f} dE2000"
            f"{f1['gain_text']}, gain {f1['gain_verdict']}; palette ratio {f1['ratio']:.3f}"
            f"{f1['ratio_text']}, palette {f1['ratio_verdict']}.")
    out = Path(out) if out else results_dir(profile, "openmoji") / "fp32"
    devices = sorted({recorded_machine(run_path(profile, FP32_RUN, s, dataset)).get("device", "-") for s in seeds})
    prov = {**provenance(df), "trained on": ", ".join(devices)}
    return save_table(table, f"main_{dataset}", out, prov, note)


# ----------------------------------------------------------------------------- command line

def add_fp32_check_arguments(sp) -> None:
    sp.add_argument("--profile", default="mini", help="whose committed tables (default mini)")
    sp.add_argument("--dataset", default="openmoji", help="openmoji or faces (default openmoji)")
    sp.add_argument("--no-train", action="store_true",
                    help="only score runs already trained and evaluated")


def fp32_check_main(args) -> None:
    print(f"wrote {run(args.profile, get_dataset(args.dataset), train=not args.no_train)}")
