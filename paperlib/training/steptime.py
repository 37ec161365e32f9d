"""How long a training step of a config takes on this machine, timed on a synthetic batch.

`python -m paperlib bench` reports these times; `make reproduce` times a few steps of each kind
of run it will train, so that it can say up front how long the reproduction takes here.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from ..config import Config
from ..core import augment
from ..core.model import total_stride
from .loop import build_nets, train_step
from .precision import resolve


def synthetic_batch(config: Config, seed: int = 0) -> dict:
    """A batch of random images with binary sketches and their augmented-self references: the
    step's arithmetic without the data pipeline."""
    g = torch.Generator().manual_seed(seed)
    n, r = config.train.batch_size, config.data.resolution
    image = torch.rand(n, 3, r, r, generator=g) * 2 - 1
    sketch = torch.where(torch.rand(n, 1, r, r, generator=g) < 0.1, -1.0, 1.0)
    batch = {"sketch": sketch, **augment.augmented_self(image, config.data, g,
                                                         stride=total_stride(config.model))}
    if config.train.channels_last:
        batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                 for k, v in batch.items()}
    return batch


def step_seconds(config: Config, steps: int = 3, warmup: int = 2, threads: int | None = None) -> float:
    """Median seconds of one CPU training step of `config` ("auto" precision resolved as a
    run resolves it), on `threads` threads (default: torch's current count)."""
    config = replace(config, train=replace(config.train, device="cpu"))
    config = replace(config, train=replace(
        config.train, precision=resolve(config.train.precision, "cpu", warn=False).precision))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        nets = build_nets(config, torch.device("cpu"))
        batch = synthetic_batch(config)
        neg = torch.Generator().manual_seed(0)
        times = []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            train_step(nets, config, batch, neg, torch.device("cpu"))
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times)
