import numpy as np
import pytest
import torch

from paperlib.evaluation import fid


def synthetic_images(n: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    """Flat-coloured discs and bars on white, as (n, 3, size, size) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs = np.ones((n, size, size, 3))
    for img in imgs:
        for _ in range(3):
            cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [int(rng.integers(4, size // 3))]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.random(3)
        row = int(rng.integers(0, size - 6))
        img[row:row + 4, :] = rng.random(3)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() * 2 - 1


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return fid.convert_fid_weights(tmp_path_factory.mktemp("fid") / fid.CONVERTED_NAME)


@pytest.fixture(scope="module")
def model(converted):
    return fid.inception(weights=converted)


def test_conversion_matches_torchscript_features_and_fid(converted, model):
    x = synthetic_images(6)
    ours = fid.activations([x[:4], x[4:]], model)  # iterable of batches
    theirs = fid.torchscript_features((x + 1) / 2).double().numpy()
    assert ours.shape == (6, 2048)
    assert np.abs(ours).max() > 0.1  # real features, not zeros
    assert np.abs(ours - theirs).max() < 1e-5
    a, b = fid.fid_from_activations(ours[:3], ours[3:]), fid.fid_from_activations(theirs[:3], theirs[3:])
    assert a > 1.0
    assert abs(a - b) / a < 1e-6
    assert fid.activations(x[:2], model) == pytest.approx(ours[:2], abs=1e-5)  # tensor input


def test_conversion_exact_in_float64(converted):
    # Same network, same preprocessing: in float64 only summation order differs.
    x01 = (synthetic_images(4, seed=3).double() + 1) / 2
    with torch.no_grad():
        ours = fid.inception(weights=converted).double()(x01)[0].flatten(1).numpy()  # (4, 2048)
    theirs = fid.torchscript_features(x01).numpy()
    assert np.abs(ours - theirs).max() < 1e-10
    a, b = fid.fid_from_activations(ours[:2], ours[2:]), fid.fid_from_activations(theirs[:2], theirs[2:])
    assert abs(a - b) / a < 1e-10


def test_evaluations_share_one_network_that_computes_what_a_fresh_one_does():
    """evaluate and activations' default take one network per process and device, however the
    device is spelt; its features are those of a network built for the caller alone."""
    shared = fid.shared_inception()
    assert shared is fid.shared_inception("cpu") is fid.shared_inception(torch.device("cpu"))
    x = synthetic_images(2, seed=5)
    assert np.array_equal(fid.activations(x, progress=False),
                          fid.activations(x, fid.inception(), progress=False))


def test_wrong_branch_assignment_changes_features(converted, model):
    # Two same-shape branches swapped still load; the features must then differ clearly.
    sd = fid.fid_state_dict(converted)
    for t in ("conv.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        a, b = f"Mixed_7c.branch3x3_2a.{t}", f"Mixed_7c.branch3x3dbl_3a.{t}"
        sd[a], sd[b] = sd[b].clone(), sd[a].clone()
    torch.save({k: v for k, v in sd.items() if not k.startswith("fc.")}, converted.parent / "swapped.pth")
    swapped = fid.inception(weights=converted.parent / "swapped.pth")
    x = synthetic_images(2, seed=1)
    diff = np.abs(fid.activations(x, model) - fid.activations(x, swapped)).max()
    assert diff > 1e-2


def test_conversion_is_idempotent_and_checked(converted):
    mtime = converted.stat().st_mtime_ns
    assert fid.convert_fid_weights(converted) == converted
    assert converted.stat().st_mtime_ns == mtime
    ts = dict(fid.load_torchscript().state_dict())
    missing = dict(ts)
    missing.pop("net.layers.mixed_4.tower_1.conv_3.mean")
    with pytest.raises(KeyError, match="unfilled"):
        fid.convert_state(missing)
    unknown = dict(ts)
    unknown["net.layers.mixed_9.tower_3_conv.weight"] = unknown["net.layers.mixed_9.conv.weight"]
    with pytest.raises(KeyError, match="tower_3_conv"):
        fid.convert_state(unknown)


def test_original_weights_preferred_and_compared(converted, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("PAPERLIB_CACHE", str(converted.parent.parent))
    (converted.parent.parent / "fid").mkdir(exist_ok=True)
    assert fid.original_weights_path() is None and fid.compare_with_original() is None
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / fid.ORIGINAL_NAME).write_bytes(converted.read_bytes())
    assert "original" in fid.network_name()
    assert fid.compare_with_original(n_images=1) < 1e-6


def test_frechet_distance_analytic():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(8, 8))
    cov = m @ m.T + np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    assert abs(fid.frechet_distance(mu1, cov, mu1, cov)) < 1e-8
    assert fid.frechet_distance(mu1, cov, mu2, cov) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-8)
    assert fid.frechet_distance(mu1, cov, mu1, 4 * cov) == pytest.approx(np.trace(cov), rel=1e-8)


@pytest.mark.parametrize("n", [6, 40])  # rank-deficient and full-rank covariances
def test_lowrank_fid_matches_pytorch_fid(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(n, 16)), rng.normal(size=(n + 3, 16)) * 1.5 + 0.3
    ref = fid.frechet_distance(*fid.stats(a), *fid.stats(b))  # pytorch-fid's sqrtm path
    assert fid.fid_lowrank(a, b) == pytest.approx(ref, rel=1e-5)


def test_kid_sees_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 32)), rng.normal(size=(200, 32))
    same, same_sd = fid.kid(a, b, subsets=20, subset_size=100)
    shifted, _ = fid.kid(a, b + 0.5, subsets=20, subset_size=100)
    assert abs(same) < 3 * same_sd + 1e-3
    assert shifted > 10 * max(abs(same), same_sd)


def test_kid_from_full_kernels_equals_kid_from_subset_products(monkeypatch):
    """The full kernel matrices are a speed-up only: each subset's blocks are the products
    the per-subset path computes, drawn with the same generator."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(90, 24)), rng.normal(size=(70, 24)) + 0.2
    full = fid.kid(a, b, subsets=15, subset_size=30, seed=4)
    monkeypatch.setattr(fid, "KID_FULL_KERNEL", 10)  # both sets larger: per-subset products
    per_subset = fid.kid(a, b, subsets=15, subset_size=30, seed=4)
    assert full == pytest.approx(per_subset, rel=1e-12)
    assert full != fid.kid(a, b, subsets=15, subset_size=30, seed=5)


def test_reference_activations_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    acts = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    calls = []

    def compute():
        calls.append(1)
        return acts

    key = {"dataset": "openmoji", "split": "test", "resolution": 64}
    assert fid.cached_reference_activations(key) is None
    assert np.allclose(fid.reference_activations(key, compute), acts)
    assert np.allclose(fid.cached_reference_activations(key), acts)  # read without computing
    assert np.allclose(fid.reference_activations(key, compute), acts)
    assert len(calls) == 1  # second call served from the cache
    fid.reference_activations({**key, "resolution": 128}, compute)
    assert len(calls) == 2  # any key change recomputes
    with pytest.raises(KeyError, match="split"):
        fid.reference_activations({"dataset": "openmoji", "resolution": 64}, compute)


def test_conversion_on_real_rendered_emoji(model, tmp_path, monkeypatch):
    """The same agreement on real OpenMoji renders (six emoji rendered at 64 px)."""
    from paperlib.config import DataConfig
    from paperlib.data.openmoji import load_openmoji

    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    data = load_openmoji(DataConfig(resolution=64), limit=6)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 127.5 - 1  # (6,3,64,64)
    ours = fid.activations(x, model)
    theirs = fid.torchscript_features((x + 1) / 2).double().numpy()
    assert np.abs(ours - theirs).max() < 1e-5
    a, b = fid.fid_from_activations(ours[:3], ours[3:]), fid.fid_from_activations(theirs[:3], theirs[3:])
    assert a > 1.0 and abs(a - b) / a < 1e-6


def test_a_smaller_input_is_pytorch_fids_resize_to_that_size():
    """The smoke profile's Inception at 75 pixels: the network built for that size takes its
    input as it comes, and activations resizes as pytorch-fid does to 299."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    small = fid.inception(size=75)
    assert not small.resize_input and fid.inception().resize_input
    x01 = torch.nn.functional.interpolate((x + 1) / 2, size=(75, 75), mode="bilinear",
                                          align_corners=False)
    with torch.no_grad():
        want = small(x01)[0].flatten(1).double().numpy()  # (2, 2048)
    got = fid.activations(x, small, progress=False, size=75)
    assert got.shape == (2, 2048) and np.array_equal(got, want)
    assert np.abs(got - fid.activations(x, progress=False)).max() > 1e-3  # 299 is another input
    with pytest.raises(ValueError, match=r"size 75 need the network built for it"):
        fid.activations(x, fid.inception(), progress=False, size=75)
    assert fid.shared_inception(size=75) is fid.shared_inception("cpu", 75)
