"""Augmented-self reference: a(), the TPS warp, its correspondence, zero references, determinism."""
import math

import pytest
import torch

from paperlib.core.augment import augmented_self, cell_centres, color_shift, feature_grid
from paperlib.config import DataConfig


def _coord_image(b, h):
    """(B,3,H,W) whose channels 0/1 hold each pixel's own normalised x/y centre."""
    c = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx, yy, torch.zeros_like(xx)])[None].repeat(b, 1, 1, 1), xx, yy


def test_feature_grid():
    assert feature_grid(256) == 16 and feature_grid(64) == 4
    with pytest.raises(ValueError, match="100"):
        feature_grid(100)


def test_color_shift_one_constant_per_channel_and_clipped():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(6, 3, 32, 32) * 1.6 - 0.8  # headroom of 0.2 on both sides
    img[:, :, :4] = 1.0  # a saturated band that must stay clipped
    out = color_shift(img, DataConfig(color_jitter=50.0), g)
    assert out.min() >= -1 and out.max() <= 1
    inner = (out - img)[:, :, 8:]  # rows outside the saturated band
    unclipped = (out[:, :, 8:].abs() < 1)
    for b in range(6):
        for c in range(3):
            d = inner[b, c][unclipped[b, c]]
            assert d.numel() > 100
            assert torch.allclose(d, d[0].expand_as(d), atol=1e-5)
            assert d[0].abs() <= 50 / 127.5 + 1e-6
    # channels get different offsets (independent draws)
    offs = (out - img)[:, :, 16, 16]
    assert offs.std() > 0.05


def test_tps_correspondence_is_right_at_256px():
    """Warp an image that encodes its own coordinates; the returned reference cell must contain
    the true preimage (found from pixel values) of each sketch cell centre, within half a cell."""
    h, gf, b = 256, 16, 6
    img, xx, yy = _coord_image(b, h)
    out = augmented_self(img, DataConfig(color_jitter=0.0), torch.Generator().manual_seed(3))
    p = cell_centres(gf)  # (P,2)
    vals = out["reference"][:, :2].flatten(2).transpose(1, 2)  # (B,HW,2) source coords shown
    dist, arg = torch.cdist(p[None].expand(b, -1, -1).contiguous(), vals).min(2)  # (B,P)
    pix = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)  # (HW,2)
    preimage = pix[arg]  # (B,P,2)
    in_image = dist < 3.0 / h  # the content of p is visible in the reference
    assert in_image.float().mean() > 0.5  # the warp keeps most content
    chosen = p[out["corr"]]  # (B,P,2) centre of the returned reference cell
    right = (preimage - chosen).abs().max(-1).values <= 1.0 / gf + 1.0 / h
    good = right & out["corr_mask"] & in_image
    assert good.sum() / in_image.sum() >= 0.95
    assert out["corr"].dtype == torch.int64 and out["corr"].shape == (b, gf * gf)
    # where the mask says "gone", the content really is (nearly) absent
    gone = ~out["corr_mask"]
    assert (dist[gone] > 1.0 / h).float().mean() > 0.9


def test_zero_warp_is_identity():
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    cfg = DataConfig(color_jitter=0.0, tps_scale=0.0)
    out = augmented_self(img, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out["reference"], img, atol=1e-4)
    assert torch.equal(out["corr"], torch.arange(16).expand(2, 16))
    assert out["corr_mask"].all() and out["has_reference"].all()


def test_warp_fills_uncovered_area_with_white():
    img = -torch.ones(4, 3, 64, 64)  # black image: anything not black came from the padding
    out = augmented_self(img, DataConfig(color_jitter=0.0, tps_scale=0.25),
                         torch.Generator().manual_seed(1))
    ref = out["reference"]
    assert ref.max() > 0.99 and ref.min() >= -1 - 1e-5  # white appears, nothing darker than ink


def test_zero_reference():
    img = torch.rand(8, 3, 32, 32) * 2 - 1
    out = augmented_self(img, DataConfig(no_reference_prob=1.0), torch.Generator().manual_seed(0))
    assert not out["has_reference"].any() and not out["corr_mask"].any()
    assert torch.equal(out["reference"], torch.zeros_like(img))
    half = augmented_self(torch.rand(400, 3, 16, 16), DataConfig(no_reference_prob=0.1),
                          torch.Generator().manual_seed(0))
    frac = 1 - half["has_reference"].float().mean()
    assert 0.05 < frac < 0.17
    assert (half["reference"][~half["has_reference"]] == 0).all()


def test_same_seed_same_batch():
    img = torch.rand(4, 3, 32, 32) * 2 - 1
    cfg = DataConfig(no_reference_prob=0.5)
    a = augmented_self(img, cfg, torch.Generator().manual_seed(7))
    b = augmented_self(img, cfg, torch.Generator().manual_seed(7))
    c = augmented_self(img, cfg, torch.Generator().manual_seed(8))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["target"], c["target"])


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        augmented_self(torch.zeros(1, 3, 32, 64), DataConfig(), torch.Generator())


# --- the opt-in hue rotation of a() (data.hue_rotation) ----------------------------------


def test_hue_rotation_off_keeps_the_papers_a_and_random_stream():
    """At the default hue_rotation = 0 the batch is the paper's a() and s() drawn exactly as
    before the option existed: the same draws, in the same order, and no extra one."""
    from paperlib.core.augment import random_tps, warp

    assert DataConfig().hue_rotation == 0.0
    img = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    cfg = DataConfig(no_reference_prob=0.5)
    gen = torch.Generator().manual_seed(11)
    out = augmented_self(img, cfg, gen)
    # The pre-option code path written out: offsets, TPS displacements, coin flips.
    ref_gen = torch.Generator().manual_seed(11)
    offset = (torch.rand(4, 3, 1, 1, generator=ref_gen) * 2 - 1) * (50.0 / 127.5)
    target = (img + offset).clamp(-1, 1)
    params, src = random_tps(4, cfg, ref_gen)
    has_ref = torch.rand(4, generator=ref_gen) >= 0.5
    reference = torch.where(has_ref.view(4, 1, 1, 1), warp(target, params, src), 0.0)
    assert torch.equal(out["target"], target)
    assert torch.equal(out["reference"], reference)
    assert torch.equal(out["has_reference"], has_ref)
    assert torch.equal(gen.get_state(), ref_gen.get_state())


def _hue_of(image):
    """Hue angle in degrees (B, H, W) of images in [-1, 1]."""
    from paperlib.core.color import srgb_to_lab

    lab = srgb_to_lab((image.double() + 1) / 2)
    return torch.rad2deg(torch.atan2(lab[:, 2], lab[:, 1]))


def _wrapped(deg):
    return (deg + 180) % 360 - 180


def _ring_colour(b):
    """(b, 3, 16, 16) one flat colour, L* 60, chroma 30, hue 0: in gamut at every hue."""
    from paperlib.core.color import lab_to_srgb

    lab = torch.tensor([60.0, 30.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    return (lab_to_srgb(lab).float() * 2 - 1).expand(b, 3, 16, 16).contiguous()


def test_hue_rotation_turns_target_and_reference_alike_by_the_drawn_angle():
    img = _ring_colour(6)
    cfg = DataConfig(color_jitter=0.0, tps_scale=0.0, hue_rotation=90.0)  # a() is the rotation
    out = augmented_self(img, cfg, torch.Generator().manual_seed(4))
    # The angles as drawn: the (zero-width) offsets first, then one angle per image.
    g = torch.Generator().manual_seed(4)
    torch.rand(6, 3, 1, 1, generator=g)
    angles = (torch.rand(6, generator=g) * 2 - 1) * 90.0  # (6,)
    turned = _wrapped(_hue_of(out["target"]) - _hue_of(img))  # (6, 16, 16)
    assert (turned - angles.view(6, 1, 1).double()).abs().max() < 0.5
    assert angles.abs().max() > 30  # the check above is not of near-zero angles
    # The reference is s(a(I)): with an identity warp it shows the same turned colours.
    assert (out["reference"] - out["target"]).abs().max() < 1e-4


def test_hue_rotation_angles_stay_in_range_and_cover_the_circle():
    img = _ring_colour(1).expand(2000, 3, 16, 16)[:, :, :1, :1]  # (2000, 3, 1, 1)
    narrow = color_shift(img, DataConfig(color_jitter=0.0, hue_rotation=30.0),
                         torch.Generator().manual_seed(0))
    d = _wrapped(_hue_of(narrow) - _hue_of(img)).flatten()
    assert d.abs().max() <= 30.5 and d.abs().max() > 29
    full = color_shift(img, DataConfig(color_jitter=0.0, hue_rotation=180.0),
                       torch.Generator().manual_seed(0))
    d = torch.deg2rad(_wrapped(_hue_of(full) - _hue_of(img)).flatten())
    assert abs(d.cos().mean()) < 0.06 and abs(d.sin().mean()) < 0.06
    assert d.min() < math.radians(-170) and d.max() > math.radians(170)


def test_scoring_builds_the_papers_pairs_whatever_the_training_levers():
    """A run trained with zero references or the hue turn is scored on the pairs of one
    trained without them: the same references and targets, the same random stream."""
    from dataclasses import replace

    from paperlib.core.augment import scoring_config

    image = torch.rand(4, 3, 32, 32) * 2 - 1
    plain = DataConfig()
    levers = replace(plain, hue_rotation=180.0, no_reference_prob=0.5)
    a = augmented_self(image, scoring_config(levers), torch.Generator().manual_seed(3), stride=8)
    b = augmented_self(image, plain, torch.Generator().manual_seed(3), stride=8)
    for k in ("reference", "target", "corr", "corr_mask", "has_reference"):
        assert torch.equal(a[k], b[k]), k
    # the levers do change the training pairs
    c = augmented_self(image, levers, torch.Generator().manual_seed(3), stride=8)
    assert not torch.equal(c["target"], b["target"])
