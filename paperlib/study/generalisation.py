"""Generalisation (notebook 09): models scored on data they were not trained on, and the two
datasets side by side.

Every case is a registry run scored on a test set with the metrics of `evaluate`:
- across datasets: the main model of each dataset on the other dataset's test split;
- unseen style: the faces main model on the faces `test-unseen` split (big-smile, a style
  never trained on);
- sketch kind: on OpenMoji, the full method trained on the artist's line art (`scft-triplet`,
  the main model) and on XDoG sketches (`scft-triplet-xdog`), each scored on both kinds; the
  line-art model on line art is the "OpenMoji -> OpenMoji" row. The paper trains on XDoG
  [S 6.3]; users bring line art.

Scores on a run's own data come from its metrics.jsonl; the others from its
metrics_transfer.jsonl (`evaluate` writes there when the data differ), so no table of the run's
own results can pick them up.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import STUDY_DATASETS, get_profile
from ..evaluation.dynamics import reference_use_curve
from ..evaluation.evaluate import evaluate, read_metrics
from ..training.loop import is_complete
from .registry import MAIN, SEEDS, run_path
from .reproduce import results_dir
from .tables import HEADLINE_METRICS, headline_table, memory_table


@dataclass(frozen=True)
class Case:
    name: str  # the table's row label
    question: str  # which kind of generalisation the row tests
    run: str  # registry run
    trained: str  # dataset it was trained on (whose runs folder)
    tested: str  # dataset it is scored on
    split: str = "test"
    sketch: str | None = None  # OpenMoji's sketches at test time, "line" or "xdog" (None elsewhere)


CASES = (
    Case("OpenMoji -> OpenMoji", "across datasets", MAIN, "openmoji", "openmoji", sketch="line"),
    Case("OpenMoji -> faces", "across datasets", MAIN, "openmoji", "faces"),
    Case("faces -> faces", "across datasets", MAIN, "faces", "faces"),
    # the faces model has only seen XDoG sketches: OpenMoji's XDoG sketches change the dataset alone
    Case("faces -> OpenMoji (XDoG sketches)", "across datasets", MAIN, "faces", "openmoji",
         sketch="xdog"),
    Case("faces -> faces, unseen style (big-smile)", "unseen style", MAIN, "faces", "faces",
         split="test-unseen"),
    # "line art -> line art" would be the first row again (the main model is the line-art arm):
    # the sketch-kind block reads that row as its baseline, and each measurement appears once
    Case("line art -> XDoG", "sketch kind (OpenMoji)", MAIN, "openmoji", "openmoji",
         sketch="xdog"),
    Case("XDoG -> XDoG", "sketch kind (OpenMoji)", "scft-triplet-xdog", "openmoji", "openmoji",
         sketch="xdog"),
    Case("XDoG -> line art", "sketch kind (OpenMoji)", "scft-triplet-xdog", "openmoji", "openmoji",
         sketch="line"),
)


def training_jobs(cases=CASES, seeds=SEEDS) -> dict[str, list[tuple[str, int]]]:
    """The (run, seed) pairs the cases need, per dataset they are trained on."""
    jobs: dict[str, list[tuple[str, int]]] = {}
    for case in cases:
        for seed in seeds:
            pair = (case.run, int(seed))
            if pair not in jobs.setdefault(case.trained, []):
                jobs[case.trained].append(pair)
    return jobs


def case_rows(profile: str, case: Case, seed: int, progress: bool = True) -> list[dict]:
    """The case's metrics rows for the run's current snapshot, evaluated if not stored yet."""
    path = run_path(profile, case.run, seed, case.trained)
    if not is_complete(path):
        raise FileNotFoundError(f"{case.name}: run {case.run} (seed {seed}, trained on "
                                f"{case.trained}) has not finished: {path}")
    rows = read_metrics(path, split=case.split, dataset=case.tested, sketch_source=case.sketch)
    if not rows:
        rows = evaluate(path, dataset=case.tested, sketch_source=case.sketch, split=case.split,
                        progress=progress)
    return rows


def long_table(profile: str, seeds=SEEDS, cases=CASES, progress: bool = True) -> pd.DataFrame:
    """All cases' metrics rows, long (one row per case, seed and metric), with `run` set to the
    case's name so that tables.summarise and headline_table group by case."""
    frames = []
    for case in cases:
        for seed in seeds:
            for r in case_rows(profile, case, seed, progress):
                frames.append({**r, "registry_run": case.run, "run": case.name, "seed": seed,
                               "question": case.question, "trained_dataset": case.trained})
    return pd.DataFrame(frames)


def generalisation_table(df: pd.DataFrame, cases=CASES, metrics=HEADLINE_METRICS) -> pd.DataFrame:
    """One row per case: what it tests, which run at which step on which test set, and each
    metric as "mean ± sd" over the seeds (`df`: long_table)."""
    table = headline_table(df, [c.name for c in cases], metrics)
    first = df.groupby("run").first()
    meta = pd.DataFrame([{
        "question": c.question, "run": c.name, "registry run": c.run,
        "steps": int(first.loc[c.name, "step"]),
        "tested on": f"{c.tested} {c.split}" + (f", {c.sketch} sketches" if c.sketch else ""),
    } for c in cases])
    return meta.merge(table, on="run").rename(columns={"run": "case"})


# The reference-use measures of the main model over training, and the hue error, per dataset.
SIDE_METRICS = ("ref_gain_de_self", "palette_follow_cross", "region_de_self", "region_dh_self")


def curves_by_dataset(profile: str, seed: int = 0, datasets=STUDY_DATASETS,
                      progress: bool = True) -> pd.DataFrame:
    """Long table (run = dataset, step, minutes, metric, value) of each dataset's main model's
    reference-use curve on its test split (the snapshots notebook 02 measured), for
    figures.reference_use_curves."""
    frames = []
    for d in datasets:
        curve = reference_use_curve(run_path(profile, MAIN, seed, d), split="test",
                                    progress=progress)
        if curve.empty:
            raise FileNotFoundError(f"no reference-use curve for {MAIN} (seed {seed}) on {d}: run "
                                    f"notebook 02 on {d} first")
        frames.append(curve.assign(run=d, minutes=float("nan")).melt(
            id_vars=["run", "step", "minutes"], value_vars=list(SIDE_METRICS), var_name="metric"))
    return pd.concat(frames, ignore_index=True)


MEMORY_TABLE = "table_reference_or_memory.csv"


def memory_by_dataset(profile: str, seeds=SEEDS, datasets=STUDY_DATASETS) -> pd.DataFrame:
    """Each dataset's reference-or-memory table with a `dataset` column: the same comparisons,
    one block per dataset. Read from the table notebook 02 wrote; where that is missing, the
    main model's rows are measured as notebook 02 measures them."""
    frames = []
    for d in datasets:
        path = Path(results_dir(profile, d)) / MEMORY_TABLE
        if path.exists():
            df = pd.read_csv(path, comment="#")
            df = df[df["seed"].isin(seeds)]
        else:
            n = get_profile(profile).data.eval_limit
            df = memory_table(profile, [MAIN], seeds, n=n, dataset=d)
        frames.append(df.assign(dataset=d))
    return pd.concat(frames, ignore_index=True)


def memory_summary(df: pd.DataFrame, run: str = MAIN) -> pd.DataFrame:
    """Mean over seeds of `run`'s region errors per dataset and comparison, the datasets as
    columns: how far the output is from the reference's colours and from the unjittered ones."""
    sub = df[df["run"] == run]
    if sub.empty:
        raise ValueError(f"no rows of run {run!r} in the reference-or-memory tables")
    mean = sub.groupby(["compared", "dataset"])[["region_de", "region_dh"]].mean().reset_index()
    wide = mean.pivot(index="compared", columns="dataset", values=["region_de", "region_dh"])
    wide.columns = [f"{m} ({d})" for m, d in wide.columns]  # (metric, dataset) -> one name
    return wide.reset_index()
