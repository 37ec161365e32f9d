"""What `make reproduce` will train here, and how long that takes on this CPU, measured first.

Before the notebooks run, `plan` times a few training steps of each kind of run they will train
(the arms on the main recipe, by aggregation and loss; each precision), on one thread
each as the pool trains them, and multiplies by the steps still to train. Evaluation (FID
features, colour errors) comes on top: on the committed reproductions it is a few minutes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..config import Config
from ..training.loop import is_complete
from ..training.parallel import default_workers, steps_done, threads_per_worker
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

    def total_minutes(self) -> float:
        return sum(self.minutes.values())

    def summary(self) -> str:
        lines = [f"CPU: {self.cpu}", self.precision]
        if not any(self.steps.values()):
            return "\n".join(lines + ["Every run these notebooks train is complete: nothing to train."])
        timed = ", ".join(f"{n} {s:.2f} s" for n, s in self.step_seconds.items())
        lines.append(f"A step here, {self.threads} thread(s) each, {TIMED_STEPS} timed after a "
                     f"warm-up: {timed}")
        per = ", ".join(f"{nb} {m:.0f} min" for nb, m in self.minutes.items() if m)
        lines.append(f"Estimated training time: {self.total_minutes():.0f} min "
                     f"({sum(self.steps.values())} steps, {self.workers} runs at a time: {per}); "
                     f"evaluation comes on top")
        return "\n".join(lines)


def plan(profile: str, dataset: str, notebooks: list[str], *, timed_steps: int = TIMED_STEPS,
         warmup: int = 1) -> Plan:
    """The training still to do in `notebooks` (names like "02_training.ipynb"), timed here."""
    workers = default_workers()
    threads = threads_per_worker(workers)
    base = run_config(profile, "scft-triplet", 0, dataset)
    decision = resolve(base.train.precision, "cpu", warn=False)
    out = Plan(cpu_name(), decision.line(), decision.precision, workers, threads)
    seconds_by_kind: dict[tuple, float] = {}
    for nb in notebooks:
        key = nb[:2]
        total = 0.0
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
            total += left * seconds_by_kind[kind]
            steps += left
        out.minutes[key] = total / max(1, workers) / 60
        out.steps[key] = steps
    return out
