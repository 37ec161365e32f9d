"""What `make reproduce` will train here, and how long that takes on this CPU, measured first.

Before the notebooks run, `plan` times a few training steps of each kind of run they will train
(the arms on the main recipe, by aggregation and loss; each precision) on one worker's share
of the threads, alone. Two runs side by side are slower than either alone (they share the
memory bandwidth and caches: 1.04x on a 2-core AMD EPYC with AVX2 in fp32, about 1.5x with
AVX-512 BF16 in bf16), and a run left alone takes every core (training.parallel.share_cores).
So `plan` also times the main model's step side by side and on every core, and plays each
notebook's pool through with those factors (`pool_seconds`). Evaluation (FID features, colour
errors) comes on top.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..config import Config
from ..training.loop import is_complete
from ..training.parallel import default_workers, run_in_workers, steps_done, threads_per_worker
from ..training.precision import cpu_name, resolve
from ..training.steptime import step_seconds
from .registry import SEEDS, TRAINED_BY, precision_runs, run_config, run_path, study_seeds

# Steps timed per kind of run after the warm-up: enough for a median that holds to about 10%.
TIMED_STEPS = 3


def notebook_jobs(notebook: str, seeds=SEEDS) -> list[tuple[str, int]]:
    """The (run, seed) pairs notebook `notebook` ("02", "03", ...) trains, as its job list does:
    its arms with every seed; 02 also the precision check with the first."""
    jobs = [(name, s) for name, nb in TRAINED_BY.items() if nb == notebook for s in seeds]
    if notebook == "02":
        jobs += [(name, seeds[0]) for name in precision_runs().values()]
    return jobs


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
    minutes: dict[str, float] = field(default_factory=dict)  # per notebook ("02": ...)
    steps: dict[str, int] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)  # per run name timed
    side_by_side: float = 1.0  # a step with `workers` runs at once, over one alone
    lone: float = 1.0  # a step alone on every core, over one on a worker's share
    cores: int = 1

    def total_minutes(self) -> float:
        return sum(self.minutes.values())

    def summary(self) -> str:
        lines = [f"CPU: {self.cpu}", self.precision]
        if not any(self.steps.values()):
            return "\n".join(lines + ["Every run these notebooks train is complete: nothing to train."])
        timed = ", ".join(f"{n} {s:.2f} s" for n, s in self.step_seconds.items())
        lines.append(f"A step here, {self.threads} thread(s) each, {TIMED_STEPS} timed after a "
                     f"warm-up: {timed}")
        if self.workers > 1:
            lines.append(f"Side by side ({self.workers} runs at once) a step takes "
                         f"{self.side_by_side:.2f}x as long; a run left alone, on {self.cores} "
                         f"threads, {self.lone:.2f}x")
        per = ", ".join(f"{nb} {m:.0f} min" for nb, m in self.minutes.items() if m)
        lines.append(f"Estimated training time: {self.total_minutes():.0f} min "
                     f"({sum(self.steps.values())} steps, {self.workers} runs at a time: {per}); "
                     f"evaluation comes on top")
        return "\n".join(lines)


def pool_seconds(seconds: list[float], workers: int, side_by_side: float = 1.0,
                 lone: float = 1.0) -> float:
    """Wall seconds of a pool of `workers` running jobs that take `seconds` each alone on a
    worker's share of the threads. Longest first, as study.parallel.ensure_runs orders them;
    while every worker is busy each job runs `side_by_side` times slower, and while fewer are
    busy (the pool's tail), `lone` times its time alone (the busy ones take the idle cores).
    With one worker, the sum."""
    left = sorted((s for s in seconds if s > 0), reverse=True)
    if workers <= 1:
        return sum(left)
    running: list[float] = []
    wall = 0.0
    while left or running:
        while left and len(running) < workers:
            running.append(left.pop(0))
        factor = side_by_side if len(running) == workers else lone
        first = min(running)
        wall += first * factor
        running = [r - first for r in running if r - first > 1e-12]
    return wall


def side_by_side_seconds(config: Config, workers: int, timed_steps: int, warmup: int,
                         threads: int) -> float:
    """Median seconds of a step of `config` while `workers` copies step at once, each on
    `threads` threads (as the pool trains them)."""
    times = run_in_workers(step_seconds, [(config, timed_steps, warmup, threads)] * workers,
                           workers, name=lambda job: "timing a step side by side", share=False)
    return sorted(times)[len(times) // 2]


def plan(profile: str, dataset: str, notebooks: list[str], *, timed_steps: int = TIMED_STEPS,
         warmup: int = 1) -> Plan:
    """The training still to do in `notebooks` (names like "02_training.ipynb"), timed here."""
    workers = default_workers()
    threads = threads_per_worker(workers)
    base = run_config(profile, "scft-triplet", 0, dataset)
    decision = resolve(base.train.precision, "cpu", warn=False)
    out = Plan(cpu_name(), decision.line(), decision.precision, workers, threads,
               cores=os.cpu_count() or 1)
    seconds_by_kind: dict[tuple, float] = {}
    per_notebook: dict[str, list[float]] = {}
    for nb in notebooks:
        key = nb[:2]
        jobs: list[float] = []
        steps = 0
        for name, seed in dict.fromkeys(notebook_jobs(key, study_seeds(profile))):
            path = run_path(profile, name, seed, dataset)
            if is_complete(path):
                continue
            config = run_config(profile, name, seed, dataset)
            left = max(0, config.train.max_steps - steps_done(path))
            kind = step_kind(replace(config, train=replace(
                config.train, precision=resolve(config.train.precision, "cpu", warn=False).precision)))
            if kind not in seconds_by_kind:
                seconds_by_kind[kind] = step_seconds(config, timed_steps, warmup, threads)
                out.step_seconds[name] = seconds_by_kind[kind]
            jobs.append(left * seconds_by_kind[kind])
            steps += left
        per_notebook[key] = jobs
        out.steps[key] = steps
    if workers > 1 and any(out.steps.values()):
        # The factors of the main model's step stand for every kind: each costs one more
        # timing, and the kinds differ in their loss terms, not in what pairs them.
        alone = step_seconds(base, timed_steps, warmup, threads)
        out.side_by_side = side_by_side_seconds(base, workers, timed_steps, warmup, threads) / alone
        out.lone = step_seconds(base, timed_steps, warmup, out.cores) / alone
    for key, jobs in per_notebook.items():
        out.minutes[key] = pool_seconds(jobs, workers, out.side_by_side, out.lone) / 60
    return out
