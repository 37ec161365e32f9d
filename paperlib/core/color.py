"""sRGB <-> CIELAB (D65) in torch, batched and on the images' device, and a hue rotation.

The training augmentation needs it (augment.color_shift with data.hue_rotation > 0); the
evaluation metrics convert with skimage on numpy arrays instead and do not use this module.
No gradient is needed, but nothing here stops one.

Formulas: the sRGB transfer curve and primaries (IEC 61966-2-1) and the CIE 1976 L*a*b*
definition. [I] The reference white is the image of sRGB white (1, 1, 1) under the matrix
below, which equals D65 (0.95047, 1, 1.08883) to four decimals, so that every grey has
a* = b* = 0 up to float rounding and a hue rotation leaves greys exactly grey.
"""
from __future__ import annotations

import math

import torch

# Linear sRGB -> XYZ, rows X, Y, Z (IEC 61966-2-1 primaries, D65).
RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
              (0.2126729, 0.7151522, 0.0721750),
              (0.0193339, 0.1191920, 0.9503041))
DELTA = 6.0 / 29.0  # the CIE 1976 break point of f(t) between the cube root and the line


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    # float64 stays float64; anything narrower (bf16, fp16, fp32) is computed in float32.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_channels(x: torch.Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name}: need (..., 3, H, W) with 3 channels, got {tuple(x.shape)}")


def _matrix(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    m = torch.tensor(RGB_TO_XYZ, dtype=torch.float64)
    if inverse:
        m = torch.linalg.inv(m)
    return m.to(x.device, _work_dtype(x))  # (3, 3)


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 matrix to the channel dimension of (..., 3, H, W)."""
    return torch.einsum("ij,...jhw->...ihw", m, x)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) sRGB in [0, 1] -> (..., 3, H, W) L* in [0, 100], a*, b* (about +-128)."""
    _check_channels(rgb, "srgb_to_lab")
    x = rgb.to(_work_dtype(rgb)).clamp(0.0, 1.0)
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = _matrix(x)
    white = m.sum(dim=1).view(3, 1, 1)  # (3, 1, 1): XYZ of sRGB white, see the module docstring
    t = _mix(m, lin) / white  # (..., 3, H, W): X/Xn, Y/Yn, Z/Zn
    f = torch.where(t > DELTA ** 3, t.clamp_min(DELTA ** 3) ** (1.0 / 3.0),
                    t / (3 * DELTA ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) L*a*b* -> sRGB in [0, 1]; colours outside the sRGB gamut are clipped
    (per channel, in linear light)."""
    _check_channels(lab, "lab_to_srgb")
    lab = lab.to(_work_dtype(lab))
    l, a, b = lab.unbind(dim=-3)
    fy = (l + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], dim=-3)  # (..., 3, H, W)
    t = torch.where(f > DELTA, f ** 3, 3 * DELTA ** 2 * (f - 4.0 / 29.0))
    m = _matrix(lab)
    white = m.sum(dim=1).view(3, 1, 1)
    lin = _mix(_matrix(lab, inverse=True), t * white).clamp(0.0, 1.0)
    rgb = torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1.0 / 2.4) - 0.055)
    return rgb.clamp(0.0, 1.0)


def rotate_ab(lab: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate the a*b* plane of (B, 3, H, W) Lab by one angle per image (B,) in degrees,
    counter-clockwise (a* towards b*); L* and chroma sqrt(a*^2 + b*^2) are kept."""
    _check_channels(lab, "rotate_ab")
    if lab.ndim != 4 or degrees.shape != (lab.shape[0],):
        raise ValueError(f"rotate_ab: need Lab (B, 3, H, W) and one angle per image (B,), got "
                         f"{tuple(lab.shape)} and {tuple(degrees.shape)}")
    theta = degrees.to(lab.device, lab.dtype) * (math.pi / 180.0)
    cos, sin = theta.cos().view(-1, 1, 1), theta.sin().view(-1, 1, 1)  # (B, 1, 1)
    l, a, b = lab.unbind(dim=1)  # each (B, H, W)
    return torch.stack([l, a * cos - b * sin, a * sin + b * cos], dim=1)


def rotate_hue(image: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) image in [-1, 1] (the package's convention) with its hue rotated by one
    angle per image (B,) degrees in CIELAB (rotate_ab); returned in [-1, 1] in the image's dtype
    on its device. Colours the rotation takes out of the sRGB gamut are clipped."""
    lab = srgb_to_lab((image + 1.0) / 2.0)
    rgb = lab_to_srgb(rotate_ab(lab, degrees))
    return (rgb * 2.0 - 1.0).clamp(-1.0, 1.0).to(image.dtype)
