"""Sketch extraction: XDoG (Winnemoeller et al. 2012) after a Gaussian pre-blur [S 6.3].

The encoder takes a single-channel binarised sketch [S]; by the project convention a sketch
tensor is +1 on paper and -1 on ink. Functions here work on numpy arrays for one image
(they run inside DataLoader workers) and return a boolean ink mask; `sketch_tensor` applies
the sign convention.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import DataConfig


def to_gray01(img: np.ndarray) -> np.ndarray:
    """(H,W) or (H,W,3) uint8 -> (H,W) float32 luminance in [0, 1] (ITU-R 601 weights)."""
    if img.ndim == 3:
        img = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return img.astype(np.float32) / 255.0


def _blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    import cv2  # OpenCV is large: loaded by the functions that resize or filter

    if sigma <= 0:
        return gray
    # Kernel spans +/- 3 sigma; reflect borders so the frame edge is not drawn as a line.
    return cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT_101)


def xdog_response(img: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Soft XDoG output in [0, 1] (1 = paper): (H,W) float32.

    D = G_sigma * I - tau G_{k sigma} * I on the pre-blurred luminance I in [0, 1];
    T = 1 where D >= epsilon, else 1 + tanh(phi (D - epsilon)) (Winnemoeller 2012, Eq. 4-5).
    """
    gray = _blur(to_gray01(img), cfg.pre_blur_sigma)  # [S 6.3] suppress superfluous edges
    g1 = _blur(gray, cfg.xdog_sigma)
    g2 = _blur(gray, cfg.xdog_sigma * cfg.xdog_k)
    d = g1 - cfg.xdog_tau * g2
    return np.where(d >= cfg.xdog_epsilon, 1.0,
                    1.0 + np.tanh(cfg.xdog_phi * (d - cfg.xdog_epsilon))).astype(np.float32)


def xdog(img: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """(H,W) or (H,W,3) uint8 -> (H,W) bool ink mask (True = ink), XDoG thresholded at 0.5."""
    return xdog_response(img, cfg) < 0.5


def sketch_tensor(ink: np.ndarray) -> torch.Tensor:
    """(H,W) bool ink mask -> (1,H,W) float32 with +1 paper and -1 ink."""
    ink_t = torch.from_numpy(np.ascontiguousarray(ink, dtype=bool))
    return (1.0 - 2.0 * ink_t.float()).unsqueeze(0)  # (1,H,W)


def looks_like_line_drawing(img: np.ndarray) -> bool:
    """True for an already-drawn sketch: nearly colourless, mostly white, nearly binary."""
    rgb = img if img.ndim == 3 else img[..., None].repeat(3, axis=2)
    rgb = rgb.astype(np.int16)
    chroma = (rgb.max(axis=2) - rgb.min(axis=2)).mean()
    gray = to_gray01(img.astype(np.uint8))
    extreme = np.mean((gray < 0.3) | (gray > 0.7))
    white = np.mean(gray > 0.7)
    return chroma < 12 and extreme > 0.9 and white > 0.5


def binarize_sketch_image(img: np.ndarray, cfg: DataConfig,
                          line_drawing: bool | None = None) -> np.ndarray:
    """Ink mask for a user-supplied sketch input: (H,W) bool.

    A line drawing (mostly white, dark lines, near-binary) is thresholded directly at mid
    grey, keeping the artist's lines; anything else (a colour photo) goes through XDoG, the
    same extraction the model was trained on. `line_drawing` overrides the detection (a caller
    that resizes decides once, on the full-size image).
    """
    if line_drawing is None:
        line_drawing = looks_like_line_drawing(img)
    if line_drawing:
        return to_gray01(img) < 0.5
    return xdog(img, cfg)


def sketch_regions(sketch: torch.Tensor, min_region_px: int = 16) -> np.ndarray:
    """Closed regions of a binarised sketch ((1, H, W) or (H, W), +1 paper, -1 ink) as a label
    map (H, W) int32: 0 = not a region, 1..n = regions.

    Regions are the 4-connected components of paper pixels. Components touching the image
    border are dropped: the outer background is one of them, and a region left open at the
    border is not closed by the drawing [I]. Components below min_region_px pixels are dropped
    (specks between nearby strokes)."""
    s = sketch.detach().cpu().numpy() if isinstance(sketch, torch.Tensor) else np.asarray(sketch)
    while s.ndim > 2 and s.shape[0] == 1:
        s = s[0]
    if s.ndim != 2:
        raise ValueError(f"need one sketch (1, H, W), got shape {tuple(sketch.shape)}")
    import cv2  # OpenCV is large: loaded by the functions that resize or filter

    paper = (s > 0).astype(np.uint8)
    n, labels = cv2.connectedComponents(paper, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    areas = np.bincount(labels.ravel(), minlength=n)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = areas[1:] >= min_region_px  # label 0 is the ink
    keep[border] = False
    remap = np.zeros(n, dtype=np.int32)
    remap[keep] = np.arange(1, keep.sum() + 1)
    return remap[labels]


def region_labels(sketch: torch.Tensor, min_region_px: int = 16) -> torch.Tensor:
    """sketch_regions of each sketch of a batch (B, 1, H, W) -> (B, H, W) int64 on the sketch's
    device: 0 = no region, 1..n_b = the closed regions of image b."""
    maps = [torch.from_numpy(sketch_regions(s, min_region_px).astype("int64")) for s in sketch]
    return torch.stack(maps).to(sketch.device)
