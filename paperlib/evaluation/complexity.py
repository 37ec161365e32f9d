"""Parameter counts, FLOPs and the encoder table, checked against Table 2 of the supplementary.

`python -m paperlib.evaluation.complexity` prints parameters and GFLOPs per 256 px image of G and D at
the paper's widths (computed on the meta device: no memory, no arithmetic).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from ..core.model import Discriminator, Encoder, Generator


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(module: nn.Module, *args, **kwargs) -> int:
    """FLOPs of one forward call as FlopCounterMode reports them (2 x multiply-accumulates)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


def encoder_table(model_cfg: ModelConfig, in_channels: int) -> list[dict]:
    """Rows of the built encoder (layer, in, out, kernel, stride, padding, params), module walk."""
    enc = Encoder(model_cfg, in_channels)
    rows = []
    for i, conv in enumerate(enc.convs):
        rows.append({"layer": f"L{i + 1}", "in": conv.in_channels, "out": conv.out_channels,
                     "kernel": conv.kernel_size[0], "stride": conv.stride[0],
                     "padding": conv.padding[0], "params": count_params(conv)})
    return rows


def table2_reference() -> list[dict]:
    """Table 2 of the supplementary, transcribed; "C" is the input channels (1 sketch, 3 reference)."""
    rows = [("L1", "C", 16, 1), ("L2", 16, 16, 1), ("L3", 16, 32, 2), ("L4", 32, 32, 1),
            ("L5", 32, 64, 2), ("L6", 64, 64, 1), ("L7", 64, 128, 2), ("L8", 128, 128, 1),
            ("L9", 128, 256, 2), ("L10", 256, 256, 1)]
    return [{"layer": name, "in": cin, "out": cout, "kernel": 3, "stride": stride, "padding": 1,
             "activation": "LeakyReLU 0.2"} for name, cin, cout, stride in rows]


def summary(model_cfg: ModelConfig | None = None, resolution: int = 256) -> dict:
    """Parameters and GFLOPs per image of G (with a reference) and D, computed on the meta device."""
    model_cfg = model_cfg or ModelConfig()
    with torch.device("meta"):
        g, d = Generator(model_cfg), Discriminator(model_cfg)
        sketch = torch.empty(1, 1, resolution, resolution)
        ref = torch.empty(1, 3, resolution, resolution)
        g_flops = forward_flops(g, sketch, ref)
        d_flops = forward_flops(d, ref, sketch)
    return {"aggregation": model_cfg.aggregation, "width": model_cfg.width,
            "resolution": resolution, "g_params": count_params(g), "g_gflops": g_flops / 1e9,
            "d_params": count_params(d), "d_gflops": d_flops / 1e9,
            "encoder_params": count_params(g.enc_s), "multi_layer_channels": g.enc_s.out_channels}


if __name__ == "__main__":
    from dataclasses import replace

    for agg in ("scft", "add", "adain"):
        print(summary(replace(ModelConfig(), aggregation=agg)))
