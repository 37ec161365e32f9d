"""The residual blocks' 3x3 convolution on CPU, computed tap by tap without the zero padding.

At the `mini` profile's 4x4 bottleneck a 3x3, padding-1 convolution multiplies zeros for 44 of
every 144 (position, tap) pairs: a border position has only 4 or 6 of its 9 taps inside the map.
oneDNN's convolution (like an im2col product) pays for them, and the residual blocks'
convolutions are two thirds of a `mini` training step. Here each of the nine taps is one matrix
product over only the positions where that tap lands inside the map, so the arithmetic is 100/144
of the dense one at 4x4, in the forward and in both backward products. It is the same
convolution: the skipped products are exact zeros, and only the order of the float sums differs.
Products run in the input's dtype (bf16 under autocast, accumulating in float32 inside each
product, as oneDNN does); the nine taps are summed in float32.

`TapConv2d` is an `nn.Conv2d` (same parameter, same state_dict) that takes this path on CPU for
maps of at most MAX_TAP_AREA positions with at least MIN_TAP_CHANNELS input channels, and
`F.conv2d` everywhere else. Forward + backward of one convolution, batch 16 at 4x4, one thread of
a 2-core AMD EPYC (median of 15, dense oneDNN / taps): bf16 248 channels 4.8 / 5.3 ms, 384
channels 10.8 / 10.0 ms, 496 channels (`mini`) 22.0 / 15.8 ms. At 8x8 neither wins throughout
(496 channels, batch 16: oneDNN 8% faster; 992 channels, batch 4: taps 16% faster), so maps
larger than 4x4 keep oneDNN.
"""
from __future__ import annotations

import torch
import torch.nn as nn

MAX_TAP_AREA = 16       # H * W: the 4x4 bottleneck of a 64 px input, and smaller
MIN_TAP_CHANNELS = 384  # below this oneDNN's dense kernel wins (see the timings above)

# the eight taps other than the centre, as (dy, dx) offsets of the input from the output
_OFF_CENTRE = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _span(d: int, n: int) -> tuple[slice, slice]:
    """Output and input index ranges along one axis of length n for a tap offset d in {-1, 0, 1}."""
    return slice(max(0, -d), n - max(0, d)), slice(max(0, d), n - max(0, -d))


def _taps(h: int, w: int) -> list:
    """(index into a [3, 3, ...] weight, output slices, input slices) of every off-centre tap that
    lands inside an h x w map."""
    taps = []
    for dy, dx in _OFF_CENTRE:
        (oy, iy), (ox, ix) = _span(dy, h), _span(dx, w)
        if oy.stop > oy.start and ox.stop > ox.start:
            taps.append(((dy + 1, dx + 1), (oy, ox), (iy, ix)))
    return taps


def _size(s: slice) -> int:
    return s.stop - s.start


class _TapConv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        o = weight.shape[0]
        xh = x.permute(0, 2, 3, 1).contiguous()                  # [B, H, W, C]; free if NHWC
        wt = torch.empty(3, 3, o, c, dtype=x.dtype)              # [ky, kx, O, C]
        wt.copy_(weight.permute(2, 3, 0, 1))                     # cast (and reorder) in one pass
        acc = torch.promote_types(x.dtype, torch.float32)
        # the centre tap reaches every position; each other tap adds where it lands
        out = (xh.view(b * h * w, c) @ wt[1, 1].t()).to(acc).view(b, h, w, o)
        for k, (oy, ox), (iy, ix) in _taps(h, w):
            a = xh[:, iy, ix, :].reshape(-1, c)                  # [B * h' * w', C]
            out[:, oy, ox, :] += (a @ wt[k].t()).view(b, _size(oy), _size(ox), o)
        ctx.save_for_backward(xh, wt)
        ctx.weight_dtype, ctx.weight_stride = weight.dtype, weight.stride()
        return out.to(x.dtype).permute(0, 3, 1, 2)               # [B, O, H, W], NHWC memory

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xh, wt = ctx.saved_tensors
        b, h, w, c = xh.shape
        o = wt.shape[2]
        taps = _taps(h, w)
        gh = grad.to(xh.dtype).permute(0, 2, 3, 1).contiguous()  # [B, H, W, O]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            acc = torch.promote_types(xh.dtype, torch.float32)
            gx = (gh.view(b * h * w, o) @ wt[1, 1]).to(acc).view(b, h, w, c)
            for k, (oy, ox), (iy, ix) in taps:
                g = gh[:, oy, ox, :].reshape(-1, o)
                gx[:, iy, ix, :] += (g @ wt[k]).view(b, _size(iy), _size(ix), c)
            grad_x = gx.to(xh.dtype).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            gwt = torch.zeros(3, 3, o, c, dtype=xh.dtype)  # taps that never land stay zero
            torch.mm(gh.view(b * h * w, o).t(), xh.view(b * h * w, c), out=gwt[1, 1])
            for k, (oy, ox), (iy, ix) in taps:
                torch.mm(gh[:, oy, ox, :].reshape(-1, o).t(), xh[:, iy, ix, :].reshape(-1, c),
                         out=gwt[k])
            # in the weight's own memory layout: a contiguous cast for a tap-layout weight
            grad_w = gwt.to(ctx.weight_dtype).permute(2, 3, 0, 1)
            if grad_w.stride() != ctx.weight_stride:
                grad_w = torch.empty_strided((o, c, 3, 3), ctx.weight_stride,
                                             dtype=ctx.weight_dtype).copy_(grad_w)
        return grad_x, grad_w


def tap_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv2d(x, weight, padding=1) for a bias-free (O, C, 3, 3) weight, stride 1, on CPU.
    The weight may be float32 while x is bf16 (autocast): it is cast in the same pass that
    reorders it, and its gradient comes back in its own dtype and memory layout."""
    if x.dim() != 4 or tuple(weight.shape[1:]) != (x.shape[1], 3, 3):
        raise ValueError(f"tap_conv3x3 needs x (B, C, H, W) and weight (O, C, 3, 3); got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    return _TapConv3x3.apply(x, weight)


def uses_taps(x: torch.Tensor) -> bool:
    """Whether a TapConv2d computes this input tap by tap (else with F.conv2d)."""
    return (x.device.type == "cpu" and x.dim() == 4 and x.shape[1] >= MIN_TAP_CHANNELS
            and x.shape[-2] * x.shape[-1] <= MAX_TAP_AREA)


class TapConv2d(nn.Conv2d):
    """nn.Conv2d(cin, cout, 3, padding=1, bias=False) that runs small CPU maps tap by tap.

    On CPU its weight keeps its shape (O, C, 3, 3) but is stored as [ky, kx, O, C], so each tap's
    matrix is contiguous: the cast in the forward and the gradient's return are straight copies
    instead of strided gathers (about 4 ms per use of a 496-channel weight on one core). The
    layout is set by `to_tap_layout` once the weight is initialised, and restored after every
    `.to()`, `.cpu()` or `.to(memory_format=...)` (Module._apply).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1, bias=False)

    def _tap_layout(self) -> None:
        w = self.weight.data
        tap = w.permute(2, 3, 0, 1).is_contiguous()
        if w.device.type == "cpu" and not tap:
            self.weight.data = w.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)
        elif w.device.type != "cpu" and tap:  # moved to a GPU: cuDNN gets an ordinary weight
            self.weight.data = w.contiguous()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._tap_layout()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not uses_taps(x):
            return super().forward(x)
        if torch.is_autocast_enabled("cpu"):
            x = x.to(torch.get_autocast_dtype("cpu"))
        elif x.dtype != self.weight.dtype:
            return super().forward(x)  # conv2d names the dtype mismatch
        return tap_conv3x3(x, self.weight)


def to_tap_layout(module: nn.Module) -> nn.Module:
    """Store the weight of every TapConv2d in `module` in tap layout. Call it after the weights
    are initialised: an in-place random init fills memory in order, so one in tap layout would
    draw other values for each weight element (from the same distribution)."""
    for m in module.modules():
        if isinstance(m, TapConv2d):
            m._tap_layout()
    return module
