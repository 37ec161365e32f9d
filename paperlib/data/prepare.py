"""Set-up work done once and cached: dataset renders and the offline FID weights."""
from __future__ import annotations

from ..config import Config
from .datasets import build_dataset


def prepare(config: Config) -> dict:
    """Build (and cache) every split (faces: train, test, test-unseen), convert the FID weights;
    return the split counts."""
    from ..evaluation import fid

    splits = ("train", "test", "test-unseen") if config.data.dataset == "faces" else ("train", "test")
    counts = {}
    for split in splits:
        counts[split] = len(build_dataset(config.data, split))
    counts["total"] = sum(counts[s] for s in splits)
    if config.data.dataset == "openmoji":
        from .openmoji import openmoji_counts
        counts.update({k: v for k, v in openmoji_counts(config.data).items() if k not in counts})
    counts["fid_weights"] = str(fid.convert_fid_weights().name)
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
