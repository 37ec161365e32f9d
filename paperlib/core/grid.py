"""Image grids: the sample grids training writes and the grids of the study's figures draw
the same way, one column per tensor and one row per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_numpy_image(t: torch.Tensor) -> np.ndarray:
    """(C,H,W) in [-1,1] -> (H,W,3) float in [0,1]; single-channel sketches are repeated."""
    t = t.detach().float().cpu()
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return ((t.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def image_grid(columns: list[torch.Tensor], titles: list[str] | None = None, size: float = 1.6):
    """A figure with one column per tensor (B,C,H,W) and one row per image."""
    # matplotlib only when a grid is drawn: training imports this module, and most of its
    # processes (data workers, evaluation workers) never draw
    import matplotlib.pyplot as plt

    n_rows, n_cols = columns[0].shape[0], len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows), squeeze=False)
    for c, col in enumerate(columns):
        for r in range(n_rows):
            ax = axes[r][c]
            ax.imshow(to_numpy_image(col[r]), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=9)
    fig.tight_layout()
    return fig


def save_grid(columns, path, titles=None) -> None:
    import matplotlib.pyplot as plt  # as in image_grid: only when a grid is drawn

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = image_grid(columns, titles)
    fig.savefig(path, dpi=100)
    plt.close(fig)
