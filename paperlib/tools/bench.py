"""`python -m paperlib bench`: generator inference and full training-step throughput.

Prints images/s (median of repeated runs after warm-up), the FLOPs each step performs
(torch.utils.flop_counter), the achieved GFLOP/s, and this machine's float32 and bfloat16
matmul peaks measured in the same run, so each figure can be read as a fraction of a peak.
The perceptual network uses random weights here: no weight files are needed.
"""
from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile as torch_profile
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from ..config import Config, DataConfig, get_profile, override, paper
from ..core import augment
from ..core.tapconv import tap_conv3x3
from ..data.datasets import build_dataset
from ..evaluation import fid
from ..paths import atomic_write, repo_root
from ..training.checkpoint import checkpoint_state, rng_state
from ..training.loop import (EpochBatches, batches_from, build_nets, lr_lambda, prepare_batch,
                             save_samples, train_step)
from ..training.parallel import threads_per_worker
from ..training.precision import autocast, cpu_name, native_bf16, resolve
from ..training.snapshot import atomic_save, save_snapshot
from ..training.steptime import synthetic_batch


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5,
                budget: float = 1.0) -> tuple[float, int]:
    """(GFLOP/s, size) of a square matmul in `dtype` on the CPU (median of up to `repeats`).

    The size doubles from 256 up to `n` while one product takes under a tenth of `budget`
    seconds, and the repeats stop at the budget: a CPU that emulates bf16 (about 1 GFLOP/s)
    measures it at 512 in about a second, where 2048 would take a minute and a half."""
    size = 256
    while True:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        t0 = time.perf_counter()
        a @ b
        once = time.perf_counter() - t0
        if size >= n or once > budget / 10:
            break
        size *= 2
    fits = max(1, min(repeats, int(budget / max(once, 1e-9))))
    t = _median_time(lambda: a @ b, fits, warmup=0 if once > budget / 10 else 1)
    return 2 * size ** 3 / t / 1e9, size


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


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_precisions(requested: str = "auto") -> tuple[str, ...]:
    """The precisions to time: "auto" is fp32, and bf16 too where the CPU computes it natively
    (emulated bf16 would take minutes to time); otherwise the comma-separated list given."""
    if requested == "auto":
        return ("fp32", "bf16") if native_bf16("cpu") else ("fp32",)
    chosen = tuple(p.strip() for p in requested.split(",") if p.strip())
    bad = [p for p in chosen if p not in ("fp32", "bf16")]
    if bad or not chosen:
        raise ValueError(f"--precision {requested!r}: give auto, or fp32 and/or bf16 separated "
                         f"by commas")
    for p in chosen:
        resolve(p, "cpu")  # warns where bf16 is emulated
    return chosen


def run(resolution: int = 256, batch: int = 4, width: float = 1.0, aggregation: str = "scft",
        precisions=("fp32", "bf16"), repeats: int = 5, train: bool = True,
        channels_last: bool = True) -> list[dict]:
    torch.manual_seed(0)
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peaks[name], peaks[name + "_size"] = matmul_peak(dtype)
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
            "peak_fp32_size": peaks["fp32_size"], "peak_bf16_size": peaks["bf16_size"],
            "cpu": cpu_name(), "bf16_units": native_bf16("cpu"),
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
        r = rows[0]
        lines.append(f"matmul peak (median): fp32 {r['peak_fp32_gflops']:.0f} GFLOP/s at "
                     f"{r['peak_fp32_size']}^3, bf16 {r['peak_bf16_gflops']:.0f} GFLOP/s at "
                     f"{r['peak_bf16_size']}^3; {r['cpu']}, "
                     f"{'bf16 units' if r['bf16_units'] else 'no bf16 units: bf16 is emulated'}")
    return "\n".join(lines)


def bench_pipeline(resolution: int, batch_size: int = 16, n_batches: int = 20,
                   num_workers: int = 2, cfg: DataConfig | None = None) -> float:
    """Images/s of the whole sample pipeline on OpenMoji (cached renders): DataLoader workers
    convert images and sketches, the main process applies a() and the TPS warp. The first
    batch (worker start-up) is not timed."""
    cfg = replace(cfg or DataConfig(), dataset="openmoji", resolution=resolution)
    ds = build_dataset(cfg, "train")
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0),
                        persistent_workers=False)
    it = iter(loader)
    augment.augmented_self(next(it)["image"], cfg, gen)
    count, t0 = 0, time.perf_counter()
    for _ in range(n_batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        augment.augmented_self(batch["image"], cfg, gen)
        count += batch["image"].shape[0]
    return count / (time.perf_counter() - t0)


def data_rows(resolutions=(128, 256), workers=(0, 2), repeats: int = 3) -> list[dict]:
    """Images/s of the whole sample pipeline (cached load, sketch, a(), TPS), median of repeats."""
    rows = []
    for res in resolutions:
        for w in workers:
            runs = [bench_pipeline(res, batch_size=16, n_batches=20, num_workers=w)
                    for _ in range(repeats)]
            rows.append({"what": "sample pipeline", "resolution": res, "workers": w,
                         "images_per_sec": statistics.median(runs), "repeats": repeats})
    return rows


# ------------------------------------------------------- today's step against an older commit

# Run by `time_step_in` in a fresh interpreter whose working directory is a source tree, so that
# `paperlib` is that tree's. It uses only APIs every commit of the project has had.
_STEP_WORKER = r"""
import json, sys, time, torch
import paperlib
# The flat layout first: in an exported commit of that layout, `paperlib.tools` does not exist
# and an editable install's import hook would resolve it to the working tree's module instead.
try:  # commits from before the subpackages, with one flat package
    from paperlib import bench, train
except ImportError:  # the package's layout since it has subpackages
    from paperlib.tools import bench
    from paperlib.training import loop as train
from paperlib.config import get_profile, override
profile, sets, warmup, steps = json.loads(sys.argv[1])
config = override(get_profile(profile), sets + ["train.device=cpu"])
try:  # since profiles may say "auto": the precision this CPU computes natively
    from paperlib.training.precision import resolve
    config = override(config, {"train.precision": resolve(config.train.precision, "cpu").precision})
except ImportError:
    pass
torch.manual_seed(0)
nets = train.build_nets(config, torch.device("cpu"))
batch = bench.synthetic_batch(config)
neg = torch.Generator().manual_seed(0)
step = lambda: train.train_step(nets, config, batch, neg, torch.device("cpu"))
for _ in range(warmup):
    step()
times = []
for _ in range(steps):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
print("RESULT " + json.dumps({"package": paperlib.__file__, "batch": config.train.batch_size,
                              "precision": config.train.precision, "times": times}))
"""


def export_tree(rev: str, dest) -> Path:
    """The commit `rev` of this repository, exported (git archive) into `dest`/src."""
    root = repo_root()
    proc = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", rev, "paperlib"],
                          capture_output=True)
    if proc.returncode != 0:
        raise ValueError(f"cannot read commit {rev!r} of {root}: "
                         f"{proc.stderr.decode().strip() or 'git archive failed'}")
    out = Path(dest) / "src"
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(proc.stdout)) as tar:
        tar.extractall(out, filter="data")
    return out


def _step_worker(tree, profile: str, sets: list[str], warmup: int, steps: int,
                 threads: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-c", _STEP_WORKER,
                             json.dumps([profile, sets, warmup, steps])],
                            cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _step_result(proc: subprocess.Popen, tree) -> dict:
    out, err = proc.communicate()
    lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"timing the step in {tree} failed:\n{err[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    if Path(result["package"]).resolve().parent.parent != Path(tree).resolve():
        raise RuntimeError(f"the worker imported {result['package']}, not the tree {tree}")
    return result


def time_step_in(tree, profile: str, sets: list[str], warmup: int, steps: int,
                 workers: int = 1) -> dict:
    """Seconds per training step (each of `steps`) of the package in source tree `tree`.

    With `workers` > 1, that many processes step at once, each with its share of the cores
    (as `paperlib.training.parallel` trains runs side by side), and `times` holds, step by step, the
    seconds per step of their combined throughput (combined_seconds)."""
    if workers <= 1:
        return _step_result(_step_worker(tree, profile, sets, warmup, steps), tree)
    procs = [_step_worker(tree, profile, sets, warmup, steps, threads_per_worker(workers))
             for _ in range(workers)]
    results = [_step_result(p, tree) for p in procs]
    per_step = [combined_seconds(ts) for ts in zip(*(r["times"] for r in results))]
    return {**results[0], "times": per_step, "workers": workers}


def combined_seconds(seconds) -> float:
    """Seconds per step of processes stepping side by side, as one: 1 / sum(1 / t_i), since
    their images per second add up."""
    return 1.0 / sum(1.0 / t for t in seconds)


def compare(rev: str, profile: str = "mini", sets: list[str] | None = None,
            rev_sets: list[str] | None = None, now_sets: list[str] | None = None,
            rounds: int = 5, warmup: int = 3, steps: int = 8, workers: int = 1) -> dict:
    """Training-step time of the working tree against commit `rev`, measured in one run.

    Each round starts one fresh process per side, in alternating order, so that whatever else
    the machine does falls on both sides alike; the ratio of the two medians is the figure to
    quote. `sets` apply to both sides, `rev_sets` to `rev` only and `now_sets` to the working
    tree only (for fields that one side names differently or lacks). With `workers` > 1 the
    working tree's side runs that many processes at once, each on its share of the cores, and
    its figure is their combined throughput: the speed of `make reproduce`, which trains runs
    side by side, against one run on all cores at `rev`.
    """
    sets, rev_sets, now_sets = list(sets or []), list(rev_sets or []), list(now_sets or [])
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"now": (repo_root(), sets + now_sets, workers),
                 rev: (export_tree(rev, tmp), sets + rev_sets, 1)}
        times: dict[str, list[float]] = {k: [] for k in sides}
        precisions: dict[str, str] = {}
        batch = 0
        for r in range(rounds):
            for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                tree, s, w = sides[name]
                res = time_step_in(tree, profile, s, warmup, steps, workers=w)
                times[name].append(statistics.median(res["times"]))
                precisions[name] = res["precision"]
                batch = res["batch"]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rev": rev, "profile": profile, "sets": sets, "rev_sets": rev_sets,
            "now_sets": now_sets, "batch": batch, "cpu": cpu_name(), "workers": workers,
            "precision": precisions,
            "rounds": rounds, "seconds": times, "median_seconds": med,
            "images_per_sec": {k: batch / v for k, v in med.items()},
            "speedup": med[rev] / med["now"]}


def format_compare(c: dict) -> str:
    ips = c["images_per_sec"]
    workers = c.get("workers", 1)
    now = "now" if workers <= 1 else f"now, {workers} processes side by side, combined"
    return (f"training step, profile {c['profile']} {' '.join(c['sets'])}".rstrip() + "\n"
            f"  {now:8s} {c['median_seconds']['now'] * 1000:8.1f} ms/step {ips['now']:7.1f} img/s\n"
            f"  {c['rev'][:8]:8s} {c['median_seconds'][c['rev']] * 1000:8.1f} ms/step "
            f"{ips[c['rev']]:7.1f} img/s\n"
            f"  speed-up now / {c['rev'][:8]}: {c['speedup']:.2f}x "
            f"(median of {c['rounds']} alternating rounds, {c.get('cpu', 'CPU not recorded')}"
            + (f"; precision now {c['precision']['now']}, {c['rev'][:8]} {c['precision'][c['rev']]}"
               if c.get("precision") else "") + ")")


# ------------------------------------------------------------------ where a training step goes

GENERATOR_PARTS = ("enc_s", "enc_r", "aggregation", "project", "res_blocks", "decoder")
STEP_PHASES = ("G forward", "G losses", "D step", "G backward (through losses, D, G)",
               "G optimiser (Adam)", "EMA of G")


def breakdown(profile: str = "mini", sets: list[str] | None = None, steps: int = 10,
              warmup: int = 3) -> dict:
    """Milliseconds per training step by phase (torch.profiler scopes in `train.train_step`),
    the generator's forward by part (module hooks), data and per-step I/O (checkpoint, snapshot
    and sample grid, each divided by its interval), and the forward FLOPs of each part. Real
    OpenMoji batches, as `train` sees them."""
    config = override(get_profile(profile), list(sets or []) + ["train.device=cpu"])
    device = torch.device("cpu")
    config = override(config, {"train.precision": resolve(config.train.precision, device).precision})
    torch.manual_seed(0)
    nets = build_nets(config, device)
    dataset = build_dataset(config.data, "train")
    order = EpochBatches(len(dataset), config.train.batch_size, 0)
    data = batches_from(dataset, order, 0, config.data.num_workers)
    gen, neg = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)

    parts = {name: 0.0 for name in GENERATOR_PARTS}
    started: dict[str, float] = {}
    hooks = []
    for name in GENERATOR_PARTS:
        m = getattr(nets.G, name)
        hooks.append(m.register_forward_pre_hook(lambda _m, _i, n=name: started.__setitem__(n, time.perf_counter())))
        hooks.append(m.register_forward_hook(lambda _m, _i, _o, n=name: parts.__setitem__(n, parts[n] + time.perf_counter() - started[n])))

    t_data = 0.0
    batch = None
    for i in range(warmup + steps):
        if i == warmup:
            parts.update({k: 0.0 for k in parts})
            prof = torch_profile(activities=[ProfilerActivity.CPU])
            prof.__enter__()
            t_loop = time.perf_counter()
        t0 = time.perf_counter()
        batch = prepare_batch(next(data), config, gen, device)
        if i >= warmup:
            t_data += time.perf_counter() - t0
        train_step(nets, config, batch, neg, device)
    t_loop = time.perf_counter() - t_loop
    prof.__exit__(None, None, None)
    for h in hooks:
        h.remove()
    scopes = {e.key: e.cpu_time_total / 1e3 / steps for e in prof.key_averages() if e.key in STEP_PHASES}

    # per-step share of the run folder's writes, at the profile's intervals
    t = config.train
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        c0 = time.perf_counter()
        scheds = [torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(t.max_steps or 1, t.decay_start))
                  for o in (nets.opt_g, nets.opt_d)]
        atomic_save(checkpoint_state(nets, *scheds, [rng_state({})], steps, config),
                    tmp / "checkpoint.pt")
        c1 = time.perf_counter()
        save_snapshot(nets.eval_generator, config, 0, tmp / "snapshot.pt")
        c2 = time.perf_counter()
        save_samples(nets.eval_generator, batch, tmp / "samples.png", config, device)
        c3 = time.perf_counter()
    io = {"checkpoint write (per step)": (c1 - c0) * 1e3 / t.checkpoint_every,
          "snapshot write (per step)": (c2 - c1) * 1e3 / t.snapshot_every if t.snapshot_every else 0.0,
          "sample grid (per step)": (c3 - c2) * 1e3 / t.sample_every}

    nets.G.train()
    with FlopCounterMode(display=False) as counter, autocast(t.precision, device):
        nets.G(batch["sketch"], batch["reference"])
    flops = counter.get_flop_counts()
    part_flops = {n: sum(flops.get(f"Generator.{n}", {}).values()) for n in GENERATOR_PARTS}
    step_flops = count_flops(lambda: train_step(nets, config, batch, neg, device))
    peak, peak_size = matmul_peak(torch.bfloat16 if t.precision == "bf16" else torch.float32)
    return {"profile": profile, "sets": list(sets or []), "batch": t.batch_size,
            "peak_gflops": peak, "peak_size": peak_size,
            "steps": steps, "step_ms": t_loop * 1e3 / steps, "data_ms": t_data * 1e3 / steps,
            "phases_ms": scopes, "generator_forward_ms": {k: v * 1e3 / steps for k, v in parts.items()},
            "generator_forward_gflop": {k: v / 1e9 for k, v in part_flops.items()},
            "step_gflop": step_flops / 1e9, "io_ms": io, "threads": torch.get_num_threads(),
            "cpu": cpu_name(), "precision": t.precision}


def format_breakdown(b: dict) -> str:
    step = b["step_ms"]
    lines = [f"training step, profile {b['profile']} {' '.join(b['sets'])}".rstrip()
             + f", batch {b['batch']}, {b.get('cpu', 'CPU not recorded')}, {b.get('precision', 'precision not recorded')}, {b['threads']} threads, mean of {b['steps']} steps under "
               f"torch.profiler: {step:.1f} ms/step ({b['batch'] / step * 1e3:.1f} img/s), "
               f"{b['step_gflop']:.1f} GFLOP/step"
             + (f", {b['step_gflop'] / step * 1e3:.0f} GFLOP/s = "
                f"{b['step_gflop'] / step * 1e3 / b['peak_gflops']:.0%} of the "
                f"{b.get('precision', '')} matmul peak ({b['peak_gflops']:.0f} GFLOP/s at "
                f"{b['peak_size']}^3)" if "peak_gflops" in b else ""),
             "", f"{'part':44s} {'ms/step':>8s} {'share':>6s}"]
    rows = [("data: load, sketch, a() and TPS", b["data_ms"])]
    rows += [(k, v) for k, v in b["phases_ms"].items()]
    accounted = sum(v for _, v in rows)
    rows.append(("rest of the step (Python, scheduler glue)", max(0.0, step - accounted)))
    for name, ms in rows:
        lines.append(f"{name:44s} {ms:8.1f} {ms / step:6.1%}")
    lines += ["", f"{'I/O amortised over its interval':44s} {'ms/step':>8s} {'share':>6s}"]
    for name, ms in b["io_ms"].items():
        lines.append(f"{name:44s} {ms:8.2f} {ms / step:6.1%}")
    fwd = b["generator_forward_ms"]
    total_fwd = sum(fwd.values()) or 1.0
    total_gf = sum(b["generator_forward_gflop"].values()) or 1.0
    lines += ["", f"{'generator forward by part':44s} {'ms/step':>8s} {'share':>6s} {'GFLOP':>7s} {'share':>6s}"]
    for name in GENERATOR_PARTS:
        gf = b["generator_forward_gflop"][name]
        lines.append(f"{name:44s} {fwd[name]:8.1f} {fwd[name] / total_fwd:6.1%} {gf:7.2f} "
                     f"{gf / total_gf:6.1%}")
    return "\n".join(lines)


# ------------------------------------------------------- the residual convolution, tap by tap

def tap_rows(channels=(248, 384, 496), sides=(4, 8), precisions=("fp32",), batch: int = 16,
             repeats: int = 9) -> list[dict]:
    """Milliseconds of one residual-block convolution, forward and both backward products,
    dense (F.conv2d, oneDNN) against tap by tap (core.tapconv), at each channel count, square
    map side and precision: the evidence for tapconv's MIN_TAP_CHANNELS and MAX_TAP_AREA."""
    rows = []
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for side in sides:
            for c in channels:
                g = torch.Generator().manual_seed(0)
                x0 = torch.randn(batch, c, side, side, generator=g).to(dtype)
                x0 = x0.contiguous(memory_format=torch.channels_last)
                w0 = (torch.randn(c, c, 3, 3, generator=g) * 0.02).to(dtype)
                times = {}
                for name, conv in (("dense", lambda x, w: F.conv2d(x, w, padding=1)),
                                   ("taps", tap_conv3x3)):
                    x = x0.clone().requires_grad_(True)
                    w = w0.clone().requires_grad_(True)
                    times[name] = _median_time(lambda: conv(x, w).sum().backward(), repeats) * 1e3
                rows.append({"precision": precision, "side": side, "channels": c, "batch": batch,
                             "dense_ms": times["dense"], "taps_ms": times["taps"],
                             "threads": torch.get_num_threads(), "cpu": cpu_name()})
    return rows


def format_taps(rows: list[dict]) -> str:
    lines = [f"residual 3x3 convolution, forward + backward, batch {rows[0]['batch']}, "
             f"{rows[0]['threads']} thread(s), {rows[0]['cpu']} (median)",
             f"{'prec':5s} {'map':>5s} {'channels':>8s} {'dense ms':>9s} {'taps ms':>8s} {'taps/dense':>10s}"]
    for r in rows:
        lines.append(f"{r['precision']:5s} {r['side']:>2d}x{r['side']:<2d} {r['channels']:8d} "
                     f"{r['dense_ms']:9.2f} {r['taps_ms']:8.2f} {r['taps_ms'] / r['dense_ms']:10.2f}")
    return "\n".join(lines)


# ------------------------------------------------- the training loop against the bare step

_LOOP_CELL = """\
from paperlib.config import get_profile, override
from paperlib.training.loop import train
train(override(get_profile({profile!r}), {sets!r}), {run_dir!r}, progress=True)
"""


def _loop_rate(run_dir, batch: int, wall: float, steps: int) -> dict:
    rows = [json.loads(x) for x in (Path(run_dir) / "stats.jsonl").read_text().splitlines()]
    # the first window holds the warm-up; the median of the rest is the steady training rate
    rates = [r["images_per_sec"] for r in rows[1:]] or [rows[0]["images_per_sec"]]
    return {"images_per_sec": statistics.median(rates), "wall_images_per_sec": batch * steps / wall}


def loop(profile: str = "mini", sets: list[str] | None = None, steps: int = 100,
         rounds: int = 2) -> dict:
    """Images/s of the bare training step (synthetic batch), of `python -m paperlib train`, and
    of the same `train` call inside a notebook run by papermill (as `make reproduce` runs it),
    in alternating rounds. The loop rates are the median stats.jsonl window after the first, so
    checkpoint, snapshot and sample writes fall inside them as they do in a real run."""
    sets = list(sets or [])
    run_sets = sets + [f"train.max_steps={steps}"]
    batch = override(get_profile(profile), sets).train.batch_size
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out: dict[str, list[float]] = {"step": [], "train": [], "notebook": []}
    walls: dict[str, list[float]] = {"train": [], "notebook": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(rounds):
            res = time_step_in(repo_root(), profile, sets, warmup=3, steps=10)
            out["step"].append(batch / statistics.median(res["times"]))

            run = tmp / f"cli-{r}"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "paperlib", "train", "--profile", profile,
                                   *sum((["--set", s] for s in run_sets), []), "--run-dir", str(run)],
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"the training command failed:\n{proc.stderr[-2000:]}")
            rate = _loop_rate(run, batch, time.perf_counter() - t0, steps)
            out["train"].append(rate["images_per_sec"])
            walls["train"].append(rate["wall_images_per_sec"])

            import nbformat  # nbformat only for the papermill timing

            run = tmp / f"nb-{r}"
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(_LOOP_CELL.format(
                profile=profile, sets=run_sets, run_dir=str(run)))]
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                         "language": "python"}
            nbformat.write(nb, tmp / "loop.ipynb")
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "papermill", str(tmp / "loop.ipynb"),
                                   str(tmp / f"loop-out-{r}.ipynb"), "--kernel", "python3",
                                   "--log-output", "--no-progress-bar"],
                                  env={**os.environ}, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"the papermill run failed:\n{proc.stderr[-2000:]}")
            rate = _loop_rate(run, batch, time.perf_counter() - t0, steps)
            out["notebook"].append(rate["images_per_sec"])
            walls["notebook"].append(rate["wall_images_per_sec"])
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"profile": profile, "sets": sets, "steps": steps, "rounds": rounds, "batch": batch,
            "cpu": cpu_name(), "images_per_sec": out, "median": med,
            "wall_images_per_sec": walls,
            "train_of_step": med["train"] / med["step"], "notebook_of_step": med["notebook"] / med["step"]}


def format_loop(b: dict) -> str:
    m = b["median"]
    wall = {k: statistics.median(v) for k, v in b["wall_images_per_sec"].items()}
    return "\n".join([
        f"training loop against the bare step, profile {b['profile']} {' '.join(b['sets'])}".rstrip()
        + f", {b['steps']} steps, median of {b['rounds']} alternating rounds, {b['cpu']}",
        f"  bare step (synthetic batch)        {m['step']:7.1f} img/s",
        f"  python -m paperlib train           {m['train']:7.1f} img/s  ({b['train_of_step']:.0%} of the step;"
        f" {wall['train']:.1f} img/s counting start-up)",
        f"  the same train() under papermill   {m['notebook']:7.1f} img/s  ({b['notebook_of_step']:.0%} of the step;"
        f" {wall['notebook']:.1f} img/s counting start-up)"])


def fid_rows(n: int = 100, repeats: int = 3) -> list[dict]:
    """Images/s of the FID Inception's pool3 features (fid.activations, float32) in the memory
    order evaluation uses (channels-last) and in plain NCHW, in alternating repeats, with the
    largest feature difference between the two."""
    x = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    models = {"channels-last (used)": fid.inception()}
    models["NCHW"] = copy.deepcopy(models["channels-last (used)"]).to(memory_format=torch.contiguous_format)
    feats = {k: fid.activations(x[:8], m, progress=False) for k, m in models.items()}  # warm-up
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            feats[k] = fid.activations(x, m, progress=False)
            times[k].append(time.perf_counter() - t0)
    diff = float(abs(feats["NCHW"] - feats["channels-last (used)"]).max())
    return [{"what": f"FID Inception features, {k}", "images": n, "cpu": cpu_name(),
             "images_per_sec": n / statistics.median(v), "max_feature_difference": diff}
            for k, v in times.items()]


# ----------------------------------------------------------------------------- command line

def add_bench_arguments(sp) -> None:
    sp.add_argument("--resolution", type=int, default=256, help="image side in pixels (default 256)")
    sp.add_argument("--batch", type=int, default=4, help="images per batch (default 4)")
    sp.add_argument("--width", type=float, default=1.0,
                    help="channel width multiplier of the networks (default 1.0)")
    sp.add_argument("--aggregation", default="scft", help="how the reference is merged "
                    "(model.aggregation; default scft)")
    sp.add_argument("--precision", default="auto",
                    help="fp32, bf16 or both (fp32,bf16); auto (default): fp32, and bf16 too "
                         "where the CPU has bf16 units")
    sp.add_argument("--repeats", type=int, default=5, help="timed repeats of each row (default 5)")
    sp.add_argument("--no-train", action="store_true", help="time inference only")
    sp.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last")
    sp.add_argument("--fid", action="store_true",
                    help="time the FID Inception features, channels-last against NCHW")
    sp.add_argument("--data", action="store_true",
                    help="time the data pipeline (OpenMoji, 128 and 256 px) instead of the networks")
    sp.add_argument("--compare", metavar="REV", default=None,
                    help="time the training step of --profile now and at commit REV, in "
                         "alternating processes, and print the speed-up")
    sp.add_argument("--profile", default="mini", help="with --compare: the profile to time")
    sp.add_argument("--workers", type=int, default=1,
                    help="with --compare: processes stepping at once on the working tree's side, "
                         "each on its share of the cores (as make reproduce trains runs)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --compare: override a config field on both sides")
    sp.add_argument("--rev-set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --compare: override a field on REV's side only")
    sp.add_argument("--now-set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --compare: override a field on the working tree's side only")
    sp.add_argument("--rounds", type=int, default=None,
                    help="alternating rounds of --compare (default 5) or --loop (default 2)")
    sp.add_argument("--loop", action="store_true",
                    help="images/s of the bare step, of `train` and of `train` under papermill")
    sp.add_argument("--breakdown", action="store_true",
                    help="where a training step of --profile goes: phases, generator parts, "
                         "data and I/O")
    sp.add_argument("--taps", action="store_true",
                    help="time the residual convolution dense against tap by tap, per channel "
                         "count, map size and --precision")
    sp.add_argument("--json", default=None, help="also write the rows to this JSON file")


def write_json(path: str, obj) -> None:
    """A result file, written all at once: an interrupted write leaves the earlier file."""
    text = json.dumps(obj, indent=2)
    atomic_write(path, lambda f: f.write(text.encode()))


def report(result, text: str, json_path: str | None) -> int:
    """Print a bench result's text, and write the result as JSON when asked."""
    print(text)
    if json_path:
        write_json(json_path, result)
    return 0


def bench_main(args) -> int:
    for flag, value, modes in (("--rev-set", args.rev_set, ["--compare"]),
                               ("--now-set", args.now_set, ["--compare"]),
                               ("--set", args.set, ["--compare", "--breakdown", "--loop"])):
        if value and not any(getattr(args, m[2:]) for m in modes):
            raise SystemExit(f"error: {flag} applies only with {' or '.join(modes)}; "
                             f"this bench would ignore {' '.join(value)}")
    if args.breakdown or args.loop:
        result = (breakdown(args.profile, args.set) if args.breakdown
                  else loop(args.profile, args.set, rounds=args.rounds or 2))
        return report(result, format_breakdown(result) if args.breakdown
                      else format_loop(result), args.json)
    if args.compare:
        result = compare(args.compare, args.profile, args.set, args.rev_set,
                         args.now_set, rounds=args.rounds or 5, workers=args.workers)
        return report(result, format_compare(result), args.json)
    if args.taps:
        rows = tap_rows(precisions=bench_precisions(args.precision))
        return report(rows, format_taps(rows), args.json)
    if args.fid:
        rows = fid_rows()
        text = "\n".join(f"{r['what']:48s} {r['images_per_sec']:6.1f} images/s ({r['cpu']})"
                         for r in rows)
        return report(rows, text + f"\nlargest feature difference between the two: "
                                   f"{rows[0]['max_feature_difference']:.1e}", args.json)
    if args.data:
        rows = data_rows()
        for r in rows:
            print(f"sample pipeline {r['resolution']:4d} px, {r['workers']} workers: "
                  f"{r['images_per_sec']:8.1f} images/s (median of {r['repeats']})")
        if args.json:
            write_json(args.json, rows)
        return 0
    rows = run(args.resolution, args.batch, args.width, args.aggregation,
               bench_precisions(args.precision), args.repeats, train=not args.no_train,
               channels_last=not args.contiguous)
    print(format_rows(rows))
    if args.json:
        write_json(args.json, rows)
    return 0
