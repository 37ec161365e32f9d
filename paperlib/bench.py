"""`python -m paperlib bench`: generator inference and full training-step throughput.

Prints images/s (median of repeated runs after warm-up), the FLOPs each step performs
(torch.utils.flop_counter), the achieved GFLOP/s, and this machine's float32 and bfloat16
matmul peaks measured in the same run, so each figure can be read as a fraction of a peak.
The perceptual network uses random weights here: no weight files are needed.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import augment
from .config import Config, paper
from .train import autocast, build_nets, train_step


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matmul in `dtype` on the CPU (median)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = _median_time(lambda: a @ b, repeats, warmup=2)
    return 2 * n ** 3 / t / 1e9


def bench_config(resolution: int, batch: int, width: float, aggregation: str, precision: str,
                 channels_last: bool = True) -> Config:
    c = paper()
    return replace(
        c, profile="bench",
        data=replace(c.data, resolution=resolution),
        model=replace(c.model, width=width, aggregation=aggregation),
        loss=replace(c.loss, random_perceptual_weights=True),
        train=replace(c.train, batch_size=batch, precision=precision, device="cpu",
                      channels_last=channels_last))


def synthetic_batch(config: Config, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, r = config.train.batch_size, config.data.resolution
    image = torch.rand(n, 3, r, r, generator=g) * 2 - 1
    sketch = torch.where(torch.rand(n, 1, r, r, generator=g) < 0.1, -1.0, 1.0)
    batch = {"sketch": sketch, **augment.augmented_self(image, config.data, g)}
    if config.train.channels_last:
        batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                 for k, v in batch.items()}
    return batch


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def run(resolution: int = 256, batch: int = 4, width: float = 1.0, aggregation: str = "scft",
        precisions=("fp32", "bf16"), repeats: int = 5, train: bool = True,
        channels_last: bool = True) -> list[dict]:
    torch.manual_seed(0)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    for precision in precisions:
        config = bench_config(resolution, batch, width, aggregation, precision, channels_last)
        nets = build_nets(config, torch.device("cpu"))
        batch_t = synthetic_batch(config)
        neg = torch.Generator().manual_seed(0)

        def infer():
            with torch.no_grad(), autocast(precision, torch.device("cpu")):
                nets.G(batch_t["sketch"], batch_t["reference"])

        nets.G.eval()
        flops = count_flops(infer)
        t = _median_time(infer, repeats)
        rows.append(_row("generator forward (inference)", precision, batch, resolution, t, flops, peaks))
        nets.G.train()
        if train:
            def step():
                train_step(nets, config, batch_t, neg, torch.device("cpu"))
            flops = count_flops(step)
            t = _median_time(step, repeats)
            rows.append(_row("training step (G+D, all losses)", precision, batch, resolution, t,
                             flops, peaks))
    return rows


def _row(what, precision, batch, resolution, seconds, flops, peaks) -> dict:
    gflops = flops / seconds / 1e9
    return {"what": what, "precision": precision, "threads": torch.get_num_threads(), "resolution": resolution, "batch": batch,
            "seconds": seconds, "images_per_sec": batch / seconds,
            "gflop_per_image": flops / batch / 1e9, "achieved_gflops": gflops,
            "peak_fp32_gflops": peaks["fp32"], "peak_bf16_gflops": peaks["bf16"],
            "fraction_of_peak": gflops / peaks[precision]}


def format_rows(rows: list[dict]) -> str:
    head = (f"{'what':34s} {'prec':5s} {'res':>4s} {'batch':>5s} {'s/iter':>8s} {'img/s':>7s} "
            f"{'GFLOP/img':>9s} {'GFLOP/s':>8s} {'of peak':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['what']:34s} {r['precision']:5s} {r['resolution']:4d} {r['batch']:5d} "
                     f"{r['seconds']:8.3f} {r['images_per_sec']:7.2f} {r['gflop_per_image']:9.1f} "
                     f"{r['achieved_gflops']:8.1f} {r['fraction_of_peak']:7.1%}")
    if rows:
        lines.append(f"matmul peak (2048^3, median): fp32 {rows[0]['peak_fp32_gflops']:.0f} GFLOP/s, "
                     f"bf16 {rows[0]['peak_bf16_gflops']:.0f} GFLOP/s")
    return "\n".join(lines)


def data_rows(resolutions=(128, 256), workers=(0, 2), repeats: int = 3) -> list[dict]:
    """Images/s of the whole sample pipeline (cached load, sketch, a(), TPS), median of repeats."""
    from .augment import bench_pipeline

    rows = []
    for res in resolutions:
        for w in workers:
            runs = [bench_pipeline(res, batch_size=16, n_batches=20, num_workers=w)
                    for _ in range(repeats)]
            rows.append({"what": "sample pipeline", "resolution": res, "workers": w,
                         "images_per_sec": statistics.median(runs), "repeats": repeats})
    return rows
