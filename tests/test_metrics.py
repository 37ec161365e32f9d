import math

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from paperlib.evaluation import metrics


def textured_pair(seed: int = 0, size: int = 40):
    """Two related images in [-1, 1], (2, 3, size, size): smooth pattern and a noisy copy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], 0) * 0.8
    x = np.stack([base, np.roll(base, 3, axis=2)])
    y = np.clip(x + rng.normal(0, 0.15, x.shape), -1, 1)
    return torch.from_numpy(x).float(), torch.from_numpy(y).float()


def test_ssim_identity_and_skimage_reference():
    x, y = textured_pair()
    assert metrics.ssim(x, x) == pytest.approx([1.0, 1.0], abs=1e-12)
    ours = metrics.ssim(x, y)
    for i in range(2):
        a = ((x[i].permute(1, 2, 0).double().numpy() + 1) / 2)
        b = ((y[i].permute(1, 2, 0).double().numpy() + 1) / 2)
        ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, data_range=1.0,
                                    use_sample_covariance=False, channel_axis=-1)
        assert ours[i] == pytest.approx(ref, abs=1e-6)
    assert 0.2 < ours.min() < 0.99


def test_psnr_constant_offset_and_skimage():
    x, y = textured_pair(1)
    x01 = x * 0.5  # stays inside [-1, 1] after the offset
    shifted = x01 + 0.2  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    assert metrics.psnr(x01, shifted) == pytest.approx([20.0, 20.0], abs=1e-4)
    ref = peak_signal_noise_ratio(((x[0] + 1) / 2).double().numpy(), ((y[0] + 1) / 2).double().numpy(),
                                  data_range=1.0)
    assert metrics.psnr(x, y)[0] == pytest.approx(ref, rel=1e-6)
    assert math.isinf(metrics.psnr(x, x)[0])


def region_scene(size: int = 48):
    """Sketch with 3 closed regions (left box, right box, disc), one 2x2 closed speck, an
    outer background and an open region touching the border; the target fills each region."""
    paper = np.ones((size, size), bool)
    paper[8, 8:41] = paper[40, 8:41] = False  # box top/bottom
    paper[8:41, 8] = paper[8:41, 40] = paper[8:41, 24] = False  # box sides and divider
    yy, xx = np.mgrid[:size, :size]
    ring = np.abs(np.hypot(yy - 24, xx - 32) - 5) < 0.8
    paper[ring] = False  # a disc inside the right box
    paper[2:6, 2:6] = False
    paper[3:5, 3:5] = True  # closed 2x2 speck
    paper[44:, 20] = False  # a stroke that meets the border: regions beside it stay open
    sketch = torch.from_numpy(np.where(paper, 1.0, -1.0)).float()[None]  # (1, H, W)
    img = np.ones((size, size, 3)) * 0.95
    img[9:40, 9:24] = (0.8, 0.2, 0.2)
    img[9:40, 25:40] = (0.2, 0.3, 0.8)
    img[np.hypot(yy - 24, xx - 32) < 4.2] = (0.9, 0.8, 0.1)
    img[~paper] = 0.0
    target = torch.from_numpy(img).permute(2, 0, 1).float() * 2 - 1  # (3, H, W)
    return sketch, target


def test_region_color_error_zero_for_ground_truth_and_local_change():
    sketch, target = region_scene()
    labels = metrics.sketch_regions(sketch, min_region_px=8)
    assert labels.max() == 3  # outer background, open region and speck dropped
    r = metrics.region_color_error(target, target, sketch, min_region_px=8)
    assert r["n_regions"] == 3 and r["mean_de"] == pytest.approx(0, abs=1e-9)
    assert r["share_below_jnd"] == 1.0
    # Repaint the left box only.
    changed = target.clone()
    left = torch.zeros_like(changed[0], dtype=torch.bool)
    left[9:40, 9:24] = True
    changed[:, left] = torch.tensor([0.2, 0.6, 0.2])[:, None] * 2 - 1
    r = metrics.region_color_error(changed, target, sketch, min_region_px=8)
    lid = int(r["labels"][20, 15]) - 1
    assert r["region_de"][lid] > 20
    assert np.all(np.delete(r["region_de"], lid) < 1e-9)
    assert r["share_below_jnd"] == pytest.approx(2 / 3)
    area = r["region_area"]
    assert r["mean_de_area"] == pytest.approx(r["region_de"][lid] * area[lid] / area.sum())
    assert r["mean_de"] == pytest.approx(r["region_de"][lid] / 3)
    # A slightly stronger change gives a larger error.
    more = target.clone()
    more[:, left] = torch.tensor([0.1, 0.8, 0.1])[:, None] * 2 - 1
    assert metrics.region_color_error(more, target, sketch, 8)["mean_de"] > r["mean_de"]


def test_region_color_error_batch_pools_regions():
    sketch, target = region_scene()
    changed = target.clone()
    changed[:, 9:40, 9:24] = 0.0
    out = torch.stack([target, changed])
    tgt = torch.stack([target, target])
    blank = torch.ones_like(sketch)
    r = metrics.region_color_error(out, tgt, torch.stack([sketch, sketch]), min_region_px=8)
    single = metrics.region_color_error(changed, target, sketch, min_region_px=8)
    assert r["n_regions"] == 6 and r["n_images"] == 2 and r["images_without_regions"] == 0
    assert r["mean_de"] == pytest.approx(single["mean_de"] / 2)
    r = metrics.region_color_error(out, tgt, torch.stack([sketch, blank]), min_region_px=8)
    assert r["n_regions"] == 3 and r["images_without_regions"] == 1


def test_palette_distance_properties():
    _, target = region_scene()
    a = target
    assert metrics.palette_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert metrics.palette_distance(a, torch.roll(a, 5, dims=2)) == pytest.approx(0, abs=1e-9)
    b = (a + torch.tensor([0.1, -0.1, 0.0])[:, None, None]).clamp(-1, 1)
    c = (a + torch.tensor([0.3, -0.3, 0.0])[:, None, None]).clamp(-1, 1)
    d_ab, d_ba, d_ac = (metrics.palette_distance(a, b), metrics.palette_distance(b, a),
                        metrics.palette_distance(a, c))
    assert d_ab == pytest.approx(d_ba, rel=1e-9)
    assert 0 < d_ab < d_ac
    batch = metrics.palette_distance(torch.stack([a, a]), torch.stack([a, c]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(0, abs=1e-9)
    assert batch[1] == pytest.approx(d_ac)
    white = torch.ones_like(a)
    assert math.isnan(metrics.palette_distance(white, a))


def test_wasserstein_1d_is_scipys_distance_per_column():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(2)
    # rounded values: ties inside and across the samples; unequal sizes
    a = np.round(rng.normal(size=(57, 4)), 1)
    b = np.round(rng.normal(size=(31, 4)) * 2 + 0.5, 1)
    want = [wasserstein_distance(a[:, k], b[:, k]) for k in range(4)]
    assert metrics.wasserstein_1d(a, b) == pytest.approx(want, rel=1e-12, abs=1e-12)
    # palette-sized columns (numpy sorts long rows with another, unstable algorithm), with
    # ties: the order inside a tie must not matter
    big_a = np.round(rng.normal(size=(3000, 3)) * 20, 0)
    big_b = np.round(rng.normal(size=(2500, 3)) * 25 + 4, 0)
    want = [wasserstein_distance(big_a[:, k], big_b[:, k]) for k in range(3)]
    assert metrics.wasserstein_1d(big_a, big_b) == pytest.approx(want, rel=1e-12, abs=1e-12)
    # analytic: a shift by 3 moves every quantile by 3
    assert metrics.wasserstein_1d(a, a + 3) == pytest.approx([3.0] * 4)
    with pytest.raises(ValueError, match=r"\(0, 4\)"):
        metrics.wasserstein_1d(a[:0], b)


def filled_scene(lab_colour):
    """region_scene's sketch with every pixel but the ink painted one Lab colour, (3, H, W)
    float64 in [-1, 1]."""
    sketch, _ = region_scene()
    rgb = lab2rgb(np.asarray(lab_colour, np.float64)[None, None])[0, 0]  # (3,)
    assert np.allclose(rgb2lab(rgb[None, None])[0, 0], lab_colour, atol=1e-6)  # in the sRGB gamut
    img = np.broadcast_to(rgb, (sketch.shape[1], sketch.shape[2], 3)).copy()
    img[sketch[0].numpy() < 0] = 0.0
    return sketch, torch.from_numpy(img).permute(2, 0, 1) * 2 - 1


def test_region_error_split_pure_lightness_shift():
    sketch, a = filled_scene((55.0, 20.0, -25.0))
    _, b = filled_scene((65.0, 20.0, -25.0))
    r = metrics.region_color_error(a, b, sketch, min_region_px=8)
    assert r["n_regions"] == 3
    assert r["mean_dl"] == pytest.approx(10.0, abs=1e-4)
    assert r["mean_dc"] == pytest.approx(0.0, abs=1e-4)
    assert r["mean_dh"] == pytest.approx(0.0, abs=2e-3)  # sqrt of a rounding residue
    assert r["mean_de"] > 5  # the existing key still measures the difference


def test_region_error_split_pure_hue_rotation():
    chroma, h1, angle = 30.0, math.radians(40), math.radians(50)
    lab = [(60.0, chroma * math.cos(h), chroma * math.sin(h)) for h in (h1, h1 + angle)]
    sketch, a = filled_scene(lab[0])
    _, b = filled_scene(lab[1])
    r = metrics.region_color_error(a, b, sketch, min_region_px=8)
    assert r["mean_dl"] == pytest.approx(0.0, abs=1e-4)
    assert r["mean_dc"] == pytest.approx(0.0, abs=1e-4)
    assert r["mean_dh"] == pytest.approx(2 * chroma * math.sin(angle / 2), abs=1e-4)
    batch = metrics.region_color_error(torch.stack([a, a]), torch.stack([b, a]),
                                       torch.stack([sketch, sketch]), min_region_px=8)
    assert batch["mean_dh"] == pytest.approx(r["mean_dh"] / 2, abs=1e-4)  # equal areas


def test_lch_differences_add_up_to_de76():
    rng = np.random.default_rng(0)
    a = rng.uniform([0, -60, -60], [100, 60, 60], (50, 3))
    b = rng.uniform([0, -60, -60], [100, 60, 60], (50, 3))
    d = metrics.lch_differences(a, b)
    assert d.shape == (50, 3) and (d >= 0).all()
    assert (d ** 2).sum(1) == pytest.approx(((a - b) ** 2).sum(1), rel=1e-9)
    with pytest.raises(ValueError, match="Lab"):
        metrics.lch_differences(a, b[:, :2])


def test_reference_gain_is_nan_safe():
    assert metrics.reference_gain([10.0, 14.0, np.nan], [2.0, 4.0]) == pytest.approx(9.0)
    assert metrics.reference_gain([3.0], [3.0]) == 0.0
    assert math.isnan(metrics.reference_gain([], [1.0]))
    assert math.isnan(metrics.reference_gain([np.nan], [1.0]))


def test_palette_follow_ratio():
    assert metrics.palette_follow_ratio([1.0, 3.0, np.nan], [4.0, 4.0]) == pytest.approx(0.5)
    assert metrics.palette_follow_ratio([5.0], [5.0]) == 1.0
    with pytest.raises(ValueError, match="dist_own"):
        metrics.palette_follow_ratio([], [1.0])
    with pytest.raises(ValueError, match="dist_other"):
        metrics.palette_follow_ratio([1.0], [np.nan, np.nan])
    with pytest.raises(ValueError, match="undefined"):
        metrics.palette_follow_ratio([1.0], [0.0])


def test_region_error_by_size_bins_by_area():
    from paperlib.evaluation.metrics import region_error_by_size

    de = np.array([10.0, 20.0, 4.0, 6.0])
    lch = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0], [0.0, 0.0, 4.0], [0.0, 0.0, 6.0]])
    area = np.array([10.0, 50.0, 300.0, 2000.0])
    rows = region_error_by_size(de, lch, area, edges=(0, 64, 1024, np.inf))
    assert [r["n_regions"] for r in rows] == [2, 1, 1]
    assert rows[0]["mean_de"] == pytest.approx(15.0) and rows[0]["mean_dh"] == pytest.approx(4.0)
    assert rows[0]["mean_dl"] == pytest.approx(2.0) and rows[0]["mean_dc"] == pytest.approx(3.0)
    assert rows[0]["share_regions"] == pytest.approx(0.5)
    assert rows[2]["share_area"] == pytest.approx(2000 / 2360)
    assert sum(r["share_area"] for r in rows) == pytest.approx(1.0)
    # an empty bin has no mean, and the default bins follow the 16-pixel feature cells
    empty = region_error_by_size(de, lch, area, edges=(0, 5, np.inf))[0]
    assert empty["n_regions"] == 0 and np.isnan(empty["mean_de"])
    assert [r["area_to"] for r in region_error_by_size(de, lch, area)][:3] == [64, 256, 1024]


def test_region_error_by_size_refuses_bad_input():
    from paperlib.evaluation.metrics import region_error_by_size

    with pytest.raises(ValueError, match="disagree in length"):
        region_error_by_size([1.0, 2.0], [[0, 0, 0]], [5.0, 6.0])
    with pytest.raises(ValueError, match="edges must increase"):
        region_error_by_size([1.0], [[0, 0, 0]], [5.0], edges=(0, 10, 10))


# --- chroma_transfer ---------------------------------------------------------------------


def coloured_ab(n=400, seed=0):
    """(n, 2) target (a*, b*) spread over the plane, every chroma above 15."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    chroma = rng.uniform(15, 60, n)
    return np.stack([chroma * np.cos(angle), chroma * np.sin(angle)], axis=1)


def rotation(deg):
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def test_chroma_transfer_identity_and_rotation():
    tgt = coloured_ab()
    m, c = metrics.chroma_transfer(tgt, tgt)
    np.testing.assert_allclose(m, np.eye(2), atol=1e-10)
    np.testing.assert_allclose(c, 0.0, atol=1e-9)
    r = rotation(35.0)
    m, c = metrics.chroma_transfer(tgt @ r.T, tgt)  # each output (a*, b*) = R @ target's
    np.testing.assert_allclose(m, r, atol=1e-10)
    np.testing.assert_allclose(c, 0.0, atol=1e-9)
    # images (H, W, 2) are accepted as well as pixel lists
    m, _ = metrics.chroma_transfer((tgt @ r.T).reshape(20, 20, 2), tgt.reshape(20, 20, 2))
    np.testing.assert_allclose(m, r, atol=1e-10)


def test_chroma_transfer_constant_output_a_gives_a_zero_first_row():
    tgt = coloured_ab()
    out = tgt.copy()
    out[:, 0] = 7.0  # the output's a* ignores the target
    m, c = metrics.chroma_transfer(out, tgt)
    np.testing.assert_allclose(m[0], [0.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(m[1], [0.0, 1.0], atol=1e-10)
    assert c[0] == pytest.approx(7.0)


def test_chroma_transfer_ignores_pixels_below_the_chroma_threshold():
    tgt = coloured_ab()
    rng = np.random.default_rng(1)
    grey = rng.uniform(-6, 6, (300, 2))  # chroma below 10 (at most 6 * sqrt(2))
    junk = rng.uniform(-80, 80, (300, 2))  # outputs there say nothing about the fit
    m, c = metrics.chroma_transfer(np.concatenate([tgt, junk]), np.concatenate([tgt, grey]))
    np.testing.assert_allclose(m, np.eye(2), atol=1e-10)
    # with the threshold at 0 the same pixels do count and spoil the identity
    m0, _ = metrics.chroma_transfer(np.concatenate([tgt, junk]), np.concatenate([tgt, grey]),
                                    min_chroma=0.0)
    assert np.abs(m0 - np.eye(2)).max() > 0.01


def test_chroma_transfer_refuses_too_few_or_degenerate_pixels():
    tgt = coloured_ab(5)
    with pytest.raises(ValueError, match="5 pixels of the target have chroma above 10"):
        metrics.chroma_transfer(tgt, tgt)
    line = np.stack([np.linspace(20, 50, 40), np.linspace(20, 50, 40)], axis=1)  # one hue line
    with pytest.raises(ValueError, match="one line"):
        metrics.chroma_transfer(line, line)
    with pytest.raises(ValueError, match="equal shape"):
        metrics.chroma_transfer(coloured_ab(10), coloured_ab(12))


def test_chroma_transfer_batch_on_images():
    from paperlib.core.color import lab_to_srgb, rotate_hue

    # Flat patches of L* 60, chroma 30 at 16 hues (in the sRGB gamut at every rotation).
    h = torch.arange(16, dtype=torch.float64) * (2 * math.pi / 16)
    lab = torch.stack([torch.full_like(h, 60.0), 30 * h.cos(), 30 * h.sin()]).view(1, 3, 4, 4)
    target = (lab_to_srgb(lab).repeat_interleave(4, -1).repeat_interleave(4, -2) * 2 - 1)
    target = target.float().expand(2, 3, 16, 16).contiguous()  # (2, 3, 16, 16)
    same = metrics.chroma_transfer_batch(target, target)
    np.testing.assert_allclose(same["matrix"], np.eye(2), atol=1e-9)
    assert same["n_pixels"] == 2 * 16 * 16
    turned = rotate_hue(target, torch.tensor([40.0, 40.0]))
    got = metrics.chroma_transfer_batch(turned, target)
    # our torch Lab and skimage's differ in the 4th decimal of the constants
    np.testing.assert_allclose(got["matrix"], rotation(40.0), atol=0.02)
    with pytest.raises(ValueError, match="equal shape"):
        metrics.chroma_transfer_batch(target, target[:1])
