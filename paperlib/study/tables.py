"""Tables and analyses over the runs of the registry (`paperlib.study.registry`): their metrics
in long and summarised form, saved with provenance; the example inputs and the runs' outputs
that figures and checks are made from; the final-snapshot studies (split gap, colour memory,
region size, hue per probe angle, bf16 precision) that go beyond metrics.jsonl; and the runs'
reference-use curves over training (evaluation.dynamics measures them) side by side.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from ..config import Config, override
from ..core import augment
from ..core.model import total_stride
from ..data.datasets import build_dataset
from ..evaluation.dynamics import CURVE_METRICS, reference_use_curve, training_seconds
from ..evaluation.evaluate import (HUE_PROBE_ANGLES, decimals, hue_transfer, map_keys,
                                   read_metrics, reference_or_memory, reference_use,
                                   region_size_bins)
from ..paths import append_atomic
from ..training.checkpoint import recorded_precision
from ..training.loop import is_complete
from ..training.precision import cpu_name
from ..training.snapshot import FINAL, load_generator, load_pt
from ..training.stats import read_stats
from .registry import ARMS, RUNS, precision_runs, run_path


def metrics_table(profile: str, names=None, seeds=(0,), *, dataset: str | None = None,
                  **filters) -> pd.DataFrame:
    """All metrics rows of the given runs (long format: one row per run, seed and metric).
    `dataset` None means $PAPERLIB_DATASET, else openmoji, here and in the tables below."""
    frames = []
    for name in names or ARMS:
        for seed in seeds:
            path = run_path(profile, name, seed, dataset)
            rows = read_metrics(path, **filters)
            # rows written before evaluate recorded it: the precision the run trained in
            trained_in = {"precision": recorded_precision(path) or "-"}
            for r in rows:
                frames.append({"run": name, "seed": seed, **trained_in, **r})
    return pd.DataFrame(frames)


def summarise(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean and spread over seeds: one row per run, `metric` and `metric_sd` columns."""
    if df.empty:
        return df
    wide = df.pivot_table(index=["run", "seed"], columns="metric", values="value").reset_index()
    keep = [m for m in metrics if m in wide.columns]
    agg = wide.groupby("run")[keep].agg(["mean", "std", "count"])
    out = pd.DataFrame(index=agg.index)
    for m in keep:
        out[m] = agg[(m, "mean")]
        out[m + "_sd"] = agg[(m, "std")]
    out["seeds"] = agg[(keep[0], "count")] if keep else 0
    return out.reset_index()


def example_batch(config: Config, n: int = 4, seed: int = 0, split: str = "test",
                  start: int = 0) -> dict:
    """n test images with their sketches, augmented-self references and correspondences, and a
    cross reference (the next image's colour image) for each."""
    ds = build_dataset(config.data, split)
    stride = max(1, len(ds) // max(n, 1))
    idx = [(start + i * stride) % len(ds) for i in range(n)]
    items = [ds[i] for i in idx]
    image = torch.stack([it["image"] for it in items])  # (n,3,H,W)
    aug = augment.augmented_self(image, augment.scoring_config(config.data),
                                 torch.Generator().manual_seed(seed),
                                 stride=total_stride(config.model))
    return {"image": image, "sketch": torch.stack([it["sketch"] for it in items]),
            "cross_reference": torch.roll(image, 1, 0), "keys": [it["key"] for it in items], **aug}


def outputs(profile: str, names, batch: dict, seed: int = 0, reference: str = "reference",
            return_attention: bool = False, *, dataset: str | None = None) -> dict:
    """Each named run's output on `batch`; reference is a batch key or "zero"."""
    result = {}
    for name in names:
        G, _, _ = load_generator(run_path(profile, name, seed, dataset))
        ref = None if reference == "zero" else batch[reference]
        with torch.no_grad():
            out, aux = G(batch["sketch"], ref, return_attention=return_attention)
        result[name] = (out, aux) if return_attention else out
    return result


def provenance(df: pd.DataFrame) -> dict:
    """What a table's numbers depend on, read from its metrics rows."""
    def vals(col):
        return ", ".join(str(v) for v in sorted(set(df[col]))) if col in df and len(df) else "-"
    return {"profile": vals("profile"), "dataset": vals("dataset"), "split": vals("split"),
            "resolution": vals("resolution"), "steps": vals("step"), "seeds": vals("seed"),
            "eval seed": vals("eval_seed"), "samples (n)": vals("n"), "precision": vals("precision"),
            "perceptual network": vals("perceptual_network"), "FID network": vals("fid_network"),
            "git commit": vals("git_commit")}


def save_table(table: pd.DataFrame, name: str, results, prov: dict, note: str = "") -> Path:
    """Write results/<name>.csv (with # provenance lines) and results/<name>.md."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {k}: {v}\n" for k, v in prov.items())
    with open(results / f"{name}.csv", "w") as f:
        f.write(header)
        table.to_csv(f, index=False, float_format="%.4f")
    md = [f"### {name}", ""]
    if note:
        md += [note, ""]
    md += [table.to_markdown(index=False, floatfmt=".4f"), "", "Provenance:", ""]
    md += [f"- {k}: {v}" for k, v in prov.items()]
    (results / f"{name}.md").write_text("\n".join(md) + "\n")
    return results / f"{name}.md"


EMULATED_IMAGES = 4


def precision_report(profile: str, main_run: str, batch: dict, seed: int = 0, *,
                     dataset: str | None = None) -> pd.DataFrame:
    """Does bf16 cost quality? (1) the main model's outputs in bf16 vs float32 on `batch`;
    (2) the short float32 and bf16 runs' losses over their last quarter of log lines.

    On a CPU without bf16 units, (1) runs on the batch's first EMULATED_IMAGES images only
    (emulated bf16 takes seconds for those), and (2) is a row saying why it was not trained."""
    G, _, _ = load_generator(run_path(profile, main_run, seed, dataset))
    shorts = precision_runs()
    if not shorts:
        batch = {k: v[:EMULATED_IMAGES] for k, v in batch.items() if k in ("sketch", "reference")}
    with torch.no_grad():
        ref32, _ = G(batch["sketch"], batch["reference"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref16, _ = G(batch["sketch"], batch["reference"])
    diff = (ref16.float() - ref32).abs()
    rows = [("outputs: mean |bf16 - fp32| (of range 2)", float(diff.mean())),
            ("outputs: max |bf16 - fp32|", float(diff.max())),
            ("outputs: PSNR bf16 vs fp32 (dB)",
             float(10 * torch.log10(4 / (diff ** 2).mean().clamp(min=1e-12))))]
    if not shorts:
        rows.append((f"outputs: images compared (no bf16 units on {cpu_name()}; bf16 emulated)",
                     float(len(batch["sketch"]))))
    stats = {p: read_stats(run_path(profile, name, seed, dataset)) for p, name in shorts.items()}
    for term in ("g_rec", "g_tr", "g_perc", "g_style", "g_adv", "d_total"):
        for p, lines in stats.items():
            tail = lines[-max(1, len(lines) // 4):]
            if tail:
                rows.append((f"short run {p}: {term} (last quarter mean)",
                             sum(x[term] for x in tail) / len(tail)))
    return pd.DataFrame(rows, columns=["quantity", "value"])


def _final_generators(profile: str, names, seeds, dataset: str | None):
    """(name, seed, generator, config, step) of each run's final snapshot, one at a time."""
    for name in names:
        for seed in seeds:
            G, cfg, step = load_generator(run_path(profile, name, seed, dataset))
            yield name, seed, G, cfg, step


SPLIT_GAP_METRICS = ("region_de_self", "region_dl_self", "region_dc_self", "region_dh_self",
                     "ref_gain_de_self", "palette_follow_cross")


def split_gap_table(profile: str, names, seeds=(0,), n: int = 0, *,
                    dataset: str | None = None) -> pd.DataFrame:
    """evaluate.reference_use of each run's final snapshot on training images and on test
    images, the first n of each split (n = 0: as many as the test split holds, so both rows
    average the same number of images). One row per run, seed and split. Whether a model
    misses a colour target through too little training (training images as far off as test
    images) or through overfitting (training images much closer)."""
    rows = []
    for name, seed, G, cfg, step in _final_generators(profile, names, seeds, dataset):
        m = n or len(build_dataset(cfg.data, "test"))
        for split in ("train", "test"):
            values = reference_use(G, cfg.data, n=m, split=split)
            rows.append({"run": name, "seed": seed, "step": step, "split": split, "n": m,
                         **{k: values[k] for k in SPLIT_GAP_METRICS}})
    return pd.DataFrame(rows)


def memory_table(profile: str, names, seeds=(0,), n: int = 0, *,
                 dataset: str | None = None) -> pd.DataFrame:
    """evaluate.reference_or_memory of each run's final snapshot (test split): one row per
    run, seed and comparison."""
    return pd.DataFrame([{"run": name, "seed": seed, "step": step, **r}
                         for name, seed, G, cfg, step in _final_generators(profile, names, seeds, dataset)
                         for r in reference_or_memory(G, cfg.data, n=n)])


def region_size_table(profile: str, names, seeds=(0,), n: int | None = None, *,
                      dataset: str | None = None) -> pd.DataFrame:
    """evaluate.region_size_bins for each run and seed (final snapshots, test split): one row
    per run, seed and region-area bin, with a readable `bin` label. On the first n test
    images; None takes the run's data.eval_limit, as `evaluate` does (0: the whole split)."""
    rows = []
    for name, seed, G, cfg, _ in _final_generators(profile, names, seeds, dataset):
        for r in region_size_bins(G, cfg.data, n=cfg.data.eval_limit if n is None else n):
            hi = "" if r["area_to"] == float("inf") else f"{r['area_to']:g}"
            label = f">= {r['area_from']:g} px" if not hi else f"{r['area_from']:g}-{hi} px"
            rows.append({"run": name, "seed": seed, "bin": label, **r})
    return pd.DataFrame(rows)


# evaluate.hue_transfer of a run's final snapshot, one JSON line per (snapshot step, n, eval
# seed, split) in the run folder: five passes over the images are worth keeping for a rerun.
HUE_ANGLE_FILE = "hue_angles.jsonl"
MAP_ENTRIES = ("aa", "ab", "ba", "bb")  # the columns of hue_angle_table, in map_keys order
POOLED = "pooled"  # hue_angle_table's angle for the map over all angles at once


def hue_transfer_cached(run_dir, *, n: int = 96, seed: int = 0, split: str = "test") -> dict:
    """evaluate.hue_transfer of the final snapshot of the run in `run_dir` on the first n
    images of `split` (eval seed `seed`), read from the run's HUE_ANGLE_FILE where it holds
    that snapshot step, n, seed and split, else measured and appended there. The row holds
    those four keys (step, n, eval_seed, split) and every value hue_transfer returns."""
    run_dir = Path(run_dir)
    # the step alone decides whether the cache holds this snapshot: no generator to build
    step = int(load_pt(run_dir / FINAL)["step"])
    key = {"step": step, "n": n, "eval_seed": seed, "split": split}
    cache = run_dir / HUE_ANGLE_FILE
    if cache.exists():
        rows = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
        found = [r for r in rows if all(r.get(k) == v for k, v in key.items())]
        if found:
            return found[-1]
    G, cfg, _ = load_generator(run_dir / FINAL)
    row = {**key, **hue_transfer(G, cfg.data, n=n, seed=seed, split=split)}
    append_atomic(cache, json.dumps(row) + "\n")  # no torn line if killed
    return row


def hue_angle_table(profile: str, runs, seeds, *, dataset: str | None = None, n: int = 96,
                    seed: int = 0) -> pd.DataFrame:
    """The hue probe's 2x2 chroma map (evaluate.hue_transfer) of each finished run's final
    snapshot on the first n test images, per probe angle: long format, one row per run, seed
    and angle, with columns run, seed, step, angle, aa, ab, ba, bb (aa: a* from a*, ab: a*
    from b*, ...; the identity when hue follows the reference). `angle` is text, in order (a
    categorical, which a pivot keeps): each of HUE_PROBE_ANGLES ("0", "90", "180", "270";
    every image turned by it), then POOLED (the images turned by the four angles in turn, the
    map hue_transfer reports as a whole). A run without its final snapshot is left out;
    measured maps are cached in the run folder (`hue_transfer_cached`), so a rerun measures
    only new snapshots. `seed` is the evaluation's seed (the augmentations), `seeds` the
    runs'."""
    rows = []
    for name in runs:
        for s in seeds:
            path = run_path(profile, name, s, dataset)
            if not is_complete(path):
                continue
            values = hue_transfer_cached(path, n=n, seed=seed, split="test")
            for angle, suffix in [*((f"{a:.0f}", f"_{a:.0f}") for a in HUE_PROBE_ANGLES),
                                  (POOLED, "")]:
                rows.append({"run": name, "seed": s, "step": values["step"], "angle": angle,
                             **dict(zip(MAP_ENTRIES, (values[k] for k in map_keys(suffix))))})
    table = pd.DataFrame(rows, columns=["run", "seed", "step", "angle", *MAP_ENTRIES])
    order = [f"{a:.0f}" for a in HUE_PROBE_ANGLES] + [POOLED]
    return table.astype({"angle": pd.CategoricalDtype(order, ordered=True)})


# The headline: the main model beside the ablation arms at their own steps.
HEADLINE_METRICS = ("region_de_self", "region_dl_self", "region_dc_self", "region_dh_self",
                    "ref_gain_de_self", "palette_follow_cross", "fid_cross")


def headline_table(df: pd.DataFrame, runs, metrics=HEADLINE_METRICS) -> pd.DataFrame:
    """One row per run in `runs` order: each metric as "mean ± sd (over n seeds)" text at its
    shown precision (`decimals`). `df` is a long metrics table (`metrics_table`)."""
    summary = summarise(df, list(metrics)).set_index("run")
    missing = [r for r in runs if r not in summary.index]
    if missing:
        raise ValueError(f"no metrics for run(s) {', '.join(missing)} in the table")
    rows = []
    for run in runs:
        row = {"run": run, "seeds": int(summary.loc[run, "seeds"])}
        for m in metrics:
            if m not in summary.columns:
                raise ValueError(f"no metric {m!r} in the table")
            d = decimals(m)
            mean, sd = summary.loc[run, m], summary.loc[run, m + "_sd"]
            row[m] = f"{mean:.{d}f}" + ("" if pd.isna(sd) else f" ± {sd:.{d}f}")
        rows.append(row)
    return pd.DataFrame(rows)


def save_headline(table: pd.DataFrame, results, prov: dict, note: str = "",
                  sections: tuple[str, ...] | list[str] = ()) -> Path:
    """results/headline.md: the headline table as Markdown with its provenance, then each of
    `sections` (Markdown, e.g. targets.section), a blank line before each."""
    path = Path(results) / "headline.md"
    lines = ["# Headline results", ""] + ([note, ""] if note else [])
    lines += [table.to_markdown(index=False), "", "Provenance:", ""]
    lines += [f"- {k}: {v}" for k, v in prov.items()]
    text = "\n".join(lines) + "\n"
    # after the provenance, so that the table and its provenance read as before
    for extra in sections:
        text += "\n" + extra.rstrip("\n") + "\n"
    path.write_text(text)
    return path


# ------------------------------------------------------ reference use over training (dynamics)

def run_curves(profile: str, names, seed: int, split: str, n: int | None, progress: bool,
               dataset: str | None):
    """(name, run folder, curve) for each named run that has snapshots."""
    for name in names:
        path = run_path(profile, name, seed, dataset)
        curve = reference_use_curve(path, split=split, n=n, progress=progress)
        if not curve.empty:
            yield name, path, curve


def recipe_table(profile: str, names, seed: int = 0, split: str = "train", n: int | None = None,
                 progress: bool = True, *, dataset: str | None = None) -> pd.DataFrame:
    """Each recipe's reference use at its last snapshot, with its steps and training minutes
    (`dataset` None: $PAPERLIB_DATASET, else openmoji; as in `curves`)."""
    rows = []
    for name, path, curve in run_curves(profile, names, seed, split, n, progress, dataset):
        last = curve.iloc[-1]
        rows.append({"recipe": name, "what": RUNS[name][0], "steps": int(last["step"]),
                     "train_minutes": training_seconds(path) / 60,
                     **{m: float(last[m]) for m in ("ref_gain_de_self", "palette_follow_cross",
                                                    "region_de_self", "region_dl_self",
                                                    "region_dc_self", "region_dh_self",
                                                    "attention_hit_rate")}})
    return pd.DataFrame(rows)


def curves(profile: str, names, seed: int = 0, split: str = "train", n: int | None = None,
           progress: bool = True, *, dataset: str | None = None) -> pd.DataFrame:
    """Long table (run, step, minutes, metric, value) of several runs' reference-use curves;
    minutes is the training time at that step, scaled from the run's total."""
    frames = []
    for name, path, df in run_curves(profile, names, seed, split, n, progress, dataset):
        total_steps = json.loads((path / "config.json").read_text())["train"]["max_steps"]
        minutes = training_seconds(path) / 60
        df = df.assign(run=name, minutes=df["step"] / max(total_steps, 1) * minutes)
        frames.append(df.melt(id_vars=["run", "step", "minutes"],
                              value_vars=[m for m in CURVE_METRICS if m in df], var_name="metric"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
