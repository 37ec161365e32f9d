"""Learning dynamics: how reference use emerges over training, and the recipe study.

A run that keeps snapshots during training (train.snapshot_every) can be measured at every one
of them with `evaluate.reference_use` (no FID, seconds per snapshot): ref_gain_de_self,
palette_follow_cross, region dE00 and its lightness / chroma / hue split, and the attention hit
rate. The numbers are cached per snapshot in the run folder (`reference_use.jsonl`), so a rerun
of a notebook measures only what is new.

The recipe study compares recipes (named runs of the experiment registry) at an equal planned
budget of training time (study.tables.recipe_table and curves, which read these curves). Recipes are
selected on training images, never on the test split that the tables report: `recipe_table`
defaults to split "train".
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..config import DataConfig
from ..paths import append_atomic
from ..training.precision import resolve
from ..training.snapshot import FINAL, load_generator, load_pt
from ..training.stats import read_stats
from .evaluate import git_commit, hue_transfer, reference_use

CURVE_FILE = "reference_use.jsonl"
CURVE_METRICS = ("ref_gain_de_self", "palette_follow_cross", "region_de_self",
                 "attention_hit_rate")


def snapshots(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of a run's intermediate snapshots and its final one, by step."""
    run_dir = Path(run_dir)
    found = {}
    for p in run_dir.glob("snapshot-*.pt"):
        m = re.fullmatch(r"snapshot-(\d+)\.pt", p.name)
        if m:
            found[int(m.group(1))] = p
    final = run_dir / FINAL
    if final.exists():
        step = int(load_pt(final)["step"])
        found.setdefault(step, final)
    return sorted(found.items())


def _read_cache(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curve_images(run_dir) -> int:
    """data.curve_images of a run; a run from before the field existed scored the field's
    default (48)."""
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    return int(cfg["data"].get("curve_images", DataConfig.curve_images))


def reference_use_curve(run_dir, *, split: str = "test", n: int | None = None, seed: int = 0,
                        progress: bool = True, hue: bool = False) -> pd.DataFrame:
    """One row per snapshot step: the reference-use metrics on the first n images of `split`
    (None: the run's data.curve_images); with hue=True also evaluate.hue_transfer's (the 2x2
    chroma map and the errors under turned hues)."""
    run_dir = Path(run_dir)
    n = curve_images(run_dir) if n is None else n
    cache = run_dir / CURVE_FILE
    rows = _read_cache(cache)
    have = {(r["step"], r["split"], r["n"], r["eval_seed"]) for r in rows
            if not hue or "transfer_aa" in r}
    todo = [(s, p) for s, p in snapshots(run_dir) if (s, split, n, seed) not in have]
    for step, path in tqdm(todo, desc=f"reference use {run_dir.name}",
                           **({} if progress else {"disable": True})):
        G, config, _ = load_generator(path)
        row = {"step": step, "split": split, "n": n, "eval_seed": seed,
               **reference_use(G, config.data, n=n, seed=seed, split=split),
               **(hue_transfer(G, config.data, n=n, seed=seed, split=split) if hue else {})}
        append_atomic(cache, json.dumps(row) + "\n")  # no torn line if killed
        rows.append(row)
    df = pd.DataFrame([r for r in rows if (r["split"], r["n"], r["eval_seed"]) == (split, n, seed)])
    # tie-safe: one row per step is left to sort
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def training_seconds(run_dir) -> float:
    """Wall-clock seconds of training, from the images/s of every stats.jsonl window."""
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    batch = cfg["train"]["batch_size"]
    total, prev = 0.0, 0
    for r in read_stats(run_dir):
        total += (r["step"] - prev) * batch / max(r["images_per_sec"], 1e-9)
        prev = r["step"]
    return total


def recipe_provenance(config, seed: int, n: int | None = None) -> dict:
    """What the recipe table depends on (the metrics come from reference_use, not metrics.jsonl)."""
    n = config.data.curve_images if n is None else n
    return {"profile": config.profile, "dataset": config.data.dataset,
            "split": f"train (first {n} images, fresh augmentations; never the test split)",
            "resolution": config.data.resolution, "seed": seed, "eval seed": 0,
            # what "auto" trains the recipe runs in on this machine
            "precision": resolve(config.train.precision, "cpu", warn=False).precision,
            "budget": ("the main run's steps, scaled down by each recipe's planned step cost; "
                       "the measured minutes differ (train_minutes)"),
            "git commit": git_commit()}
