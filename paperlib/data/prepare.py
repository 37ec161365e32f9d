"""Set-up work done once and cached: the dataset renders (the FID weights are converted by
study.reproduce.prepare, which calls this)."""
from __future__ import annotations

from ..config import Config
from .datasets import build_dataset
from .openmoji import openmoji_counts


def split_counts(config: Config) -> dict:
    """Build (and cache) every split (faces: train, test, test-unseen); return their counts,
    with OpenMoji's counts of what was skipped."""
    splits = ("train", "test", "test-unseen") if config.data.dataset == "faces" else ("train", "test")
    counts = {}
    for split in splits:
        counts[split] = len(build_dataset(config.data, split))
    counts["total"] = sum(counts[s] for s in splits)
    if config.data.dataset == "openmoji":
        counts.update({k: v for k, v in openmoji_counts(config.data).items() if k not in counts})
    return counts


def data_schema() -> str:
    """What one training batch holds, independent of profile and resolution."""
    return "\n".join([
        "sketch      (B, 1, H, W)  float32  {-1 ink, +1 paper}   binarised line art",
        "reference   (B, 3, H, W)  float32  [-1, 1]              s(a(I)), or zeros",
        "target      (B, 3, H, W)  float32  [-1, 1]              a(I), the ground truth",
        "corr        (B, P)        int64    [0, P)               reference cell of each sketch cell",
        "corr_mask   (B, P)        bool                          False where the content left the image",
        "P = (H/16) * (W/16) feature positions, flattened row-major",
    ])
