"""Shapes, aggregation properties, Table 2, gradients, bf16 and channels_last of the networks."""
from dataclasses import replace

import pytest
import torch

from paperlib.evaluation.complexity import count_params, encoder_table, forward_flops, table2_reference
from paperlib.config import ModelConfig
from paperlib.core.model import SCFT, AdaINAggregation, AddAggregation, Discriminator, Encoder, Generator


def small(**kw) -> ModelConfig:
    return replace(ModelConfig(width=0.25), **kw)


def inputs(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    sketch = torch.where(torch.rand(b, 1, size, size, generator=g) < 0.2, -1.0, 1.0)
    ref = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    return sketch, ref


@pytest.mark.parametrize("agg", ["scft", "add", "adain"])
@pytest.mark.parametrize("size", [32, 64])
def test_generator_output_shape_and_range(agg, size):
    torch.manual_seed(0)
    g = Generator(small(aggregation=agg))
    sketch, ref = inputs(size=size)
    rgb, aux = g(sketch, ref)
    assert rgb.shape == (2, 3, size, size)
    assert rgb.abs().max() <= 1.0
    if agg == "scft":
        p = (size // 16) ** 2
        c = g.enc_s.out_channels
        assert aux["query"].shape == (2, p, c) and aux["key"].shape == (2, p, c)
        assert "attention" not in aux
    else:
        assert aux == {}


def test_generator_256_small_width():
    torch.manual_seed(0)
    g = Generator(ModelConfig(width=0.125)).eval()
    sketch, ref = inputs(b=1, size=256)
    with torch.no_grad():
        rgb, aux = g(sketch, ref)
    assert rgb.shape == (1, 3, 256, 256)
    assert aux["query"].shape[1] == 16 * 16


def test_non_multiple_of_16_is_rejected():
    g = Generator(small())
    sketch, ref = inputs(size=40)
    with pytest.raises(ValueError, match="40x40"):
        g(sketch, ref)


def test_multi_layer_feature_has_992_channels_at_grid_size():
    enc = Encoder(ModelConfig(), 3)
    feats = enc(torch.randn(1, 3, 32, 48))
    v = enc.multi_layer(feats)
    assert v.shape == (1, 992, 2, 3)
    # phi is an average pool: the L1 part of cell (0, 0) is the mean over its 16x16 block.
    torch.testing.assert_close(v[0, :16, 0, 0], feats[0][0, :, :16, :16].mean(dim=(1, 2)))


def test_attention_rows_sum_to_one():
    torch.manual_seed(0)
    g = Generator(small())
    sketch, ref = inputs(size=64)
    _, aux = g(sketch, ref, return_attention=True)
    a = aux["attention"]
    assert a.shape == (2, 16, 16)  # (batch, sketch positions, reference positions)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 16))
    assert (a >= 0).all()


def test_attention_shape_with_differently_sized_maps():
    torch.manual_seed(0)
    scft = SCFT(8)
    _, aux = scft(torch.randn(2, 8, 2, 3), torch.randn(2, 8, 4, 5), return_attention=True)
    assert aux["attention"].shape == (2, 6, 20)


def test_sdpa_equals_explicit_formula():
    torch.manual_seed(0)
    scft = SCFT(24)
    torch.nn.init.normal_(scft.w_q.weight, 0, 0.3)  # sharp attention, not near uniform
    torch.nn.init.normal_(scft.w_k.weight, 0, 0.3)
    v_s, v_r = torch.randn(2, 24, 3, 4), torch.randn(2, 24, 3, 4)
    fast, aux_fast = scft(v_s, v_r)
    slow, aux = scft(v_s, v_r, return_attention=True)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    # Written out from Eq. 2-4 independently of the module's code path.
    s, r = v_s.flatten(2).transpose(1, 2), v_r.flatten(2).transpose(1, 2)
    q, k, v = s @ scft.w_q.weight.T, r @ scft.w_k.weight.T, r @ scft.w_v.weight.T
    a = torch.softmax(q @ k.transpose(1, 2) / 24 ** 0.5, dim=-1)
    assert a.max() > 0.5  # the check above is not trivially uniform
    expect = v_s + (a @ v).transpose(1, 2).reshape(2, 24, 3, 4)
    torch.testing.assert_close(fast, expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aux["attention"], a)
    torch.testing.assert_close(aux_fast["query"], q)


def _permute_positions(v, perm):
    b, c, h, w = v.shape
    return v.flatten(2)[:, :, perm].reshape(b, c, h, w)


def test_scft_invariant_to_reference_permutation():
    torch.manual_seed(0)
    scft = SCFT(16)
    v_s, v_r = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    perm = torch.randperm(16)
    out, _ = scft(v_s, v_r)
    out_p, _ = scft(v_s, _permute_positions(v_r, perm))
    torch.testing.assert_close(out, out_p, rtol=1e-5, atol=1e-6)


def test_add_depends_on_spatial_layout():
    v_s, v_r = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    out, _ = AddAggregation()(v_s, v_r)
    out_p, _ = AddAggregation()(v_s, _permute_positions(v_r, torch.randperm(16)))
    torch.testing.assert_close(out, v_s + v_r)
    assert not torch.allclose(out, out_p)


def test_adain_uses_reference_only_through_channel_stats():
    torch.manual_seed(0)
    v_s = torch.randn(2, 16, 4, 4)
    v_r = torch.randn(2, 16, 4, 4) * 3 + 1
    # Another reference with equal per-channel mean and std but different values: standardise
    # fresh noise and give it v_r's statistics.
    noise = torch.randn(2, 16, 4, 4)
    noise = (noise - noise.mean((2, 3), keepdim=True)) / noise.std((2, 3), keepdim=True, correction=0)
    v_r2 = noise * v_r.std((2, 3), keepdim=True, correction=0) + v_r.mean((2, 3), keepdim=True)
    assert not torch.allclose(v_r, v_r2)
    ada = AdaINAggregation()
    out, _ = ada(v_s, v_r)
    out2, _ = ada(v_s, v_r2)
    torch.testing.assert_close(out, out2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.mean((2, 3)), v_r.mean((2, 3)), rtol=1e-4, atol=1e-4)
    # ... and it does depend on those statistics.
    out3, _ = ada(v_s, v_r * 2)
    assert not torch.allclose(out, out3)


def test_zero_reference_path():
    torch.manual_seed(0)
    g = Generator(small()).eval()
    sketch, _ = inputs()
    with torch.no_grad():
        a, aux = g(sketch)
        b, _ = g(sketch, torch.zeros(2, 3, 32, 32))
    assert a.shape == (2, 3, 32, 32) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="reference"):
        g(sketch, torch.zeros(2, 3, 16, 16))


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    cfg = small()
    g, d = Generator(cfg), Discriminator(cfg)
    sketch, ref = inputs()
    rgb, aux = g(sketch, ref)
    logits = d(rgb, sketch)
    assert logits.shape[:2] == (2, 1)
    (logits.square().mean() + aux["query"].mean() * aux["key"].mean()).backward()
    for name, net in (("G", g), ("D", d)):
        for pname, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"


def test_discriminator_patch_map():
    d = Discriminator(ModelConfig(width=0.25))
    sketch, ref = inputs(b=1, size=64)
    # 64 -> 32 -> 16 -> 8 (three strided 4x4 convs) -> 7 -> 6 (two stride-1 4x4 convs)
    assert d(ref, sketch).shape == (1, 1, 6, 6)


def test_init_statistics():
    g = Generator(ModelConfig(width=0.5))
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    biases = [m.bias for m in g.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    assert all((b == 0).all() for b in biases)
    bn = torch.cat([m.weight for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.01 and 0.01 < bn.std().item() < 0.03


@pytest.mark.parametrize("in_channels", [1, 3])
def test_encoder_matches_table2(in_channels):
    table = encoder_table(ModelConfig(), in_channels)
    ref = table2_reference()
    assert len(table) == len(ref) == 10
    for got, want in zip(table, ref):
        want_in = in_channels if want["in"] == "C" else want["in"]
        assert (got["layer"], got["in"], got["out"], got["kernel"], got["stride"], got["padding"]) \
            == (want["layer"], want_in, want["out"], want["kernel"], want["stride"], want["padding"])
    expected = sum(9 * (in_channels if r["in"] == "C" else r["in"]) * r["out"] + r["out"] for r in ref)
    assert count_params(Encoder(ModelConfig(), in_channels)) == expected
    assert sum(r["params"] for r in table) == expected
    assert sum(r["out"] for r in ref) == 992


def test_flops_counter_counts_convs():
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    assert forward_flops(conv, torch.randn(1, 2, 8, 8)) == 2 * 2 * 4 * 9 * 64


def rel_err(got, want):
    return ((got.float() - want).norm() / want.norm()).item()


def test_bf16_autocast_agrees_with_fp32():
    torch.manual_seed(0)
    g = Generator(small())  # train mode: BN uses batch statistics, outputs are not trivially ~0
    sketch, ref = inputs(b=4)
    with torch.no_grad():
        fp32, aux32 = g(sketch, ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16, aux = g(sketch, ref)
    assert torch.isfinite(bf16).all()
    assert fp32.std() > 0.05  # a meaningful comparison
    # The encoders and SCFT stay within bf16 rounding (~2^-8 per op) ...
    assert rel_err(aux["query"], aux32["query"]) < 0.03
    # ... while each BN layer of a randomly initialised net amplifies the rounding (about x1.3 per
    # decoder stage here), so the image only agrees loosely.
    assert rel_err(bf16, fp32) < 0.4
    assert torch.nn.functional.cosine_similarity(bf16.float().flatten(), fp32.flatten(), 0) > 0.9


def test_channels_last_equals_contiguous():
    torch.manual_seed(0)
    g = Generator(small())
    d = Discriminator(small())
    sketch, ref = inputs()
    with torch.no_grad():
        a, _ = g(sketch, ref)
        da = d(a, sketch)
        g = g.to(memory_format=torch.channels_last)
        d = d.to(memory_format=torch.channels_last)
        cl = torch.channels_last
        b, _ = g(sketch.to(memory_format=cl), ref.to(memory_format=cl))
        db = d(b, sketch.to(memory_format=cl))
    # Equal up to float32 summation order (different conv kernels).
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(da, db, rtol=1e-3, atol=1e-4)


def test_kaiming_init_keeps_the_signal_through_the_encoder():
    from paperlib.config import ModelConfig
    from paperlib.core.model import Generator

    x = torch.rand(2, 3, 64, 64) * 2 - 1
    stds = {}
    for init in ("normal", "kaiming"):
        torch.manual_seed(0)
        G = Generator(ModelConfig(width=0.5, init=init))
        stds[init] = G.enc_r(x)[-1].std().item()
    assert stds["normal"] < 1e-4  # N(0, 0.02): ten layers shrink the input to almost nothing
    assert 0.05 < stds["kaiming"] < 20


def test_unknown_init_is_refused():
    from paperlib.config import ModelConfig
    from paperlib.core.model import Generator

    with pytest.raises(ValueError, match="model.init"):
        Generator(ModelConfig(init="xavier"))


def test_residual_block_state_dict_keys_are_those_of_earlier_snapshots():
    """Snapshots written before the residual convolutions became TapConv2d still load."""
    from paperlib.core.model import ResBlock

    assert list(ResBlock(8).state_dict()) == [
        "body.0.0.weight", "body.0.1.weight", "body.0.1.bias", "body.0.1.running_mean",
        "body.0.1.running_var", "body.0.1.num_batches_tracked", "body.1.weight", "body.2.weight",
        "body.2.bias", "body.2.running_mean", "body.2.running_var", "body.2.num_batches_tracked"]
