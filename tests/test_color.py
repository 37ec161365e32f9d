"""sRGB <-> CIELAB in torch and the hue rotation of the opt-in data.hue_rotation augmentation."""
import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from paperlib.core.color import lab_to_srgb, rotate_ab, rotate_hue, srgb_to_lab


def lab_ring(lightness=60.0, chroma=30.0, n=36) -> torch.Tensor:
    """(1, 3, 1, n) Lab colours of one lightness and chroma at n hues around the circle; at
    L* 60 and chroma 30 every hue is inside the sRGB gamut (checked where used)."""
    h = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([torch.full_like(h, lightness), chroma * h.cos(), chroma * h.sin()]
                       ).view(1, 3, 1, n)


def test_lab_agrees_with_skimage():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = srgb_to_lab(x)  # (2, 3, 8, 8)
    for i in range(2):
        ref = rgb2lab(x[i].permute(1, 2, 0).numpy())  # (8, 8, 3)
        # skimage's matrix and white point differ in the 4th decimal
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), ref, atol=0.02)


def test_zero_rotation_round_trips_within_one_level():
    img = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = rotate_hue(img, torch.zeros(3))
    assert out.dtype == img.dtype and out.shape == img.shape
    assert ((out - img) / 2).abs().max() < 1 / 255  # [0, 1] units
    rgb = (img + 1) / 2
    assert (lab_to_srgb(srgb_to_lab(rgb)) - rgb).abs().max() < 1 / 255


def test_180_degrees_negates_a_b_and_keeps_lightness():
    lab = lab_ring()
    rgb = lab_to_srgb(lab)
    assert (srgb_to_lab(rgb) - lab).abs().max() < 1e-3  # the ring is in gamut
    out = rotate_hue(rgb.float() * 2 - 1, torch.tensor([180.0]))
    got = srgb_to_lab((out.double() + 1) / 2)
    torch.testing.assert_close(got[:, 0], lab[:, 0], atol=0.05, rtol=0)
    torch.testing.assert_close(got[:, 1:], -lab[:, 1:], atol=0.05, rtol=0)


def test_90_degrees_turns_a_towards_b():
    lab = lab_ring(lightness=55.0, chroma=25.0, n=12)
    turned = rotate_ab(lab, torch.tensor([90.0], dtype=torch.float64))
    torch.testing.assert_close(turned[:, 1], -lab[:, 2])  # a' = -b
    torch.testing.assert_close(turned[:, 2], lab[:, 1])  # b' = a
    torch.testing.assert_close(turned[:, 0], lab[:, 0])


def test_grey_is_unchanged_by_any_rotation():
    levels = torch.linspace(-1, 1, 9).view(1, 1, 1, 9).expand(4, 3, 5, 9)  # (4, 3, 5, 9) greys
    out = rotate_hue(levels, torch.tensor([37.0, -120.0, 180.0, 5.0]))
    assert (out - levels).abs().max() < 1e-4


def test_one_angle_per_image():
    rgb = lab_to_srgb(lab_ring()).float().expand(2, -1, -1, -1) * 2 - 1  # (2, 3, 1, 36)
    out = rotate_hue(rgb, torch.tensor([0.0, 180.0]))
    assert ((out[0] - rgb[0]) / 2).abs().max() < 1 / 255  # first image untouched
    assert (out[1] - rgb[1]).abs().max() > 0.1  # second one turned


def test_rotation_refuses_mismatched_angles():
    with pytest.raises(ValueError, match="one angle per image"):
        rotate_ab(torch.zeros(2, 3, 4, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="3 channels"):
        srgb_to_lab(torch.zeros(2, 4, 4, 4))
