"""Stop-gradient attention (model.aggregation="sga", Li et al. ECCV 2022): the formula, column
normalisation, no gradient through the attention map, triplet supervision of the encoders,
the generator with it, and the config's refusal of sga with the L1 attention loss."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from paperlib.config import CHOICES, LossConfig, ModelConfig, check_config, override, smoke
from paperlib.core import losses
from paperlib.core.model import Generator, StopGradAttention


def small(**kw) -> ModelConfig:
    return replace(ModelConfig(width=0.25, aggregation="sga"), **kw)


def inputs(b=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    sketch = torch.where(torch.rand(b, 1, size, size, generator=g) < 0.2, -1.0, 1.0)
    ref = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    return sketch, ref


def features(c=12, seed=0, scale=2.0):
    """v_s (2, c, 3, 4), v_r (2, c, 2, 5): scaled so that the attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, c, 3, 4, generator=g) * scale,
            torch.randn(2, c, 2, 5, generator=g) * scale)


def manual_sga(module: StopGradAttention, v_s, v_r, detach_attention: bool):
    """The method written out independently of the module; with detach_attention=False the
    attention map stays in the graph (what SGA is designed not to do)."""
    b, c, h, w = v_s.shape
    x = v_s.flatten(2).transpose(1, 2)  # (B, P_s, C)
    y = v_r.flatten(2).transpose(1, 2)  # (B, P_r, C)
    logits = x @ y.transpose(1, 2) / math.sqrt(c)
    if detach_attention:
        logits = logits.detach()
    a = torch.softmax(logits, dim=-1)
    a = a / a.sum(dim=-2, keepdim=True)
    xq = F.leaky_relu(x @ module.w_q.weight.T + module.w_q.bias, 0.2)
    yv = F.leaky_relu(y @ module.w_v.weight.T + module.w_v.bias, 0.2)
    return (a @ yv + xq).transpose(1, 2).reshape(b, c, h, w), a


def randomise(module: StopGradAttention, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_shapes_and_aux():
    sga = StopGradAttention(12)
    v_s, v_r = features()
    v_s.requires_grad_(True)
    out, aux = sga(v_s, v_r, return_attention=True)
    assert out.shape == v_s.shape == (2, 12, 3, 4)
    assert aux["attention"].shape == (2, 12, 10)  # (batch, sketch positions, reference positions)
    # The raw features, flattened as the triplet loss expects (B, P, C), still in the graph.
    torch.testing.assert_close(aux["query"], v_s.flatten(2).transpose(1, 2))
    torch.testing.assert_close(aux["key"], v_r.flatten(2).transpose(1, 2))
    assert aux["query"].requires_grad
    _, aux_plain = sga(v_s, v_r)
    assert "attention" not in aux_plain and set(aux_plain) == {"query", "key"}


def test_attention_columns_sum_to_one():
    sga = StopGradAttention(12)
    v_s, v_r = features()
    _, aux = sga(v_s, v_r, return_attention=True)
    a = aux["attention"]
    torch.testing.assert_close(a.sum(dim=-2), torch.ones(2, 10))
    assert (a >= 0).all()
    # Rows are not normalised: with 12 sketch and 10 reference positions they cannot all be 1.
    assert not torch.allclose(a.sum(dim=-1), torch.ones(2, 12), atol=1e-3)


def test_forward_is_the_formula():
    torch.manual_seed(0)
    sga = StopGradAttention(12)
    randomise(sga)
    v_s, v_r = features()
    out, aux = sga(v_s, v_r, return_attention=True)
    expect, a = manual_sga(sga, v_s, v_r, detach_attention=True)
    assert a.max() > 0.3  # not trivially uniform (uniform columns would be 1/12)
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aux["attention"], a, rtol=1e-5, atol=1e-6)


def test_no_gradient_flows_through_the_attention_map():
    sga = StopGradAttention(12)
    randomise(sga)
    v_s, v_r = features()
    weight = torch.randn(2, 12, 3, 4, generator=torch.Generator().manual_seed(5))

    def grads(fn):
        a, b = v_s.clone().requires_grad_(True), v_r.clone().requires_grad_(True)
        (fn(a, b) * weight).sum().backward()
        return a.grad, b.grad

    got = grads(lambda a, b: sga(a, b)[0])
    stopped = grads(lambda a, b: manual_sga(sga, a, b, detach_attention=True)[0])
    through = grads(lambda a, b: manual_sga(sga, a, b, detach_attention=False)[0])
    for g, s, t in zip(got, stopped, through):
        torch.testing.assert_close(g, s, rtol=1e-5, atol=1e-5)
        # The A-path would have added gradient: the comparison above can fail.
        assert (t - s).abs().max() > 1e-2
    _, aux = sga(v_s.requires_grad_(True), v_r, return_attention=True)
    assert not aux["attention"].requires_grad


def test_triplet_loss_trains_the_encoders_of_an_sga_generator():
    torch.manual_seed(0)
    g = Generator(small(init="kaiming"))
    sketch, ref = inputs()
    rgb, aux = g(sketch, ref)
    p = aux["query"].shape[1]  # 16 positions on the 4x4 grid of 64 px
    corr = torch.randperm(p, generator=torch.Generator().manual_seed(0)).expand(2, p)
    mask = torch.ones(2, p, dtype=torch.bool)
    cfg = LossConfig(lambda_adv=0.0, lambda_perc=0.0, lambda_style=0.0)
    _, terms = losses.generator_loss(cfg, fake=rgb, target=ref, d_fake=None, aux=aux, corr=corr,
                                     corr_mask=mask, perceptual_net=None,
                                     generator=torch.Generator().manual_seed(1))
    assert terms["tr"] > 0
    tr = losses.triplet(aux["query"], aux["key"], corr, mask, cfg.margin,
                        torch.Generator().manual_seed(1))
    assert tr > 0
    tr.backward()
    for enc in (g.enc_s, g.enc_r):
        for name, param in enc.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_sga_generator_forward_backward():
    torch.manual_seed(0)
    g = Generator(small(leaky_slope=0.1))
    assert isinstance(g.aggregation, StopGradAttention) and g.aggregation.slope == 0.1
    sketch, ref = inputs(size=32)
    rgb, aux = g(sketch, ref, return_attention=True)
    assert rgb.shape == (2, 3, 32, 32) and rgb.abs().max() <= 1.0
    assert aux["attention"].shape == (2, 4, 4)
    rgb.square().mean().backward()
    for name, param in g.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{name} got no gradient"


def test_config_accepts_sga_and_refuses_it_with_the_l1_loss():
    assert "sga" in CHOICES["model.aggregation"]
    for loss in ("triplet", "none"):
        check_config(override(smoke(), {"model.aggregation": "sga",
                                        "loss.correspondence_loss": loss}))
    with pytest.raises(ValueError) as e:
        check_config(override(smoke(), {"model.aggregation": "sga",
                                        "loss.correspondence_loss": "l1"}))
    msg = str(e.value)
    assert "'sga'" in msg and "'l1'" in msg and "\n" not in msg
    check_config(override(smoke(), {"loss.correspondence_loss": "l1"}))  # SCFT + L1 stays valid


def test_sga_generator_under_bf16_autocast():
    """The mini profile trains in bf16: the detached map is still a column-normalised float32
    matrix and the output stays close to float32's."""
    torch.manual_seed(0)
    g = Generator(small(init="kaiming"))
    sketch, ref = inputs(b=2, size=32)
    with torch.no_grad():
        fp32, _ = g(sketch, ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16, aux = g(sketch, ref, return_attention=True)
    assert torch.isfinite(bf16).all() and aux["attention"].dtype == torch.float32
    torch.testing.assert_close(aux["attention"].sum(dim=-2), torch.ones(2, 4))
    assert torch.nn.functional.cosine_similarity(bf16.float().flatten(), fp32.flatten(), 0) > 0.9
