"""The tap-by-tap residual convolution is the same convolution as F.conv2d, with its gradients."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from paperlib.core import tapconv
from paperlib.config import get_profile
from paperlib.core.model import Generator
from paperlib.core.tapconv import TapConv2d, tap_conv3x3, to_tap_layout, uses_taps

SIZES = [(4, 4), (1, 1), (1, 5), (3, 2), (2, 4), (6, 6)]


@pytest.mark.parametrize("h,w", SIZES)
def test_equals_conv2d_with_padding_1_in_float64(h, w):
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(3, 5, h, w, dtype=torch.float64, generator=g)
    weight = torch.randn(7, 5, 3, 3, dtype=torch.float64, generator=g)
    torch.testing.assert_close(tap_conv3x3(x, weight), F.conv2d(x, weight, padding=1),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("h,w", SIZES)
def test_gradients_pass_gradcheck(h, w):
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(tap_conv3x3, (x, weight))


def test_gradients_equal_conv2d_gradients_for_channels_last_input_and_tap_layout_weight():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 6, 4, 4, dtype=torch.float64, generator=g)
    w0 = torch.randn(5, 6, 3, 3, dtype=torch.float64, generator=g)
    up = torch.randn(4, 5, 4, 4, dtype=torch.float64, generator=g)
    x = x0.contiguous(memory_format=torch.channels_last).requires_grad_()
    w = w0.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1).requires_grad_()
    (tap_conv3x3(x, w) * up).sum().backward()
    xr, wr = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    (F.conv2d(xr, wr, padding=1) * up).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-12, atol=1e-12)
    assert w.grad.stride() == w.stride()  # returned in the weight's layout, no copy on accumulate


def test_bf16_error_is_that_of_the_dense_bf16_convolution():
    """bf16 products with float32 sums: no further from the float64 result than oneDNN's bf16
    convolution is (within a factor of 1.5 on the largest and the mean error)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 496, 4, 4, dtype=torch.float64, generator=g)
    weight = torch.randn(496, 496, 3, 3, dtype=torch.float64, generator=g) * 0.02
    exact = F.conv2d(x, weight, padding=1)
    xb, wb = x.bfloat16(), weight.bfloat16()
    dense = (F.conv2d(xb, wb, padding=1).double() - exact).abs()
    taps = (tap_conv3x3(xb, weight.float()).double() - exact).abs()
    assert taps.max() <= 1.5 * dense.max()
    assert taps.mean() <= 1.5 * dense.mean()
    assert taps.mean() > 0  # it did run in bf16


def test_module_keeps_conv2d_parameters_and_takes_the_tap_path_only_where_it_is_faster():
    conv = TapConv2d(8, 6)
    plain = nn.Conv2d(8, 6, 3, padding=1, bias=False)
    assert {k: v.shape for k, v in conv.state_dict().items()} == \
        {k: v.shape for k, v in plain.state_dict().items()}
    assert uses_taps(torch.zeros(2, tapconv.MIN_TAP_CHANNELS, 4, 4))
    assert not uses_taps(torch.zeros(2, tapconv.MIN_TAP_CHANNELS - 1, 4, 4))
    assert not uses_taps(torch.zeros(2, tapconv.MIN_TAP_CHANNELS, 8, 8))
    assert not uses_taps(torch.zeros(2, tapconv.MIN_TAP_CHANNELS, 4, 4, device="meta"))


@pytest.mark.parametrize("channels,hw", [(384, 4), (384, 8), (16, 4)])
def test_module_output_matches_conv2d_on_either_path(channels, hw):
    torch.manual_seed(0)
    conv = to_tap_layout(TapConv2d(channels, 32).double())
    x = torch.randn(2, channels, hw, hw, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, padding=1), rtol=1e-10, atol=1e-10)


def test_module_under_autocast_gives_bf16_close_to_the_autocast_conv2d():
    torch.manual_seed(0)
    conv = to_tap_layout(TapConv2d(384, 64))
    x = torch.randn(4, 384, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        ref = F.conv2d(x, conv.weight, padding=1)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref.float(), rtol=0.02, atol=0.02)
    y.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and conv.weight.grad.stride() == conv.weight.stride()


def test_tap_layout_survives_module_conversions_and_copies():
    conv = to_tap_layout(TapConv2d(4, 3))
    tap_stride = conv.weight.stride()
    assert conv.weight.permute(2, 3, 0, 1).is_contiguous()
    values = conv.weight.detach().clone()
    conv.to(memory_format=torch.channels_last)
    assert conv.weight.stride() == tap_stride
    conv.float().cpu()
    assert conv.weight.stride() == tap_stride
    assert copy.deepcopy(conv).weight.stride() == tap_stride
    torch.testing.assert_close(conv.weight.detach(), values, rtol=0, atol=0)


def test_generator_weights_are_drawn_as_before_the_tap_layout(monkeypatch):
    """The layout is set after the init, so a seed gives the weights a generator without the
    layout step draws."""
    import paperlib.core.model as model

    cfg = get_profile("smoke").model
    torch.manual_seed(3)
    G = Generator(cfg)
    skipped = []
    monkeypatch.setattr(model, "to_tap_layout", lambda m: skipped.append(m) or m)
    torch.manual_seed(3)
    G_plain = Generator(cfg)
    assert skipped
    for (k, a), (_, b) in zip(G.state_dict().items(), G_plain.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    convs = [m for m in G.modules() if isinstance(m, TapConv2d)]
    assert len(convs) == 2 * cfg.n_res_blocks
    assert all(m.weight.permute(2, 3, 0, 1).is_contiguous() for m in convs)
    assert not any(m.weight.permute(2, 3, 0, 1).is_contiguous()
                   for m in G_plain.modules() if isinstance(m, TapConv2d))


def test_resumed_adam_moments_take_the_parameter_layout():
    """Moments saved in another layout (a checkpoint from before the tap layout) are re-laid
    out on resume; the fused Adam step then equals the step of a plain contiguous parameter."""
    from paperlib.training.checkpoint import match_state_layout

    torch.manual_seed(0)
    values, grad = torch.randn(5, 6, 3, 3), torch.randn(5, 6, 3, 3)
    moments = {"step": torch.tensor(3.0), "exp_avg": torch.randn(5, 6, 3, 3),
               "exp_avg_sq": torch.rand(5, 6, 3, 3)}

    def step(param, fix):
        opt = torch.optim.Adam([param], lr=0.1, fused=True)
        opt.load_state_dict({"state": {0: {k: v.clone() for k, v in moments.items()}},
                             "param_groups": opt.state_dict()["param_groups"]})
        if fix:
            match_state_layout(opt)
        param.grad = torch.empty_like(param).copy_(grad)
        opt.step()
        return param.detach()

    expected = step(nn.Parameter(values.clone()), fix=False)
    tap = lambda: nn.Parameter(values.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1))
    torch.testing.assert_close(step(tap(), fix=True), expected)
    # without the fix the fused kernel pairs the wrong elements (why the fix exists)
    assert not torch.allclose(step(tap(), fix=False), expected)


def test_a_generator_moved_off_the_cpu_gets_an_ordinary_weight():
    conv = to_tap_layout(TapConv2d(4, 3))
    conv.to("meta")
    assert conv.weight.is_contiguous()
    conv.to_empty(device="cpu")
    assert conv.weight.permute(2, 3, 0, 1).is_contiguous()
