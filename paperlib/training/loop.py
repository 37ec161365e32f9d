"""The training loop of the paper (section 3.5 and supplementary 6.3), resumable and distributable.

`train(config, run_dir)` is the one entry point. A run folder holds:
  config.json            the full config, written at start
  stats.jsonl            one JSON line per log step (every loss term, learning rates, images/s)
  samples/step-*.png     sketch | reference | output | ground truth grids
  checkpoint-latest.pt   resume state: networks, optimisers, schedulers, scaler, RNG, step
  checkpoint-previous.pt the resume state before it, kept in case the latest is damaged;
                         removed once the run is complete (it is as large as the latest)
  train.lock             held by the training process (a second one is refused)
  snapshot-*.pt          evaluation snapshots (generator only), snapshot-final.pt when done
Rerunning the same call continues where it stopped, also after a SIGKILL at any moment: a
checkpoint is written before the first step, and every snapshot, sample and stats line of a
step is written before that step's checkpoint, so whatever a kill loses is redone exactly.
What a checkpoint holds and how a folder is resumed is `paperlib.training.checkpoint`.
Under `torchrun` it trains with DistributedDataParallel; rank 0 logs and checkpoints.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.profiler import record_function
from tqdm import tqdm

from ..config import Config, add_config_arguments, check_config, config_from_arguments
from ..core import augment, losses
from ..core.grid import save_grid
from ..core.model import Discriminator, Generator, total_stride
from ..core.perceptual import build_perceptual
from ..core.sketch import region_labels
from ..data.datasets import build_dataset, check_data
from ..paths import remove_stale_temp_files
from .checkpoint import (CHECKPOINT, PREVIOUS, checkpoint_state, gather_rng_states, load_resume_state,
                         recorded_precision, restore, trim_stats, write_checkpoint, write_or_check_config)
from .parallel import share_cores
from .precision import autocast, resolve
from .runlock import RunLock
from .snapshot import FINAL, save_snapshot
from .stats import STATS


class NonFiniteLossError(RuntimeError):
    pass


# --------------------------------------------------------------------------- device and AMP

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but no CUDA device is available")
    return torch.device(name)


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
    def g_plain(self) -> torch.nn.Module:
        """G without its DDP wrapper (the module whose state_dict checkpoints hold)."""
        return getattr(self.G, "module", self.G)

    @property
    def d_plain(self) -> torch.nn.Module:
        return getattr(self.D, "module", self.D)

    @property
    def eval_generator(self) -> torch.nn.Module:
        """The generator that snapshots, samples and evaluation see: the EMA copy when kept."""
        return self.G_ema if self.G_ema is not None else self.g_plain


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
    # Only SCFT's L1 loss needs the map; "sga" + "l1" is refused by check_config (the
    # stop-gradient map is detached) and its triplet loss uses aux["query"]/["key"] alone.
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
            generator=neg_gen, regions=batch.get("regions"))
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
            update_ema(nets.G_ema, nets.g_plain, config.train.ema_decay)

    terms = {f"g_{k}": v.detach() for k, v in g_terms.items()}
    terms.update({k: v.detach() for k, v in d_terms.items()})
    terms["g_total"], terms["d_total"] = g_total.detach(), d_total.detach()
    return terms


def check_finite(terms: dict, step: int, run_dir: Path) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"loss term {name!r} became {value.item()} at step {step}; training stopped. "
                f"The last good checkpoint is kept at {run_dir / CHECKPOINT}.")


# ----------------------------------------------------------------------------- the batches

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


def prepare_batch(raw: dict, config: Config, gen: torch.Generator, device: torch.device,
                  augment_on_device: bool = False) -> dict:
    """The training batch of a loader batch on `device`: the sketch, the augmented-self pair
    a(I), s(a(I)) and the correspondence. Its random draws come from `gen` (a CPU generator)
    in a fixed order wherever it runs; `augment_on_device` moves the images to `device` first,
    so the colour shift, the TPS warp and the correspondence search run there (faster on a GPU;
    the same draws, but not bit-identical arithmetic to the CPU's)."""
    image = raw["image"].to(device) if augment_on_device else raw["image"]
    aug = augment.augmented_self(image, config.data, gen, stride=total_stride(config.model))
    batch = {"sketch": raw["sketch"], **aug}
    if config.loss.lambda_region > 0:  # the target keeps the sketch's geometry: same regions
        batch["regions"] = region_labels(raw["sketch"])  # (B, H, W)
    mf = torch.channels_last if config.train.channels_last else torch.contiguous_format
    return {k: (v.to(device, non_blocking=True, memory_format=mf) if v.dim() == 4
                else v.to(device, non_blocking=True)) for k, v in batch.items()}


# ------------------------------------------------------------------------- learning rate

def lr_lambda(total_steps: int, decay_start: float):
    """Constant for the first `decay_start` of training, then linear to zero [S 6.3]."""
    start = int(total_steps * decay_start)

    def f(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, total_steps - start))
    return f


# ----------------------------------------------------------------------------- samples

@torch.no_grad()
def save_samples(G: torch.nn.Module, batch: dict, path: Path, config: Config, device) -> None:
    """A sketch | reference | output | ground truth grid of the batch's first 8 items."""
    was_training = G.training
    G.eval()
    with autocast(config.train.precision, device):
        out, _ = G(batch["sketch"][:8], batch["reference"][:8])
    G.train(was_training)
    rows = [batch["sketch"][:8].expand(-1, 3, -1, -1), batch["reference"][:8], out.float(),
            batch["target"][:8]]
    save_grid(rows, path, titles=["sketch", "reference", "output", "ground truth"])


# ---------------------------------------------------------------------------------- train

def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def train(config: Config, run_dir: str | os.PathLike, *, stop_at_step: int | None = None,
          progress: bool = True, augment_on_device: bool = False) -> dict:
    """Train (or resume) the run in `run_dir`. `stop_at_step` ends early, as an interruption would.

    `augment_on_device` builds the augmented-self pair on the training device (prepare_batch):
    for GPUs, where the CPU would otherwise feed the device too slowly. Returns a summary dict
    (step, done, last logged stats, weights digest). The training process holds the run
    folder's lock (rank 0 under torchrun): a second process on the same folder is refused.
    """
    check_config(config)
    check_data(config.data)  # before the run folder is made: an unknown style leaves nothing
    run_dir = Path(run_dir)
    rank, world, local_rank = _dist_info()
    main = rank == 0
    with contextlib.ExitStack() as held:
        # ------------------------------------------------------ the run folder and the device
        if main:
            held.enter_context(RunLock(run_dir))
            # Nobody else writes here now: temp files are leftovers of a killed process.
            remove_stale_temp_files(run_dir)
        device = resolve_device(config.train.device)
        if world > 1:
            if device.type == "cuda":
                torch.cuda.set_device(local_rank)
                device = torch.device("cuda", local_rank)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # "auto" becomes the precision this device computes natively (a resumed run keeps the
        # one it started in); config.json, checkpoints and samples see the resolved value.
        decision = resolve(config.train.precision, device, recorded=recorded_precision(run_dir),
                           warn=main)
        config = replace(config, train=replace(config.train, precision=decision.precision))
        if main:
            print(decision.line(), file=sys.stderr, flush=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_or_check_config(config, run_dir, machine={
                "device": decision.device_name, "precision": decision.precision,
                "precision_requested": decision.requested, "precision_reason": decision.reason,
                "torch": torch.__version__})

        # ------------------------------------------ data, networks, schedules, random streams
        torch.manual_seed(config.train.seed)  # identical initial weights on every rank
        dataset = build_dataset(config.data, "train")
        order = EpochBatches(len(dataset), config.train.batch_size, config.train.seed, rank, world)
        total = config.train.max_steps or int(math.ceil(config.train.epochs * order.steps_per_epoch))
        nets = build_nets(config, device)
        sched_g = torch.optim.lr_scheduler.LambdaLR(nets.opt_g, lr_lambda(total, config.train.decay_start))
        sched_d = torch.optim.lr_scheduler.LambdaLR(nets.opt_d, lr_lambda(total, config.train.decay_start))
        gens = {"augment": torch.Generator().manual_seed(config.train.seed * 7919 + 1 + rank),
                "negatives": torch.Generator(device=device).manual_seed(config.train.seed * 7919 + 2 + rank)}

        # -------------------------------------------------------------------------- resume
        step = 0
        blob = load_resume_state(run_dir, config, main)
        if blob is not None:
            step = restore(blob, nets, sched_g, sched_d, gens, rank)
            if main:
                trim_stats(run_dir / STATS, step)
            del blob
        if world > 1:
            ddp_kw = {"device_ids": [local_rank]} if device.type == "cuda" else {}
            nets.G = torch.nn.parallel.DistributedDataParallel(nets.G, **ddp_kw)
            nets.D = torch.nn.parallel.DistributedDataParallel(nets.D, **ddp_kw)

        def save_checkpoint():
            rngs = gather_rng_states(gens, world)  # every rank takes part
            if main:
                write_checkpoint(run_dir, checkpoint_state(nets, sched_g, sched_d, rngs, step, config))

        if step == 0:
            # Before any output: from now on a folder with stats or snapshots always has a
            # checkpoint, so a missing one means a damaged run, never a run killed too early.
            save_checkpoint()

        # ----------------------------------------------------------------------- the steps
        end = total if stop_at_step is None else min(total, stop_at_step)
        last: dict = {}
        # disable is passed only to silence: left unset, tqdm honours TQDM_DISABLE=1
        bar = tqdm(total=total, initial=step, desc=run_dir.name, dynamic_ncols=True,
                   **({} if progress and main else {"disable": True}))
        data_iter = batches_from(dataset, order, step, config.data.num_workers)
        window_t, window_n = time.perf_counter(), 0
        nets.G.train(), nets.D.train()
        while step < end:
            share_cores()  # in a pool: the cores of workers that have finished
            batch = prepare_batch(next(data_iter), config, gens["augment"], device, augment_on_device)
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
                    with open(run_dir / STATS, "a") as f:
                        f.write(json.dumps(last) + "\n")
            if main and step % config.train.sample_every == 0:
                save_samples(nets.eval_generator, batch, run_dir / "samples" / f"step-{step:07d}.png",
                             config, device)
            # The snapshot before the checkpoint: a kill between the two redoes the step and
            # rewrites the snapshot; the other order would lose it for good.
            if main and config.train.snapshot_every and step % config.train.snapshot_every == 0:
                save_snapshot(nets.eval_generator, config, step, run_dir / f"snapshot-{step:07d}.pt")
            if step % config.train.checkpoint_every == 0 or step == end:
                save_checkpoint()
        bar.close()

        # ------------------------------------------------------------------------- the end
        done = step >= total
        if done and main and not (run_dir / FINAL).exists():
            save_snapshot(nets.eval_generator, config, step, run_dir / FINAL)
        if done and main:
            # A complete run needs no fallback for a damaged latest checkpoint (the final
            # snapshot is what evaluation reads), and the fallback is the largest file in the
            # folder: 0.3 GB a main-model run, 80 MB a smoke run.
            (run_dir / PREVIOUS).unlink(missing_ok=True)
        if world > 1:
            dist.barrier()
        return {"step": step, "total_steps": total, "done": done, "last": last,
                "weights_sha1": weights_digest(nets.g_plain, nets.d_plain)}


def weights_digest(*modules: torch.nn.Module) -> str:
    """SHA-1 of every parameter: equal digests mean bit-identical weights. (BatchNorm running
    statistics are left out: under DDP each rank updates its own until the next broadcast.)"""
    h = hashlib.sha1()
    for m in modules:
        for k, v in sorted(m.named_parameters()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def is_complete(run_dir) -> bool:
    return (Path(run_dir) / FINAL).exists()


# ----------------------------------------------------------------------------- command line

def add_train_arguments(sp) -> None:
    add_config_arguments(sp)
    sp.add_argument("--run-dir", required=True, help="the run folder: created for a new run, "
                    "resumed where it stopped for an existing one")


def train_main(args) -> None:
    summary = train(config_from_arguments(args), args.run_dir)
    print(json.dumps(summary))
