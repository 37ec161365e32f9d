"""`python -m paperlib long-run`: one recipe trained for many more steps than the notebooks give
it, its seeds side by side, and its reference use measured at every snapshot while it trains.

Why: on the two-core CPU the recipe gets 1,000 to 3,000 steps. Whether it keeps improving with
more, or flattens, takes a GPU (results/gpu/README.md). The command trains --profile (default
mini, plus any --set) with its schedule stretched to --steps, or to the steps that fit --budget
seconds after timing a short run of each seed on this device, and keeps --snapshots snapshots.
Each snapshot is measured by `paperlib.evaluation.dynamics.reference_use_curve` (region dE00 and
its lightness / chroma / hue split, ref_gain_de_self, palette_follow_cross, attention hit rate;
no FID) on the test split and on the first --train-n training images, on the CPU. The seeds'
trainings and measurements are the jobs of one `paperlib.training.parallel` pool: per seed, one
worker trains and one measures.

Run folders (checkpoints, snapshots, the measurement cache) go to --work (default
runs/<profile>/long-run); --out (default the same folder) gets what is kept:
  curves-seed<S>.jsonl   one line per (snapshot, split)
  stats-seed<S>.jsonl    the run's training log
  samples-seed<S>.png    test images through the last snapshot
  meta.json              the plan, each run's config, timings and versions
  log.txt                what the command printed
Rerunning the same command (with the --steps it printed) resumes the runs and measures only
new snapshots. `python -m paperlib long-run-summary <out>` tabulates and plots the folder.
"""
from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import Config, check_config, get_profile, override
from ..data.datasets import build_dataset
from ..evaluation.dynamics import reference_use_curve, snapshots, training_seconds
from ..evaluation.evaluate import generate, git_commit
from ..paths import atomic_write
from ..training.loop import is_complete, resolve_device, train
from ..training.parallel import run_in_workers
from ..training.snapshot import FINAL, load_generator
from ..training.stats import STATS, read_stats
from .figures import save_grid
from .registry import run_overrides
from .reproduce import runs_dir

# Budget planning. The step time is the median log window of a short run (CAL_WINDOWS windows of
# CAL_WINDOW steps after one for start-up and warm-up), timed while the other seeds time theirs,
# so it includes the sharing of the device. The plan keeps RESERVE_SECONDS back for the
# snapshot and checkpoint writes and inflates the step time by SAFETY, as runs sharing a GPU
# with measurement workers slow down a little over time.
CAL_WINDOW = 25
CAL_WINDOWS = 6
RESERVE_SECONDS = 12.0
SAFETY = 1.12
MAX_STEPS = 30000
PROGRESS_SECONDS = 30.0  # between progress lines while the pool works
POLL_SECONDS = 5.0  # between looks for new snapshots
SAMPLE_IMAGES = 8


@dataclass(frozen=True)
class LongRun:
    """What the command trains and measures (its command-line options)."""
    out: str
    work: str
    profile: str = "mini"
    seeds: tuple = (0, 1)
    steps: int = 8800  # 0: as many as fit budget_seconds
    budget_seconds: float = 0.0
    round_to: int = 800  # a budgeted step count is a multiple of this
    snapshots: int = 8
    device: str = "auto"
    augment_on_device: bool = False
    sets: tuple = ()
    test_n: int = 0  # 0: the whole test split
    train_n: int = 48  # 0: no training-image curve
    workers: int = 0  # 0: two per seed (one trains, one measures)
    samples: bool = True
    run: str = ""  # a run of the experiment registry: its overrides come before `sets`
    split: str = "test"  # the split each snapshot is measured on ("val" needs data.val_holdout)
    hue: bool = False  # also measure evaluate.hue_transfer at each snapshot


def check(plan: LongRun) -> LongRun:
    """A ValueError naming the option for values the run cannot use; the plan otherwise."""
    if not plan.seeds or len(set(plan.seeds)) != len(plan.seeds):
        raise ValueError(f"--seeds {' '.join(map(str, plan.seeds))}: give one or more distinct seeds")
    if plan.steps and plan.budget_seconds:
        raise ValueError("--steps and --budget both given: the budget chooses the steps")
    if plan.steps < 0:
        raise ValueError(f"--steps {plan.steps}: must be a positive number of steps")
    if plan.steps == 0 and plan.budget_seconds <= RESERVE_SECONDS:
        raise ValueError(f"--budget {plan.budget_seconds:g}: must be more than the "
                         f"{RESERVE_SECONDS:g} s kept back for writing snapshots (or give --steps)")
    for option, value in (("--snapshots", plan.snapshots), ("--round", plan.round_to)):
        if value < 1:
            raise ValueError(f"{option} {value}: must be at least 1")
    for option, value in (("--test-n", plan.test_n), ("--train-n", plan.train_n),
                          ("--workers", plan.workers)):
        if value < 0:
            raise ValueError(f"{option} {value}: must be 0 or more")
    return plan


def run_config(plan: LongRun, seed: int, steps: int) -> Config:
    """The profile with its schedule stretched to `steps`: plan.snapshots snapshots, a
    checkpoint with each, one sample grid at the end; then plan.sets."""
    snapshot_every = max(1, steps // plan.snapshots)
    base = get_profile(plan.profile)
    if plan.run:
        dataset = dict(s.split("=", 1) for s in plan.sets).get("data.dataset")
        base = override(base, {"data.dataset": dataset or base.data.dataset})
        base = override(base, run_overrides(plan.profile, plan.run, base.data.dataset))
    c = override(base, [
        f"train.device={plan.device}", f"train.seed={seed}", f"train.max_steps={steps}",
        f"train.snapshot_every={snapshot_every}", f"train.checkpoint_every={snapshot_every}",
        f"train.sample_every={steps}", *plan.sets])
    if c.loss.lambda_perc == 0 and c.loss.lambda_style == 0:
        # The perceptual network is built but never called: no weight file is needed.
        c = override(c, ["loss.random_perceptual_weights=true"])
    return check_config(c)


def budget_steps(budget_seconds: float, seconds_per_step: float, round_to: int) -> int:
    """The most steps, a multiple of round_to (at least one round, at most MAX_STEPS), that fit
    the budget at the given step time."""
    n = int((budget_seconds - RESERVE_SECONDS) / (seconds_per_step * SAFETY))
    return max(round_to, min(MAX_STEPS // round_to * round_to, n // round_to * round_to))


# ----------------------------------------------------------------- the pool's jobs

def _job(task: str, seed: int, *args):
    """One job of the pool: "time", "train" or "measure" for one seed."""
    return {"time": time_steps, "train": train_seed, "measure": measure_snapshots}[task](*args)


def time_steps(config: Config, work: str, augment_on_device: bool) -> float:
    """Seconds per training step of `config` on its device, from a throwaway run."""
    steps = CAL_WINDOW * (CAL_WINDOWS + 1)
    c = override(config, {"train.max_steps": steps, "train.log_every": CAL_WINDOW,
                          "train.snapshot_every": 0, "train.sample_every": steps,
                          "train.checkpoint_every": steps})
    Path(work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="timing-") as tmp:
        train(c, tmp, progress=False, augment_on_device=augment_on_device)
        rates = [r["images_per_sec"] for r in read_stats(tmp)[1:]]  # the first window warms up
    return c.train.batch_size / statistics.median(rates)


def train_seed(config: Config, run_dir: str, augment_on_device: bool, log_file: str) -> dict:
    """Train (or resume) one seed's run; what meta.json records of it."""
    device = resolve_device(config.train.device)
    info = {"seed": config.train.seed, "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "python": sys.version.split()[0],
            "threads": torch.get_num_threads(), "augment_on_device": augment_on_device,
            "max_steps": config.train.max_steps, "snapshot_every": config.train.snapshot_every,
            "t_train_start": time.time()}
    log(log_file, f"seed{config.train.seed}", f"training {config.train.max_steps} steps on "
        f"{info['gpu'] or device}, a snapshot every {config.train.snapshot_every}, in {run_dir}")
    summary = train(config, run_dir, progress=False, augment_on_device=augment_on_device)
    # from the training log, so that a run resumed over several calls counts all of them
    info.update(t_train_end=time.time(), summary=summary, train_seconds=training_seconds(run_dir))
    log(log_file, f"seed{config.train.seed}", f"done: step {summary['step']}, "
        f"{info['train_seconds']:.0f} s of training; last g_rec "
        f"{summary['last'].get('g_rec', math.nan):.4f}")
    return info


def measure_snapshots(run_dir: str, splits: list, log_file: str, hue: bool = False,
                      label: str = "") -> int:
    """Measure each snapshot of a run on each (split, n) as it appears, until the run is
    complete and all of them are measured; returns the number of (snapshot, split) rows.
    Log lines name the run by `label` (default its folder's name)."""
    seen = {split: 0 for split, _ in splits}
    while True:
        finished = is_complete(run_dir)  # read before measuring: no snapshot can follow it
        for split, n in splits if snapshots(run_dir) else []:
            curve = reference_use_curve(run_dir, split=split, n=n, progress=False, hue=hue)
            for _, r in curve.iloc[seen[split]:].iterrows():
                turned = (f", dH* {r['region_dh_self']:.2f}, a*<-a* {r['transfer_aa']:.2f}, "
                          f"b*<-b* {r['transfer_bb']:.2f}" if hue else "")
                log(log_file, "curve", f"{label or Path(run_dir).name} step {int(r['step']):6d} {split:5s} "
                    f"n={n}: region dE00 {r['region_de_self']:.2f}, gain "
                    f"{r['ref_gain_de_self']:.2f}, palette ratio {r['palette_follow_cross']:.3f}, "
                    f"hit {r['attention_hit_rate']:.3f}{turned}")
            seen[split] = len(curve)
        if finished:
            return sum(seen.values())
        time.sleep(POLL_SECONDS)


# ------------------------------------------------------------------- the command

def log(log_file, tag: str, message: str) -> None:
    """Print a line and append it to log.txt (workers too: a short append is atomic)."""
    line = f"[{time.strftime('%H:%M:%S')} {tag}] {message}"
    print(line, flush=True)
    with open(log_file, "a") as f:
        f.write(line + "\n")


def run(plan: LongRun) -> dict:
    """Train and measure the plan's seeds, then write the --out folder; returns meta.json."""
    check(plan)
    out, work = Path(plan.out), Path(plan.work)
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / "log.txt"
    workers = plan.workers or 2 * len(plan.seeds)
    t0 = time.time()
    log(log_file, "start", f"profile {plan.profile}, seeds {list(plan.seeds)}, work {work}, "
        f"{workers} worker process(es); torch {torch.__version__}, commit {git_commit()}")

    steps, timing = plan.steps, {}
    if not steps:
        # the step count is part of each run's config (its schedule), so it is fixed first
        jobs = [("time", s, run_config(plan, s, plan.round_to), str(work), plan.augment_on_device)
                for s in plan.seeds]
        seconds = run_in_workers(_job, jobs, workers, name=lambda job: f"timing seed {job[1]}")
        timing = {"sec_per_step": dict(zip(plan.seeds, seconds)), "budget_seconds": plan.budget_seconds}
        steps = budget_steps(plan.budget_seconds, max(seconds), plan.round_to)
        log(log_file, "plan", f"{max(seconds) * 1e3:.1f} ms/step (the slowest of "
            f"{len(seconds)} seeds timed side by side): {steps} steps fit "
            f"{plan.budget_seconds:.0f} s; rerun with --steps {steps} to resume")

    configs = {s: run_config(plan, s, steps) for s in plan.seeds}
    first = configs[plan.seeds[0]]
    splits = [(plan.split, plan.test_n or len(build_dataset(first.data, plan.split)))]
    if plan.train_n:
        splits.append(("train", plan.train_n))
    folders = {s: work / f"seed{s}" for s in plan.seeds}
    jobs = ([("train", s, configs[s], str(folders[s]), plan.augment_on_device, str(log_file))
             for s in plan.seeds]
            # measurement jobs after the trainings: a worker that waits for snapshots never
            # holds up the training that writes them
            + [("measure", s, str(folders[s]), splits, str(log_file), plan.hue)
               for s in plan.seeds])
    shown = [time.monotonic()]

    def progress(finished: int, _any_ended: bool) -> None:
        if time.monotonic() - shown[0] >= PROGRESS_SECONDS:
            shown[0] = time.monotonic()
            log(log_file, "progress", f"+{time.time() - t0:.0f}s | " + " | ".join(
                _progress_line(s, folders[s]) for s in plan.seeds)
                + f" | {finished}/{len(jobs)} jobs done")

    results = run_in_workers(_job, jobs, workers, on_poll=progress,
                             name=lambda job: f"{'training' if job[0] == 'train' else 'measuring'} "
                                              f"seed {job[1]}")
    trained = dict(zip(plan.seeds, results[:len(plan.seeds)]))
    meta = {"plan": {**asdict(plan), "steps": steps, **timing}, "git_commit": git_commit(),
            "splits": splits, "t0": t0, "runs": {}}
    for s in plan.seeds:
        runner = {**trained[s], **({"sec_per_step": timing["sec_per_step"][s]} if timing else {})}
        meta["runs"][str(s)] = collect(folders[s], s, out, splits, plan.samples, log_file, runner,
                                       plan.hue)
    meta["finished_at_s"] = time.time() - t0
    text = json.dumps(meta, indent=1, default=str) + "\n"
    atomic_write(out / "meta.json", lambda f: f.write(text.encode()))
    log(log_file, "end", f"{len(list(out.iterdir()))} files in {out} after {meta['finished_at_s']:.0f} s")
    return meta


def _progress_line(seed: int, run_dir: Path) -> str:
    rows = read_stats(run_dir)
    last = rows[-1] if rows else {}
    return (f"seed{seed}: step {last.get('step', 0)} {last.get('images_per_sec', 0):.0f} img/s "
            f"g_rec {last.get('g_rec', math.nan):.3f}, {len(snapshots(run_dir))} snapshots")


def collect(run_dir: Path, seed: int, out: Path, splits: list, samples: bool, log_file,
            runner: dict, hue: bool = False) -> dict:
    """Copy a finished run's log and curves into `out`, draw its sample grid; meta.json's entry."""
    if (run_dir / STATS).exists():
        shutil.copyfile(run_dir / STATS, out / f"stats-seed{seed}.jsonl")
    found = snapshots(run_dir)
    rows = []
    for split, n in splits if found else []:
        rows += reference_use_curve(run_dir, split=split, n=n, progress=False,
                                    hue=hue).to_dict("records")
    rows.sort(key=lambda r: (r["step"], r["split"]))
    text = "".join(json.dumps({**r, "seed": seed}) + "\n" for r in rows)
    (out / f"curves-seed{seed}.jsonl").write_text(text)
    entry = {"runner": runner, "config": json.loads((run_dir / "config.json").read_text()),
             "snapshots": [step for step, _ in found], "final_snapshot": (run_dir / FINAL).exists(),
             "last_stats": (read_stats(run_dir) or [{}])[-1]}
    if found and samples:
        sample_grid(found[-1][1], out / f"samples-seed{seed}.png")
        entry["samples_step"] = found[-1][0]
    log(log_file, "collect", f"seed {seed}: {len(rows)} curve rows, {len(found)} snapshots")
    return entry


def sample_grid(snapshot, path: Path, n: int = SAMPLE_IMAGES) -> None:
    """sketch | reference s(a(I)) | output | ground truth a(I) | another image | output with it,
    for n test images spread over the split (its first images are all flags and letters)."""
    G, cfg, step = load_generator(snapshot, "cpu")
    full = build_dataset(cfg.data, "test")
    idx = sorted({round(i * (len(full) - 1) / max(n - 1, 1)) for i in range(n)})
    out = generate(G, torch.utils.data.Subset(full, idx), batch_size=n, seed=0,
                   data_cfg=cfg.data, progress=False)
    save_grid([out["sketch"].expand(-1, 3, -1, -1), out["reference"], out["self"], out["target"],
               out["cross_reference"], out["cross"]], path,
              titles=["sketch", "reference s(a(I))", f"output, step {step}", "ground truth a(I)",
                      "other test image", "output with it"])


# ----------------------------------------------------------------------------- command line

def add_long_run_arguments(sp) -> None:
    sp.description = ("Train --profile with its schedule stretched to --steps (or to what fits "
                      "--budget), seeds side by side, and measure every snapshot with "
                      "evaluate.reference_use while it trains; see results/gpu/README.md.")
    sp.add_argument("--work", default=None,
                    help="folder for the run folders (checkpoints, snapshots; default "
                         "runs/<profile>/long-run)")
    sp.add_argument("--out", default=None, help="folder for the curves, logs, samples and "
                    "meta.json (default: the --work folder)")
    sp.add_argument("--profile", default="mini", help="the recipe (default mini)")
    sp.add_argument("--seeds", type=int, nargs="+", default=[0, 1], metavar="SEED",
                    help="one run per seed, side by side (default 0 1)")
    steps = sp.add_mutually_exclusive_group()
    steps.add_argument("--steps", type=int, default=None,
                       help="training steps of each run (default 8800, as in results/gpu)")
    steps.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                       help="instead of --steps: time each seed's step on this device, then "
                            "train as many steps as fit this many seconds")
    sp.add_argument("--round", type=int, default=800, help="with --budget: the step count is a "
                    "multiple of this")
    sp.add_argument("--snapshots", type=int, default=8, help="snapshots over each run")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sp.add_argument("--augment-on-device", action="store_true",
                    help="build the augmented-self pair on the training device (for GPUs: the "
                         "same random draws, not bit-identical arithmetic)")
    sp.add_argument("--test-n", type=int, default=0,
                    help="test images each snapshot is measured on (0: the whole split)")
    sp.add_argument("--train-n", type=int, default=48,
                    help="training images each snapshot is also measured on (0: none)")
    sp.add_argument("--workers", type=int, default=0,
                    help="worker processes (default two per seed: one trains, one measures)")
    sp.add_argument("--no-samples", dest="samples", action="store_false",
                    help="draw no sample grid")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the recipe, e.g. --set train.ema_decay=0.999")
    sp.add_argument("--run", default="", help="start from this run of the experiment registry "
                    "(its overrides of --profile; --set comes after them)")
    sp.add_argument("--split", default="test", help="the split each snapshot is measured on "
                    "(--test-n images of it; 'val' needs data.val_holdout > 0)")
    sp.add_argument("--hue", action="store_true", help="also measure the hue probe "
                    "(evaluate.hue_transfer: the 2x2 chroma map) at every snapshot")


def long_run_main(args) -> None:
    length = ({"steps": 0, "budget_seconds": args.budget} if args.budget is not None
              else {} if args.steps is None else {"steps": args.steps})
    work = args.work or str(runs_dir(args.profile) / "long-run")
    run(LongRun(out=args.out or work, work=work, profile=args.profile,
                seeds=tuple(args.seeds), **length,
                round_to=args.round, snapshots=args.snapshots, device=args.device,
                augment_on_device=args.augment_on_device, sets=tuple(args.set),
                test_n=args.test_n, train_n=args.train_n, workers=args.workers,
                samples=args.samples, run=args.run, split=args.split, hue=args.hue))
