"""Per-image values of a run: the sums behind the pooled colour metrics, one entry per test
image, stored beside the run (per_image-<split>.npz), and the Inception activations of its
cross-reference outputs (per_image_acts-<split>.npz). evaluate writes them as it scores a run;
intervals resamples them for the claims' bootstrap."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def per_image_file(run_dir, split: str = "test") -> Path:
    """Where a run's per-image values on `split` are kept, for its current snapshot."""
    return Path(run_dir) / f"per_image-{split}.npz"


PER_IMAGE_METRICS = ("region_de_self", "region_dh_self", "ref_gain_de_self", "palette_follow_cross")
FIELDS = ("de_sum", "de_n", "wrong_sum", "wrong_n", "dh_area", "area", "pal_own", "pal_other")


def values_from_errors(errors: dict) -> dict[str, np.ndarray]:
    """The per-image sums (FIELDS, each (N,)) from evaluate.colour_errors: the regions of
    all images come concatenated in image order, each image's count in regions_per_image."""
    def per_image(sums, counts):
        # reduceat on the image boundaries; an image without regions sums to 0
        edges = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
        total = np.add.reduceat(np.append(sums, 0.0), edges) if len(counts) else np.zeros(0)
        return np.where(np.asarray(counts) > 0, total, 0.0)

    region, wrong = errors["region"], errors["wrong"]
    n_own, n_wrong = region["regions_per_image"], wrong["regions_per_image"]
    return {"de_sum": per_image(region["region_de"], n_own), "de_n": n_own.astype(np.float64),
            "wrong_sum": per_image(wrong["region_de"], n_wrong), "wrong_n": n_wrong.astype(np.float64),
            "dh_area": per_image(region["region_lch"][:, 2] * region["region_area"], n_own),
            "area": per_image(region["region_area"], n_own),
            "pal_own": np.asarray(errors["palette_own"], np.float64),
            "pal_other": np.asarray(errors["palette_other"], np.float64)}


def save_values(run_dir, values: dict, meta: dict) -> None:
    """Write a run's per-image values with what they were computed on (run_values' cache)."""
    path = per_image_file(run_dir, meta["split"])
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta), **values)
    tmp.replace(path)  # a kill leaves the old or the new, never half


def activations_file(run_dir, split: str = "test") -> Path:
    """Where the Inception activations of a run's cross-reference outputs on `split` are kept."""
    return Path(run_dir) / f"per_image_acts-{split}.npz"


def save_activations(run_dir, acts: np.ndarray, meta: dict) -> None:
    """Write the activations (N, D) of a run's cross outputs with what they were computed on
    (meta: step, split, eval_seed, limit, and real_key, the key of the real images' cached
    activations in fid). Stored as float16: 1.8 MB for 445 images rather than 7.3 MB, and
    KID's kernel averages the rounding (3 significant digits) over 2048 dimensions."""
    path = activations_file(run_dir, meta["split"])
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta, sort_keys=True, default=str),
             acts=np.asarray(acts, np.float16))
    tmp.replace(path)  # a kill leaves the old or the new, never half


def load_activations(run_dir, split: str = "test") -> tuple[np.ndarray, dict] | None:
    """The stored activations (N, D) float64 of a run's cross outputs on `split` and their
    meta; None when the run has none (evaluated before they were stored)."""
    path = activations_file(run_dir, split)
    if not path.is_file():
        return None
    with np.load(path) as z:
        return z["acts"].astype(np.float64), json.loads(str(z["meta"]))
