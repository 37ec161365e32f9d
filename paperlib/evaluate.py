"""`python -m paperlib evaluate`: the paper's metrics, and measurements in place of its user study.

Two test settings, both deterministic (fixed seed):
- augmented-self: reference = s(a(I)) of the test image, ground truth a(I) is known, so SSIM,
  PSNR and the per-region colour error (faithfulness, part by part) are defined;
- cross-reference: sketch of test image i with the reference of test image j != i (a fixed
  derangement), as the paper pairs them at inference; FID/KID against the real test images, and
  the palette distance between output and reference.
With `no_reference` every reference is the zero-filled image [S 6.5].
Each metric is one JSON line in the run's metrics.jsonl with its provenance.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import augment, fid, metrics
from .config import override
from .datasets import build_dataset
from .perceptual import perceptual_name
from .snapshot import load_generator, resolve_snapshot


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10)
        # only the package decides the numbers; notebooks and results change during a reproduction
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "paperlib"],
                               capture_output=True, text=True, cwd=Path(__file__).parent,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def derangement(n: int, seed: int) -> torch.Tensor:
    """A random permutation with no fixed point: reference j != sketch i."""
    if n < 2:
        raise ValueError("cross-reference evaluation needs at least 2 test images")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return torch.roll(perm, 1)[torch.argsort(perm)]


@torch.no_grad()
def generate(G, dataset, *, batch_size: int = 32, seed: int = 0, no_reference: bool = False,
             data_cfg=None, progress: bool = True) -> dict[str, torch.Tensor]:
    """Run the generator over a dataset in both settings; returns CPU tensors."""
    n = len(dataset)
    items = [dataset[i] for i in range(n)]
    image = torch.stack([it["image"] for it in items])  # (N,3,H,W)
    sketch = torch.stack([it["sketch"] for it in items])  # (N,1,H,W)
    cfg = replace(data_cfg, no_reference_prob=0.0)
    aug = augment.augmented_self(image, cfg, torch.Generator().manual_seed(seed))
    cross = derangement(n, seed)
    device = next(G.parameters()).device
    self_out, cross_out = [], []
    for s in tqdm(range(0, n, batch_size), desc="generate",
                  **({} if progress else {"disable": True})):
        sl = slice(s, s + batch_size)
        sk = sketch[sl].to(device)
        ref_self = None if no_reference else aug["reference"][sl].to(device)
        ref_cross = None if no_reference else image[cross[sl]].to(device)
        self_out.append(G(sk, ref_self)[0].float().cpu())
        cross_out.append(G(sk, ref_cross)[0].float().cpu())
    return {"image": image, "sketch": sketch, "target": aug["target"],
            "reference": aug["reference"], "cross_reference": image[cross],
            "self": torch.cat(self_out), "cross": torch.cat(cross_out)}


def evaluate(run_or_file, *, dataset: str | None = None, root: str | None = None,
             split: str = "test", limit: int = 0, no_reference: bool = False, seed: int = 0,
             batch_size: int = 32, device: str = "cpu", progress: bool = True) -> list[dict]:
    G, config, step = load_generator(run_or_file, device)
    sets = {}
    if dataset:
        sets["dataset"] = dataset
    if root:
        sets["root"] = root
    data_cfg = override(config, {f"data.{k}": v for k, v in sets.items()}).data
    ds = build_dataset(data_cfg, split)
    limit = limit or data_cfg.eval_limit
    if limit:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    out = generate(G, ds, batch_size=batch_size, seed=seed, no_reference=no_reference,
                   data_cfg=data_cfg, progress=progress)
    n = out["image"].shape[0]

    net = fid.inception(device)
    real_key = {"dataset": data_cfg.dataset, "root": data_cfg.root, "split": split,
                "resolution": data_cfg.resolution, "n": n, "sketch_source": data_cfg.sketch_source}
    real_acts = fid.reference_activations(
        real_key, lambda: fid.activations(out["image"], net, device=device))
    values: dict[str, float] = {}
    for setting in ("cross", "self"):
        acts = fid.activations(out[setting], net, device=device)
        values[f"fid_{setting}"] = fid.fid_from_activations(acts, real_acts)
        kid_mean, kid_std = fid.kid(acts, real_acts)
        values[f"kid_{setting}"], values[f"kid_{setting}_sd"] = kid_mean, kid_std
    values["ssim_self"] = float(np.mean(metrics.ssim(out["self"], out["target"])))
    values["psnr_self"] = float(np.mean(metrics.psnr(out["self"], out["target"])))
    region = metrics.region_color_error(out["self"], out["target"], out["sketch"])
    values["region_de_self"] = float(region["mean_de"])
    values["region_jnd_share_self"] = float(region["share_below_jnd"])
    ref_for_palette = out["cross_reference"]
    values["palette_cross"] = float(np.nanmean(metrics.palette_distance(out["cross"], ref_for_palette)))

    prov = {"n": n, "dataset": data_cfg.dataset, "split": split,
            "resolution": data_cfg.resolution, "step": step, "profile": config.profile,
            "aggregation": config.model.aggregation,
            "correspondence_loss": config.loss.correspondence_loss,
            "seed": config.train.seed, "eval_seed": seed,
            "reference": "zero" if no_reference else "image",
            "fid_network": fid.network_name(), "perceptual_network": perceptual_name(config.loss),
            "git_commit": git_commit(), "checkpoint": str(resolve_snapshot(run_or_file).name)}
    rows = [{"metric": k, "value": v, **prov} for k, v in values.items()]
    path = Path(run_or_file)
    if path.is_dir():
        with open(path / "metrics.jsonl", "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return rows


def read_metrics(run_dir, *, split: str = "test", no_reference: bool = False,
                 dataset: str | None = None, **_ignored) -> list[dict]:
    """The newest evaluation rows of a run for its current snapshot step (empty if none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ref = "zero" if no_reference else "image"
    rows = [r for r in rows if r["split"] == split and r["reference"] == ref
            and (dataset is None or r["dataset"] == dataset)]
    if not rows:
        return []
    try:
        step = torch.load(resolve_snapshot(run_dir), map_location="cpu", weights_only=False)["step"]
    except FileNotFoundError:
        return []
    rows = [r for r in rows if r["step"] == step]
    latest: dict[str, dict] = {}
    for r in rows:
        latest[r["metric"]] = r
    return list(latest.values())


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no metrics)"
    r0 = rows[0]
    head = (f"{r0['profile']} | {r0['dataset']}/{r0['split']} @ {r0['resolution']} px | "
            f"n={r0['n']} | step {r0['step']} | reference: {r0['reference']} | "
            f"FID net: {r0['fid_network']} | perceptual: {r0['perceptual_network']} | "
            f"commit {r0['git_commit']}")
    lines = [head] + [f"  {r['metric']:24s} {r['value']:.4f}" for r in rows]
    return "\n".join(lines)
