"""Image grids, one column per tensor and one row per image: the figures the notebooks show
(`image_grid`, an axes per image) and the grid files training and the studies write
(`save_grid`, one image of the whole grid, drawn in a tenth of the time: a smoke run's
training, in CI, spent a third of its time drawing its sample grid with an axes per image)."""
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


def mosaic(columns: list[torch.Tensor]) -> np.ndarray:
    """The grid as one (H', W', 3) image in [0, 1]: column c, row r holds columns[c][r], with a
    white gap of a sixteenth of an image between neighbours. Every tensor is (B, C, H, W) with
    the same B, H and W; C is 1 or 3."""
    n_rows, (h, w) = columns[0].shape[0], columns[0].shape[-2:]
    for c, col in enumerate(columns):
        if col.ndim != 4 or col.shape[0] != n_rows or tuple(col.shape[-2:]) != (h, w):
            raise ValueError(f"grid column {c} is {tuple(col.shape)}; every column must be "
                             f"({n_rows}, C, {h}, {w}) like the first")
    gap = max(1, round(h / 16))
    out = np.ones((n_rows * (h + gap) - gap, len(columns) * (w + gap) - gap, 3), np.float32)
    for c, col in enumerate(columns):
        for r in range(n_rows):
            y, x = r * (h + gap), c * (w + gap)
            out[y:y + h, x:x + w] = to_numpy_image(col[r])  # (H, W, 3)
    return out


def save_grid(columns, path, titles=None, size: float = 1.6) -> None:
    """The grid of `image_grid`, written to `path` at the same size (`size` inches an image,
    100 dpi), drawn as one image under a row of titles."""
    import matplotlib.pyplot as plt  # as in image_grid: only when a grid is drawn

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_rows, n_cols = columns[0].shape[0], len(columns)
    head = 0.3 if titles else 0.0  # inches for the titles
    fig = plt.figure(figsize=(size * n_cols, size * n_rows + head))
    top = size * n_rows / (size * n_rows + head)  # the image's share of the height
    ax = fig.add_axes((0.01, 0.005, 0.98, top - 0.01))
    ax.imshow(mosaic(columns), interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    for c, title in enumerate(titles or []):
        fig.text((c + 0.5) / n_cols, (1 + top) / 2, title, ha="center", va="center", fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
