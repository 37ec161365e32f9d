"""What `make reproduce` will train here, and how long that takes on this CPU, measured first.

Before the notebooks run, `plan` times a few training steps of each kind of run they will train
(the arms on the main recipe, by aggregation and loss; each precision) on one worker's share
of the threads, alone. Two runs side by side are slower than either alone (they share the
memory bandwidth and caches: 1.0-1.15x on a 2-core AMD EPYC with AVX2 only in fp32, in
results/fp32/plan_main_recipe_avx2.txt; about 1.5x on one with AVX-512 BF16 in bf16, read off
the OpenMoji reproduction's progress bars), and a run left alone takes every core (training.parallel.share_cores).
So `plan` also times the main model's step side by side and on every core, and plays each
notebook's pool through with those factors (`pool_seconds`). Each run's evaluation rides in its
job: its FID Inception passes over the test split, timed per image here, and what an evaluation
spends beside them (EVAL_OVERHEAD). The notebooks' own cells (figures, the hue probe, tables)
are not counted: a minute or two per notebook.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field, replace

from ..config import Config
from ..evaluation.evaluate import read_metrics
from ..training.loop import is_complete
from ..training.parallel import default_workers, run_in_workers, steps_done, threads_per_worker
from ..training.precision import cpu_name, resolve
from ..training.steptime import step_seconds
from .registry import MAIN, SEEDS, TRAINED_BY, precision_runs, run_config, run_path, study_seeds

# Steps timed per kind of run after the warm-up: enough for a median that holds to about 10%.
TIMED_STEPS = 3
# Alternating rounds of the side-by-side and alone-on-every-core timings: a single timing of a
# few steps moves by 10-20% between calls on a quiet machine (AMD EPYC with AVX2 only).
FACTOR_ROUNDS = 2
# What an evaluation spends beside its Inception passes (generating the outputs, colour errors,
# SSIM and PSNR), as a fraction of the passes: 31 of 204 s on one main-recipe run evaluated on
# one thread (AMD EPYC with AVX2 only, fp32, 445 test images) [I].
EVAL_OVERHEAD = 0.15
# A step inside the training loop (data pipeline, logging, snapshots, checkpoints) against the
# bare step timed here: 0.615 s against 0.534 side by side, 0.40 s against 0.36 alone on two
# threads (notebook 06 on a 2-core AMD EPYC with AVX2 only, fp32, against its plan) [I].
LOOP_OVERHEAD = 1.12
# The side-by-side and alone factors are timed only when the work to plan, one job after the
# other, is at least this long: their timings (spawned workers, an Inception batch of 50) take
# a minute or two on a CPU without bf16 units, more than a small plan is worth.
FACTORS_FROM_SECONDS = 15 * 60


def notebook_jobs(notebook: str, seeds=SEEDS) -> list[tuple[str, int]]:
    """The (run, seed) pairs notebook `notebook` ("02", "03", ...) trains, as its job list does:
    its arms with every seed; 02 also the precision check with the first."""
    jobs = [(name, s) for name, nb in TRAINED_BY.items() if nb == notebook for s in seeds]
    if notebook == "02":
        jobs += [(name, seeds[0]) for name in precision_runs().values()]
    return jobs


# Notebook 09 (generalisation) trains on both datasets: its runs are generalisation's cases,
# not an arm's (registry.TRAINED_BY names none for it).
CROSS_DATASET_NOTEBOOK = "09"


def cross_dataset_jobs(seeds=SEEDS) -> list[tuple[str, int, str]]:
    """The (run, seed, dataset it trains on) triples notebook 09 trains:
    generalisation.training_jobs, flattened."""
    from .generalisation import training_jobs  # it imports reproduce, which plans with this module

    return [(name, s, d) for d, jobs in training_jobs(seeds=seeds).items() for name, s in jobs]


def cases_left(profile: str, name: str, seed: int, trained: str) -> int:
    """Notebook 09's evaluations that run `name` (seed `seed`, trained on `trained`) still owes:
    one per generalisation case it serves whose metrics are not stored yet (all of them for a
    run not trained yet)."""
    from .generalisation import CASES

    path = run_path(profile, name, seed, trained)
    cases = [c for c in CASES if c.run == name and c.trained == trained]
    if not is_complete(path):
        return len(cases)
    return sum(not read_metrics(path, split=c.split, dataset=c.tested, sketch_source=c.sketch)
               for c in cases)


def inception_passes(notebook: str, name: str) -> int:
    """FID Inception passes over the test split that notebook `notebook`'s pool spends on run
    `name` after training it: the outputs of the cross and self settings (2). Notebook 02
    evaluates the main model only; notebook 06 evaluates with the zero reference too, whose two
    settings share one pass (3)."""
    if notebook == "02":
        return 2 if name == MAIN else 0
    return 3 if notebook == "06" else 2


def passes_left(notebook: str, name: str, path) -> int:
    """`inception_passes` that run `name` (folder `path`) still needs: all of them unless it
    is trained; for a trained run (a resumed reproduction), the settings it has no metrics for
    yet (image reference: 2 passes; notebook 06's zero reference: 1)."""
    passes = inception_passes(notebook, name)
    if not passes or not is_complete(path):
        return passes
    left = 0 if read_metrics(path) else 2
    if passes == 3 and not read_metrics(path, no_reference=True):
        left += 1
    return left


def inception_seconds(threads: int, images: int = 50) -> float:
    """Seconds per image of the FID Inception here on `threads` threads, on one batch of
    `images` (an evaluation's batch: fid.activations' default, whose activations at 299 px
    decide how much two processes contend), after a one-image warm-up. It resizes every image
    to 299 px, so the size fed in does not matter."""
    import torch

    from ..evaluation import fid

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = fid.inception()
        x = torch.rand(images, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
        fid.activations(x[:1], net, progress=False)
        t0 = time.perf_counter()
        fid.activations(x, net, batch_size=images, progress=False)
        return (time.perf_counter() - t0) / images
    finally:
        torch.set_num_threads(before)


def test_images(config: Config) -> int:
    """Images an evaluation scores: the test split (rendered here if it is not yet), or
    data.eval_limit of them."""
    from ..data.datasets import build_dataset

    n = len(build_dataset(config.data, "test"))
    return min(n, config.data.eval_limit) if config.data.eval_limit else n


def step_kind(config: Config) -> tuple:
    """What a step's cost depends on: the networks' shapes, which loss terms run (the VGG and
    the discriminator), the precision, the batch; not the seed, steps or schedule."""
    m, loss, t = config.model, config.loss, config.train
    return (m.width, m.aggregation, tuple(m.encoder_strides), m.res_channels, config.data.resolution,
            loss.correspondence_loss, loss.lambda_adv > 0, loss.lambda_perc > 0 or loss.lambda_style > 0,
            t.precision, t.batch_size, t.ema_decay > 0)


@dataclass
class Plan:
    cpu: str
    precision: str  # the line `auto` resolves to here
    precision_name: str  # its precision alone ("bf16", "fp32")
    workers: int
    threads: int
    minutes: dict[str, float] = field(default_factory=dict)  # per notebook ("02": ...), all in
    evaluation_minutes: dict[str, float] = field(default_factory=dict)  # their evaluations' part, alone
    steps: dict[str, int] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)  # per run name timed
    side_by_side: float = 1.0  # a step with `workers` runs at once, over one alone
    side_by_side_evaluation: float = 1.0  # the same for an Inception pass
    lone: float = 1.0  # a step alone on every core, over one on a worker's share
    cores: int = 1
    inception_seconds: float = 0.0  # per image, on a worker's share of the threads
    factors_timed: bool = False
    images: int = 0  # per evaluation pass

    def total_minutes(self) -> float:
        return sum(self.minutes.values())

    def summary(self) -> str:
        lines = [f"CPU: {self.cpu}", self.precision]
        if not any(self.steps.values()) and not any(self.evaluation_minutes.values()):
            return "\n".join(lines + ["Every run these notebooks train is complete: nothing to train."])
        if self.step_seconds:
            timed = ", ".join(f"{n} {s:.2f} s" for n, s in self.step_seconds.items())
            lines.append(f"A step here, {self.threads} thread(s) each, {TIMED_STEPS} timed after a "
                         f"warm-up: {timed}")
        else:
            lines.append("Every run these notebooks train is trained; some are not evaluated yet")
        if self.workers > 1 and not self.factors_timed:
            lines.append("Side by side and alone: not timed, the work is too small to be worth it")
        if self.workers > 1 and self.factors_timed and self.step_seconds:
            lines.append(f"Side by side ({self.workers} runs at once) a step takes "
                         f"{self.side_by_side:.2f}x as long; a run left alone, on {self.cores} "
                         f"threads, {self.lone:.2f}x")
        if self.images:
            lines.append(f"FID Inception here, {self.threads} thread(s): {self.inception_seconds:.3f} s "
                         f"per image, {self.images} test images per pass"
                         + (f"; side by side {self.side_by_side_evaluation:.2f}x as long"
                            if self.workers > 1 and self.factors_timed else ""))
        per = ", ".join(f"{nb} {m:.0f} min" for nb, m in self.minutes.items() if m)
        lines.append(f"Estimated time: {self.total_minutes():.0f} min, the runs' training and "
                     f"evaluation ({sum(self.steps.values())} steps, {self.workers} runs at a time: "
                     f"{per}); the evaluations alone would take "
                     f"{sum(self.evaluation_minutes.values()):.0f} of them one after the other; "
                     f"the notebooks' own cells come on top")
        return "\n".join(lines)


def pool_seconds(jobs, workers: int, side_by_side=1.0, lone: float = 1.0) -> float:
    """Wall seconds of a pool of `workers` running `jobs`, each a number of seconds alone on a
    worker's share of the threads, or a list of (seconds, phase) segments done in order (say
    training, then evaluation). Longest first, as study.parallel.ensure_runs orders them; while
    every worker is busy a job runs `side_by_side` times slower (a number, or a dict by phase),
    and while fewer are busy (the pool's tail), `lone` times its time alone (the busy ones take
    the idle cores). With one worker, the sum."""
    jobs = [[(float(j), None)] if isinstance(j, (int, float)) else [(float(w), ph) for w, ph in j]
            for j in jobs]
    jobs = sorted((j for j in jobs if sum(w for w, _ in j) > 0), key=lambda j: -sum(w for w, _ in j))
    if workers <= 1:
        return sum(w for j in jobs for w, _ in j)
    factor_of = side_by_side if isinstance(side_by_side, dict) else {}
    running: list[list[tuple[float, object]]] = []
    wall = 0.0
    while jobs or running:
        while jobs and len(running) < workers:
            running.append([seg for seg in jobs.pop(0) if seg[0] > 0])
        full = len(running) == workers
        factors = [(factor_of.get(job[0][1], 1.0) if factor_of else side_by_side) if full else lone
                   for job in running]
        # the wall time until the first running job ends its current segment
        dt = min(job[0][0] * f for job, f in zip(running, factors))
        wall += dt
        for job, f in zip(running, factors):
            work, phase = job[0]
            job[0] = (work - dt / f, phase)
            if job[0][0] <= 1e-9:
                job.pop(0)
        running = [job for job in running if job]
    return wall


def side_by_side_seconds(config: Config, workers: int, timed_steps: int, warmup: int,
                         threads: int) -> float:
    """Median seconds of a step of `config` while `workers` copies step at once, each on
    `threads` threads (as the pool trains them)."""
    times = run_in_workers(step_seconds, [(config, timed_steps, warmup, threads)] * workers,
                           workers, name=lambda job: "timing a step side by side", share=False)
    return statistics.median(times)


def side_by_side_inception_seconds(workers: int, threads: int) -> float:
    """inception_seconds while `workers` processes time it at once, each on `threads` threads."""
    times = run_in_workers(inception_seconds, [(threads,)] * workers, workers,
                           name=lambda job: "timing the Inception side by side", share=False)
    return statistics.median(times)


def plan(profile: str, dataset: str, notebooks: list[str], *, timed_steps: int = TIMED_STEPS,
         warmup: int = 1) -> Plan:
    """The training and evaluation still to do in `notebooks` (names like "02_training.ipynb"),
    timed here."""
    workers = default_workers()
    threads = threads_per_worker(workers)
    base = run_config(profile, MAIN, 0, dataset)
    decision = resolve(base.train.precision, "cpu", warn=False)
    out = Plan(cpu_name(), decision.line(), decision.precision, workers, threads,
               cores=os.cpu_count() or 1)
    seconds_by_kind: dict[tuple, float] = {}
    per_notebook: dict[str, list[tuple[float, int]]] = {}  # (training seconds, Inception passes)
    for nb in notebooks:
        key = nb[:2]
        jobs: list[tuple[float, int]] = []
        steps = 0
        seeds = study_seeds(profile)
        if key == CROSS_DATASET_NOTEBOOK:
            triples = cross_dataset_jobs(seeds)
        else:
            triples = [(name, s, dataset) for name, s in dict.fromkeys(notebook_jobs(key, seeds))]
        for name, seed, trained in triples:
            path = run_path(profile, name, seed, trained)
            # each of notebook 09's evaluations scores two settings, as an arm's does (2 passes)
            owed = (2 * cases_left(profile, name, seed, trained) if key == CROSS_DATASET_NOTEBOOK
                    else passes_left(key, name, path))
            if is_complete(path):
                # trained; what is left is its evaluation, if any (a resumed reproduction)
                if owed:
                    jobs.append((0.0, owed))
                continue
            config = run_config(profile, name, seed, trained)
            left = max(0, config.train.max_steps - steps_done(path))
            kind = step_kind(replace(config, train=replace(
                config.train, precision=resolve(config.train.precision, "cpu", warn=False).precision)))
            if kind not in seconds_by_kind:
                seconds_by_kind[kind] = step_seconds(config, timed_steps, warmup, threads)
                out.step_seconds[name] = seconds_by_kind[kind]
            jobs.append((left * seconds_by_kind[kind], owed))
            steps += left
        per_notebook[key] = jobs
        out.steps[key] = steps
    if not any(out.steps.values()) and not any(jobs for jobs in per_notebook.values()):
        out.minutes = dict.fromkeys(per_notebook, 0.0)
        return out
    passes = sum(n for jobs in per_notebook.values() for _, n in jobs)
    if passes:
        out.images = test_images(base)
        out.inception_seconds = inception_seconds(threads, images=2)
    work = (sum(t for jobs in per_notebook.values() for t, _ in jobs)
            + passes * out.images * out.inception_seconds)
    out.factors_timed = workers > 1 and work >= FACTORS_FROM_SECONDS
    if out.factors_timed and any(out.steps.values()):
        # The factors of the main model's step stand for every kind: each costs one more
        # timing, and the kinds differ in their loss terms, not in what pairs them. Timings
        # alternate, so that a drift of the machine falls on both sides of each ratio.
        alone, side, lone = [], [], []
        for _ in range(FACTOR_ROUNDS):
            alone.append(step_seconds(base, timed_steps, warmup + 1, threads))
            side.append(side_by_side_seconds(base, workers, timed_steps, warmup + 1, threads))
            lone.append(step_seconds(base, timed_steps, warmup + 1, out.cores))
        a = statistics.median(alone)
        # Held to their bounds against a noisy timing: two runs side by side are never faster
        # than one alone, and more threads never make a run slower.
        out.side_by_side = max(1.0, statistics.median(side) / a)
        out.lone = min(1.0, statistics.median(lone) / a)
    if out.factors_timed and passes:
        # Two Inception passes side by side may contend more than two training steps (the
        # activations at 299 px outgrow the caches): timed on a whole batch of 50 each.
        out.inception_seconds = inception_seconds(threads)
        out.side_by_side_evaluation = max(1.0, side_by_side_inception_seconds(workers, threads)
                                          / out.inception_seconds)
    pass_seconds = out.images * out.inception_seconds * (1 + EVAL_OVERHEAD)
    factors = {"train": out.side_by_side, "evaluate": out.side_by_side_evaluation}
    first = True  # the real images' pass, once (then cached)
    for key, jobs in per_notebook.items():
        phases = [[(train * LOOP_OVERHEAD, "train"), (passes * pass_seconds, "evaluate")]
                  for train, passes in jobs]
        evaluation = sum(passes for _, passes in jobs) * pass_seconds
        if first and evaluation:
            phases[0][1] = (phases[0][1][0] + out.images * out.inception_seconds, "evaluate")
            evaluation += out.images * out.inception_seconds
            first = False
        out.evaluation_minutes[key] = evaluation / 60
        out.minutes[key] = pool_seconds(phases, workers, factors, out.lone) / 60
    return out
