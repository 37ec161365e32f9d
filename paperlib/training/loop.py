"""The training loop of the paper (section 3.5 and supplementary 6.3), resumable and distributable.

`train(config, run_dir)` is the one entry point. A run folder holds:
  config.json            the full config, written at start
  stats.jsonl            one JSON line per log step (every loss term, learning rates, images/s)
  samples/step-*.png     sketch | reference | output | ground truth grids
  checkpoint-latest.pt   resume state: networks, optimisers, schedulers, scaler, RNG, step
  checkpoint-previous.pt the resume state before it, kept in case the latest is damaged
  train.lock             held by the training process (a second one is refused)
  snapshot-*.pt          evaluation snapshots (generator only), snapshot-final.pt when done
Rerunning the same call continues where it stopped, also after a SIGKILL at any moment: a
checkpoint is written before the first step, and every snapshot, sample and stats line of a
step is written before that step's checkpoint, so whatever a kill loses is redone exactly.
Under `torchrun` it trains with DistributedDataParallel; rank 0 logs and checkpoints.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.profiler import record_function
from tqdm import tqdm

from ..core import augment, losses
from ..config import Config, to_dict, to_json
from ..data.datasets import build_dataset
from ..core.model import Discriminator, Generator
from ..paths import atomic_write, remove_stale_temp_files
from ..core.perceptual import build_perceptual
from .runlock import RunLock
from .snapshot import FINAL, atomic_save, save_snapshot

CHECKPOINT = "checkpoint-latest.pt"
PREVIOUS = "checkpoint-previous.pt"


class NonFiniteLossError(RuntimeError):
    pass


class CheckpointError(RuntimeError):
    """A run folder that cannot be resumed; the message names the file and what to do."""


# --------------------------------------------------------------------------- device and AMP

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but no CUDA device is available")
    return torch.device(name)


def autocast(precision: str, device: torch.device):
    """bf16 autocast on CPUs with bf16 matrix units and on GPUs; fp16 only on GPUs."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("train.precision=fp16 needs a GPU; use bf16 or fp32 on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"train.precision must be fp32, bf16 or fp16, not {precision!r}")


# ------------------------------------------------------------------------- the training step

@dataclass
class Nets:
    """Everything one optimisation step touches. G and D may be DDP-wrapped."""
    G: torch.nn.Module
    D: torch.nn.Module
    vgg: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    G_ema: torch.nn.Module | None = None  # averaged copy of G for snapshots (train.ema_decay)

    @property
    def d_plain(self) -> torch.nn.Module:
        return getattr(self.D, "module", self.D)


def build_nets(config: Config, device: torch.device) -> Nets:
    G = Generator(config.model).to(device)
    D = Discriminator(config.model).to(device)
    if config.train.channels_last:
        G = G.to(memory_format=torch.channels_last)
        D = D.to(memory_format=torch.channels_last)
    vgg = build_perceptual(config.loss).to(device)
    t = config.train
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=tuple(t.betas), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=tuple(t.betas), fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=(t.precision == "fp16"))
    G_ema = copy.deepcopy(G).requires_grad_(False).eval() if t.ema_decay > 0 else None
    return Nets(G, D, vgg, opt_g, opt_d, scaler, G_ema)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BN statistics) copied.
    One multi-tensor call each instead of ~100 small ones (the same per-element arithmetic)."""
    params, buffers = list(ema.parameters()), list(ema.buffers())
    if params:
        torch._foreach_lerp_(params, [p.detach() for p in model.parameters()], 1.0 - decay)
    if buffers:
        torch._foreach_copy_(buffers, list(model.buffers()))


def train_step(nets: Nets, config: Config, batch: dict, neg_gen: torch.Generator,
               device: torch.device) -> dict[str, torch.Tensor]:
    """One D update and one G update from a single generator forward (no second forward)."""
    sketch, reference, target = batch["sketch"], batch["reference"], batch["target"]
    need_attention = config.loss.correspondence_loss == "l1" and config.model.aggregation == "scft"
    # record_function names the phases for `python -m paperlib bench --breakdown` (no-ops unless
    # a profiler is running)
    with autocast(config.train.precision, device), record_function("G forward"):
        fake, aux = nets.G(sketch, reference, return_attention=need_attention)

    D = nets.D
    adversarial = config.loss.lambda_adv != 0
    if adversarial:
        # D step on real and (detached) fake in one call: one DDP forward per backward.
        for p in D.parameters():
            p.requires_grad_(True)
        with record_function("D step"):
            with autocast(config.train.precision, device):
                logits = D(torch.cat([target, fake.detach()]), torch.cat([sketch, sketch]))
            d_real, d_fake = logits.float().chunk(2)
            d_total, d_terms = losses.discriminator_loss(config.loss, d_real, d_fake)
            nets.opt_d.zero_grad(set_to_none=True)
            nets.scaler.scale(d_total).backward()
            nets.scaler.step(nets.opt_d)
        # G step: D's weights are frozen, so only its input gets gradients; the unwrapped D
        # is used so DDP does not expect a second reduction for D in this iteration.
        for p in D.parameters():
            p.requires_grad_(False)
    else:
        # lambda_adv = 0: D could not change G's update, so neither D step nor D forward runs.
        zero = torch.zeros((), device=device)
        d_total, d_terms = zero, {"d_real": zero, "d_fake": zero}
    with autocast(config.train.precision, device), record_function("G losses"):
        g_logits = nets.d_plain(fake, sketch) if adversarial else None
        g_total, g_terms = losses.generator_loss(
            config.loss, fake=fake.float(), target=target,
            d_fake=g_logits.float() if adversarial else None, aux=aux,
            corr=batch["corr"], corr_mask=batch["corr_mask"], perceptual_net=nets.vgg,
            generator=neg_gen)
    nets.opt_g.zero_grad(set_to_none=True)
    with record_function("G backward (through losses, D, G)"):
        nets.scaler.scale(g_total).backward()
    with record_function("G optimiser (Adam)"):
        nets.scaler.step(nets.opt_g)
        nets.scaler.update()
    for p in D.parameters():
        p.requires_grad_(True)
    if nets.G_ema is not None:
        with record_function("EMA of G"):
            update_ema(nets.G_ema, _plain(nets.G), config.train.ema_decay)

    terms = {f"g_{k}": v.detach() for k, v in g_terms.items()}
    terms.update({k: v.detach() for k, v in d_terms.items()})
    terms["g_total"], terms["d_total"] = g_total.detach(), d_total.detach()
    return terms


def match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give each optimiser state tensor its parameter's memory layout. The fused Adam kernel walks
    a parameter and its moments in memory order, so moments in another layout (a checkpoint
    written before a layout change, such as the residual convolutions' tap layout) would update
    the wrong elements without any error (measured on torch 2.14)."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for k, v in state.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def check_finite(terms: dict, step: int, run_dir: Path) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"loss term {name!r} became {value.item()} at step {step}; training stopped. "
                f"The last good checkpoint is kept at {run_dir / CHECKPOINT}.")


# ----------------------------------------------------------------------------- data order

class EpochBatches:
    """A resumable, rank-sharded batch order: epoch e is a permutation seeded by (seed, e).

    Step s lives at (epoch s // steps_per_epoch, batch s % steps_per_epoch), so resuming at any
    step replays exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.bs, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.steps_per_epoch = (n // world) // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"the dataset has {n} images: too few for batch size {batch_size} "
                             f"on {world} process(es)")

    def epoch_batches(self, epoch: int, start: int = 0):
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        perm = torch.randperm(self.n, generator=g)[self.rank::self.world]
        for b in range(start, self.steps_per_epoch):
            yield perm[b * self.bs:(b + 1) * self.bs].tolist()


def batches_from(dataset, order: EpochBatches, step: int, num_workers: int):
    """Yield collated batches forever, starting at global step `step`."""
    epoch, offset = divmod(step, order.steps_per_epoch)
    while True:
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=list(order.epoch_batches(epoch, offset)),
            num_workers=num_workers, persistent_workers=False)
        yield from loader
        epoch, offset = epoch + 1, 0


def lr_lambda(total_steps: int, decay_start: float):
    """Constant for the first `decay_start` of training, then linear to zero [S 6.3]."""
    start = int(total_steps * decay_start)

    def f(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, total_steps - start))
    return f


# ------------------------------------------------------------------------------ RNG state

def rng_state(gens: dict[str, torch.Generator]) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate(), **{k: g.get_state() for k, g in gens.items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    for k, g in gens.items():
        g.set_state(state[k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------- train

def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def train(config: Config, run_dir: str | os.PathLike, *, stop_at_step: int | None = None,
          progress: bool = True) -> dict:
    """Train (or resume) the run in `run_dir`. `stop_at_step` ends early, as an interruption would.

    Returns a summary dict (step, done, last logged stats). The training process holds the run
    folder's lock (rank 0 under torchrun): a second process on the same folder is refused.
    """
    from ..config import check_config

    check_config(config)
    if _dist_info()[0] != 0:
        return _train(config, run_dir, stop_at_step=stop_at_step, progress=progress)
    with RunLock(run_dir):
        # Nobody else writes here now: temp files are leftovers of a killed process.
        remove_stale_temp_files(run_dir)
        return _train(config, run_dir, stop_at_step=stop_at_step, progress=progress)


def _train(config: Config, run_dir: str | os.PathLike, *, stop_at_step: int | None,
           progress: bool) -> dict:
    run_dir = Path(run_dir)
    rank, world, local_rank = _dist_info()
    device = resolve_device(config.train.device)
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = rank == 0

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_or_check_config(config, run_dir)

    torch.manual_seed(config.train.seed)  # identical initial weights on every rank
    dataset = build_dataset(config.data, "train")
    order = EpochBatches(len(dataset), config.train.batch_size, config.train.seed, rank, world)
    total = config.train.max_steps or int(math.ceil(config.train.epochs * order.steps_per_epoch))

    nets = build_nets(config, device)
    sched_g = torch.optim.lr_scheduler.LambdaLR(nets.opt_g, lr_lambda(total, config.train.decay_start))
    sched_d = torch.optim.lr_scheduler.LambdaLR(nets.opt_d, lr_lambda(total, config.train.decay_start))
    gens = {"augment": torch.Generator().manual_seed(config.train.seed * 7919 + 1 + rank),
            "negatives": torch.Generator(device=device).manual_seed(config.train.seed * 7919 + 2 + rank)}

    step = 0
    ckpt_path = run_dir / CHECKPOINT
    blob = load_resume_state(run_dir, config, main)
    if blob is not None:
        nets.G.load_state_dict(blob["G"])
        if nets.G_ema is not None:
            nets.G_ema.load_state_dict(blob["G_ema"])
        nets.D.load_state_dict(blob["D"])
        nets.opt_g.load_state_dict(blob["opt_g"])
        nets.opt_d.load_state_dict(blob["opt_d"])
        match_state_layout(nets.opt_g)
        match_state_layout(nets.opt_d)
        sched_g.load_state_dict(blob["sched_g"])
        sched_d.load_state_dict(blob["sched_d"])
        nets.scaler.load_state_dict(blob["scaler"])
        set_rng_state(blob["rng"][rank] if world > 1 else blob["rng"][0], gens)
        step = int(blob["step"])
        if main:
            _trim_stats(run_dir / "stats.jsonl", step)
        del blob

    if world > 1:
        ddp_kw = {"device_ids": [local_rank]} if device.type == "cuda" else {}
        nets.G = torch.nn.parallel.DistributedDataParallel(nets.G, **ddp_kw)
        nets.D = torch.nn.parallel.DistributedDataParallel(nets.D, **ddp_kw)

    def save_checkpoint():
        rngs = [rng_state(gens)]
        if world > 1:
            rngs = [None] * world
            dist.all_gather_object(rngs, rng_state(gens))
        if main:
            atomic_save(checkpoint_state(nets, sched_g, sched_d, rngs, step, config),
                        ckpt_path, previous=run_dir / PREVIOUS, fault="checkpoint-write")

    if step == 0:
        # Before any output: from now on a folder with stats or snapshots always has a
        # checkpoint, so a missing one means a damaged run, never a run killed too early.
        save_checkpoint()

    end = total if stop_at_step is None else min(total, stop_at_step)
    stats_file = run_dir / "stats.jsonl"
    last: dict = {}
    # disable is passed only to silence: left unset, tqdm honours TQDM_DISABLE=1
    bar = tqdm(total=total, initial=step, desc=run_dir.name, dynamic_ncols=True,
               **({} if progress and main else {"disable": True}))
    data_iter = batches_from(dataset, order, step, config.data.num_workers)
    window_t, window_n = time.perf_counter(), 0
    nets.G.train(), nets.D.train()
    while step < end:
        raw = next(data_iter)
        batch = _prepare(raw, config, gens["augment"], device)
        terms = train_step(nets, config, batch, gens["negatives"], device)
        check_finite(terms, step + 1, run_dir)
        sched_g.step()
        if config.loss.lambda_adv != 0:  # D is not stepped without the adversarial term
            sched_d.step()
        step += 1
        window_n += batch["sketch"].shape[0] * world
        bar.update(1)
        if step % config.train.log_every == 0 or step == end:
            now = time.perf_counter()
            last = {"step": step, "epoch": step / order.steps_per_epoch,
                    **{k: float(v) for k, v in terms.items()},
                    "lr_g": sched_g.get_last_lr()[0], "lr_d": sched_d.get_last_lr()[0],
                    "images_per_sec": window_n / max(now - window_t, 1e-9)}
            window_t, window_n = now, 0
            bar.set_postfix(rec=f"{last['g_rec']:.3f}", tr=f"{last['g_tr']:.2f}",
                            ips=f"{last['images_per_sec']:.1f}")
            if main:
                with open(stats_file, "a") as f:
                    f.write(json.dumps(last) + "\n")
        if main and step % config.train.sample_every == 0:
            _save_samples(_for_eval(nets), batch, run_dir / "samples" / f"step-{step:07d}.png", config, device)
        # The snapshot before the checkpoint: a kill between the two redoes the step and
        # rewrites the snapshot; the other order would lose it for good.
        if main and config.train.snapshot_every and step % config.train.snapshot_every == 0:
            save_snapshot(_for_eval(nets), config, step, run_dir / f"snapshot-{step:07d}.pt")
        if step % config.train.checkpoint_every == 0 or step == end:
            save_checkpoint()
    bar.close()
    done = step >= total
    if done and main and not (run_dir / FINAL).exists():
        save_snapshot(_for_eval(nets), config, step, run_dir / FINAL)
    if world > 1:
        dist.barrier()
    return {"step": step, "total_steps": total, "done": done, "last": last,
            "weights_sha1": weights_digest(_plain(nets.G), _plain(nets.D))}


def weights_digest(*modules: torch.nn.Module) -> str:
    """SHA-1 of every parameter: equal digests mean bit-identical weights. (BatchNorm running
    statistics are left out: under DDP each rank updates its own until the next broadcast.)"""
    import hashlib

    h = hashlib.sha1()
    for m in modules:
        for k, v in sorted(m.named_parameters()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def is_complete(run_dir) -> bool:
    return (Path(run_dir) / FINAL).exists()


# ----------------------------------------------------------------------------- resuming

def checkpoint_state(nets: Nets, sched_g, sched_d, rngs: list, step: int, config: Config) -> dict:
    """What checkpoint-latest.pt holds: everything a bit-exact resume needs."""
    return {"G": _plain(nets.G).state_dict(), "D": _plain(nets.D).state_dict(),
            "opt_g": nets.opt_g.state_dict(), "opt_d": nets.opt_d.state_dict(),
            "sched_g": sched_g.state_dict(), "sched_d": sched_d.state_dict(),
            "scaler": nets.scaler.state_dict(), "rng": rngs, "step": step,
            "config": to_dict(config),
            **({"G_ema": nets.G_ema.state_dict()} if nets.G_ema is not None else {})}


_CHECKPOINT_KEYS = {"G", "D", "opt_g", "opt_d", "sched_g", "sched_d", "scaler", "rng", "step",
                    "config"}


def read_checkpoint(path: Path, config: Config) -> dict:
    """The resume state in `path`, or CheckpointError saying why this run cannot use it
    (unreadable, not a training checkpoint, or written under another config)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated, empty or foreign files fail in many ways
        detail = str(e).splitlines()[0][:200] if str(e) else ""
        raise CheckpointError(f"{path} is unreadable ({type(e).__name__}"
                              f"{': ' + detail if detail else ''})") from None
    if not isinstance(blob, dict) or not _CHECKPOINT_KEYS <= set(blob):
        missing = sorted(_CHECKPOINT_KEYS - set(blob)) if isinstance(blob, dict) else ["all"]
        raise CheckpointError(f"{path} is not a training checkpoint (missing {', '.join(missing)})")
    theirs, ours = json.loads(json.dumps(blob["config"])), json.loads(to_json(config))
    differences = _diff(theirs, ours)
    if differences:
        shown = "; ".join(d.replace(" -> ", " in the checkpoint, ", 1) + " in this run"
                          for d in differences[:8])
        raise CheckpointError(f"{path} was written by a run with another config ({shown}"
                              f"{'; ...' if len(differences) > 8 else ''})")
    if config.train.ema_decay > 0 and "G_ema" not in blob:
        raise CheckpointError(f"{path} is not a training checkpoint (missing G_ema)")
    return blob


def _started(run_dir: Path) -> list[str]:
    """What in `run_dir` shows that training had begun (empty for a fresh folder)."""
    found = []
    stats = run_dir / "stats.jsonl"
    if stats.exists() and stats.stat().st_size > 0:
        found.append(stats.name)
    found += sorted(p.name for p in run_dir.glob("snapshot-*.pt"))[:3]
    if any((run_dir / "samples").glob("step-*.png")):
        found.append("samples/")
    found += sorted(p.name for p in run_dir.glob("checkpoint-*.damaged"))
    return found


def load_resume_state(run_dir: Path, config: Config, main: bool = True) -> dict | None:
    """The checkpoint to resume from: checkpoint-latest.pt, else (with a warning)
    checkpoint-previous.pt; None for a run that has not started. A started run with no
    usable checkpoint is a CheckpointError naming the files: it is never silently restarted."""
    latest, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    problems = []
    for path in (latest, previous):
        if not path.exists():
            continue
        try:
            blob = read_checkpoint(path, config)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if path == previous:
            why = problems[0] if problems else (f"{latest} is missing (the process was stopped "
                                                f"while replacing it)")
            note = ""
            if latest.exists() and main:
                # Kept for inspection, and out of the way: the next save would otherwise rotate
                # the damaged file into checkpoint-previous.pt.
                latest.replace(latest.with_name(latest.name + ".damaged"))
                note = f" (the damaged file is kept as {latest.name}.damaged)"
            warnings.warn(f"{why}; resuming from {previous.name} at step {int(blob['step'])} "
                          f"instead{note}", stacklevel=3)
        return blob
    started = _started(run_dir)
    if problems or started:
        what = "; ".join(problems) if problems else f"{latest} does not exist"
        if not previous.exists():
            what += f"; there is no {previous.name} to fall back on"
        held = (f"It holds a started run ({', '.join(started)}) that" if started
                else "The run")
        raise CheckpointError(
            f"cannot resume the run in {run_dir}: {what}. {held} would be trained again from "
            f"scratch. Put a good checkpoint back as {latest.name}, or delete the folder (or "
            f"choose another --run-dir) to start over.")
    return None


def _trim_stats(path: Path, step: int) -> None:
    """Drop stats lines past the resumed step (and a line torn by a kill): they are logged
    again as those steps are redone, so the file reads as if training never stopped."""
    if not path.exists():
        return
    keep, changed = [], False
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            changed = True
            continue
        if row.get("step", 0) > step:
            changed = True
            continue
        keep.append(line)
    if changed:
        text = "".join(x + "\n" for x in keep)
        atomic_write(path, lambda f: f.write(text.encode()))


def _plain(m: torch.nn.Module) -> torch.nn.Module:
    return getattr(m, "module", m)


def _for_eval(nets: Nets) -> torch.nn.Module:
    """The generator that snapshots, samples and evaluation see: the EMA copy when kept."""
    return nets.G_ema if nets.G_ema is not None else _plain(nets.G)


def _prepare(raw: dict, config: Config, gen: torch.Generator, device: torch.device) -> dict:
    aug = augment.augmented_self(raw["image"], config.data, gen)
    batch = {"sketch": raw["sketch"], **aug}
    mf = torch.channels_last if config.train.channels_last else torch.contiguous_format
    return {k: (v.to(device, non_blocking=True, memory_format=mf) if v.dim() == 4
                else v.to(device, non_blocking=True)) for k, v in batch.items()}


def _write_or_check_config(config: Config, run_dir: Path) -> None:
    path = run_dir / "config.json"
    text = to_json(config)
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(text):
            raise ValueError(
                f"{run_dir} already holds a run with a different config; resume it with the same "
                f"settings or choose another run folder (differences: "
                f"{_diff(old, json.loads(text))})")
        return
    atomic_write(path, lambda f: f.write((text + "\n").encode()))


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, prefix + k + ".")
        elif va != vb:
            out.append(f"{prefix}{k}: {va} -> {vb}")
    return out


@torch.no_grad()
def _save_samples(G, batch: dict, path: Path, config: Config, device) -> None:
    from ..study.figures import save_grid

    was_training = G.training
    G.eval()
    with autocast(config.train.precision, device):
        out, _ = G(batch["sketch"][:8], batch["reference"][:8])
    G.train(was_training)
    rows = [batch["sketch"][:8].expand(-1, 3, -1, -1), batch["reference"][:8], out.float(),
            batch["target"][:8]]
    save_grid(rows, path, titles=["sketch", "reference", "output", "ground truth"])
