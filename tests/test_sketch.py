"""XDoG sketches: binary, pre-blur effective, line drawings detected, sign convention."""
import numpy as np
import torch
from dataclasses import replace

from paperlib.config import DataConfig
from paperlib.core.sketch import binarize_sketch_image, looks_like_line_drawing, sketch_tensor, xdog


def _disk(n=64):
    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n, 3), 230, np.uint8)
    img[(yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 3) ** 2] = (200, 40, 40)
    return img


def test_xdog_is_binary_mask_with_edges_only():
    ink = xdog(_disk(), DataConfig())
    assert ink.dtype == np.bool_ and ink.shape == (64, 64)
    assert 0.01 < ink.mean() < 0.3  # a contour, not a filled disk or nothing
    assert not ink[32, 32] and not ink[2, 2]  # flat interior and flat background are paper


def test_pre_blur_suppresses_fine_noise():
    rng = np.random.default_rng(0)
    noise = np.clip(128 + rng.normal(0, 40, (64, 64)), 0, 255).astype(np.uint8)
    cfg = DataConfig()
    with_blur = xdog(noise, cfg).sum()
    without = xdog(noise, replace(cfg, pre_blur_sigma=0.0)).sum()
    assert with_blur < 0.8 * without


def test_sketch_tensor_convention():
    ink = np.zeros((8, 8), bool)
    ink[2, 3] = True
    t = sketch_tensor(ink)
    assert t.shape == (1, 8, 8) and t.dtype == torch.float32
    assert set(t.unique().tolist()) == {-1.0, 1.0} and t[0, 2, 3] == -1


def test_binarize_keeps_line_drawing_and_xdogs_photo():
    drawing = np.full((64, 64, 3), 255, np.uint8)
    drawing[10:54, 30:32] = 0  # a 2-px vertical line
    drawing[20, 5:60] = 20
    ink = binarize_sketch_image(drawing, DataConfig())
    assert looks_like_line_drawing(drawing)
    assert np.array_equal(ink, drawing[..., 0] < 128)  # thresholded directly, lines kept as drawn
    photo = _disk()
    assert not looks_like_line_drawing(photo)
    assert np.array_equal(binarize_sketch_image(photo, DataConfig()), xdog(photo, DataConfig()))
