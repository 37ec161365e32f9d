"""Where runs and results live, and the headless papermill runner behind `make reproduce`.

Notebooks run in name order (01_..., 02_..., ...). Each is executed into `.executed/` and copied
over the committed notebook only when it finished, so an interrupted run never leaves a
half-written notebook; rerunning resumes, because every notebook skips training runs that are
complete and continues those that are not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..config import (Config, STUDY_DATASETS, add_config_arguments, config_from_arguments,
                      get_dataset)
from ..paths import atomic_write, repo_root


def prepare(config: Config) -> dict:
    """Build (and cache) every split (faces: train, test, test-unseen), convert the FID weights;
    return the split counts."""
    # here, not at the top: the data and FID modules import torch, which the runner of the
    # notebooks (`reproduce --no-plan`) and the folders' functions never need
    from ..data.prepare import split_counts
    from ..evaluation import fid

    counts = split_counts(config)
    counts["fid_weights"] = str(fid.convert_fid_weights().name)
    return counts


def runs_dir(profile: str, dataset: str | None = None) -> Path:
    """runs/<profile> for OpenMoji, runs/<profile>-<dataset> for another study dataset;
    `dataset` None means $PAPERLIB_DATASET, else openmoji (config.get_dataset)."""
    dataset = get_dataset(dataset)
    return repo_root() / "runs" / (profile if dataset == "openmoji" else f"{profile}-{dataset}")


def results_dir(profile: str, dataset: str | None = None) -> Path:
    """mini writes the committed results/ (OpenMoji) and results/faces/; paper writes
    results/paper[/faces]; smoke never touches results/ (it writes beside its runs)."""
    dataset = get_dataset(dataset)
    root = repo_root()
    if profile == "smoke":
        d = runs_dir(profile, dataset) / "results"
    else:
        d = root / "results" if profile == "mini" else root / "results" / profile
        if dataset != "openmoji":
            d = d / dataset
    d.mkdir(parents=True, exist_ok=True)
    return d


def executed_notebook(nb: Path, profile: str, dataset: str | None = None) -> Path | None:
    """Where `make reproduce` keeps notebook `nb` with its outputs: over the committed notebook
    for mini on OpenMoji, in results/faces/notebooks/ for mini on faces; None for the other
    profiles, whose executed copies stay in .executed/ only."""
    if profile != "mini":
        return None
    dataset = get_dataset(dataset)
    if dataset == "openmoji":
        return nb
    return results_dir(profile, dataset) / "notebooks" / nb.name


# Notebooks that use both study datasets at once. `make reproduce DATASET=x` runs the others on
# x; these run after both datasets (DATASET=both), or alone with --only.
CROSS_DATASET = ("09_generalisation.ipynb",)


def notebooks(only: str | None = None, cross: bool = False) -> list[Path]:
    """The notebooks whose name contains `only`, or any of its comma-separated parts ("03,04":
    a reproduction resumed from notebook 03 on); without it, the per-dataset notebooks in order,
    or with `cross` the CROSS_DATASET ones. In a list, a part that names no notebook is an error."""
    found = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only is not None and "," in only:
        parts = [part.strip() for part in only.split(",")]
        for part in parts:
            if not part or not any(part in p.name for p in found):
                raise FileNotFoundError(f"--only {only!r}: no notebook's name contains {part!r} "
                                        f"in {repo_root() / 'notebooks'}")
        return [p for p in found if any(part in p.name for part in parts)]
    if only is not None:
        return [p for p in found if only in p.name]
    return [p for p in found if (p.name in CROSS_DATASET) == cross]


def split_for_both(only: str | None = None) -> tuple[list[Path], list[Path]]:
    """What dataset "both" runs, as (per, cross): `per` on each study dataset in turn, then
    `cross` once (the CROSS_DATASET notebooks' runs span both datasets: run, or counted, once)."""
    chosen = notebooks(only) if only is not None else notebooks() + notebooks(cross=True)
    if not chosen:
        raise FileNotFoundError(f"no notebooks matching {only!r} in {repo_root() / 'notebooks'}")
    return ([p for p in chosen if p.name not in CROSS_DATASET],
            [p for p in chosen if p.name in CROSS_DATASET])


def relativise(text: str, root: Path) -> str:
    """Strip this machine's checkout path from a notebook (papermill's metadata, warnings):
    committed notebooks name paths relative to the repository root."""
    return text.replace(str(root) + "/", "")


TIMES_HEADER = ("notebook", "profile", "minutes", "estimated_minutes", "cpu", "precision",
                "attempts")

# A notebook's clock: the minutes its attempts have run so far, rewritten this often while it
# runs, so that an attempt killed outright (SIGKILL, a reboot) still counts, to within this.
CLOCK_SECONDS = 30


def clock_path(profile: str, dataset: str, notebook: str) -> Path:
    """Where `notebook`'s clock lives: beside the runs it times, so that deleting the runs (a
    fresh reproduction) drops it too."""
    return runs_dir(profile, dataset) / "reproduce-clock" / f"{Path(notebook).stem}.json"


def read_clock(path: Path) -> tuple[float, int, bool]:
    """(minutes, attempts, finished) of a notebook in the reproduction under way; (0, 0, False)
    without a clock."""
    if not path.is_file():
        return 0.0, 0, False
    try:
        data = json.loads(path.read_text())
        return float(data["minutes"]), int(data["attempts"]), bool(data.get("finished", False))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a notebook clock ({e}); delete it to time the notebook "
                         "from this attempt on") from e


def write_clock(path: Path, minutes: float, attempts: int, finished: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"minutes": round(minutes, 4), "attempts": attempts, "finished": finished})
    atomic_write(path, lambda f: f.write(text.encode()))


class Clock:
    """Times one attempt at a notebook on top of the attempts before it (`read_clock`), and
    keeps the clock file current while the attempt runs (a daemon thread, every `every` s)."""

    def __init__(self, path: Path, every: float = CLOCK_SECONDS):
        self.path, self.every = path, every
        self.before, attempts, finished = read_clock(path)
        if finished:  # execute skips a finished notebook; timed afresh if run all the same
            self.before, attempts = 0.0, 0
        self.attempt = attempts + 1
        self.t0 = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)

    def minutes(self) -> float:
        return self.before + (time.time() - self.t0) / 60

    def beat(self) -> None:
        while not self.stop.wait(self.every):
            write_clock(self.path, self.minutes(), self.attempt)

    def __enter__(self) -> "Clock":
        write_clock(self.path, self.minutes(), self.attempt)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # a failed attempt counts too: the next one goes on from the runs it left
        self.stop.set()
        self.thread.join()
        write_clock(self.path, self.minutes(), self.attempt)

    def done(self) -> None:
        """The notebook finished: a rerun of the same reproduction skips it (`execute`) until
        the whole reproduction has finished and its clocks are dropped."""
        write_clock(self.path, self.minutes(), self.attempt, finished=True)


def update_times(text: str, notebook: str, profile: str, minutes: float,
                 estimated: float | None = None, cpu: str = "-", precision: str = "-",
                 attempts: int = 1) -> str:
    """reproduce_times.tsv with `notebook`'s row replaced by this run's time: one row per
    notebook for its last run (rows of other notebooks kept, so `--only 04` updates row 04
    alone), sorted by notebook name, under a header. Older files appended a row per run and had
    no header: their last row per notebook is kept. Rows from before the estimate, CPU and
    precision columns keep "-" there. The estimate is the time `estimate.plan` gave before the
    notebook ran (training and evaluation since the plan counts both; training alone before).
    `minutes` is the notebook's time over all its `attempts` (a reproduction stopped part-way
    and resumed: `Clock`); rows from before that column keep "-" there."""
    rows: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        fields = tuple(line.split("\t"))
        if fields[0] in TIMES_HEADER[:1] or len(fields) < 3:
            continue
        rows[fields[0]] = (fields + ("-",) * len(TIMES_HEADER))[:len(TIMES_HEADER)]
    rows[notebook] = (notebook, profile, f"{minutes:.2f}",
                      "-" if estimated is None else f"{estimated:.2f}", cpu, precision,
                      str(attempts))
    return "".join("\t".join(r) + "\n" for r in [TIMES_HEADER] + sorted(rows.values()))


def run_notebooks(profile: str | None = None, only: str | None = None,
                  dataset: str | None = None, planner=None) -> None:
    """Execute the notebooks headless in order with papermill, in the profile and on the
    dataset given; dataset "both" runs every study dataset in turn, then CROSS_DATASET.
    `planner(profile, dataset, names)`, when given, says before each dataset's notebooks what
    they will train and how long that takes here (`estimate.plan`)."""
    profile = profile or os.environ.get("PAPERLIB_PROFILE", "mini")
    if dataset == "both":
        per, cross = split_for_both(only)
        for d in STUDY_DATASETS if per else ():
            execute(profile, d, per, planner)
        if cross:  # once, after both datasets
            execute(profile, STUDY_DATASETS[0], cross, planner)
        # the whole reproduction has finished: the next one starts afresh
        for d in STUDY_DATASETS if per else ():
            drop_clocks(profile, d, per)
        if cross:
            drop_clocks(profile, STUDY_DATASETS[0], cross)
        return
    dataset = get_dataset(dataset)
    books = notebooks(only)
    if not books:
        raise FileNotFoundError(f"no notebooks matching {only!r} in {repo_root() / 'notebooks'}")
    execute(profile, dataset, books, planner)
    drop_clocks(profile, dataset, books)


def drop_clocks(profile: str, dataset: str, books: list[Path]) -> None:
    for nb in books:
        clock_path(profile, dataset, nb.name).unlink(missing_ok=True)


def execute(profile: str, dataset: str, books: list[Path], planner=None) -> None:
    """Run `books` in order with papermill and keep each executed copy (executed_notebook).
    A notebook that the reproduction under way already finished (its clock says so: the same
    command stopped in a later notebook and rerun) is skipped, so that its row of
    reproduce_times.tsv keeps the time it took; `run_notebooks` drops the clocks once every
    notebook it was given has finished."""
    plan = planner(profile, dataset, [b.name for b in books]) if planner else None
    if plan is not None:
        print(plan.summary(), flush=True)
    env = {**os.environ, "PAPERLIB_PROFILE": profile, "PAPERLIB_DATASET": dataset}
    out_dir = repo_root() / ".executed"
    if dataset != "openmoji":
        out_dir = out_dir / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    log = results_dir(profile, dataset) / "reproduce_times.tsv"
    for nb in books:
        print(f"== {nb.name} (profile {profile}, dataset {dataset})", flush=True)
        minutes, attempts, finished = read_clock(clock_path(profile, dataset, nb.name))
        if finished:
            print(f"   finished earlier in this reproduction ({minutes:.1f} min): skipped; delete "
                  f"{clock_path(profile, dataset, nb.name)} to run it again", flush=True)
            continue
        out = out_dir / nb.name
        # The profile and dataset travel through the environment, not `-p`: an injected
        # parameter cell would pin them inside the committed notebook and defeat the smoke checks.
        cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "--cwd", str(nb.parent),
               "--kernel", "python3", "--log-output", "--no-progress-bar"]
        with Clock(clock_path(profile, dataset, nb.name)) as clock:
            if clock.attempt > 1:
                print(f"   attempt {clock.attempt}: the earlier ones ran {clock.before:.1f} min",
                      flush=True)
            proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{nb.name} failed (papermill exit {proc.returncode}); the executed "
                               f"copy with the error is {out}")
        keep = executed_notebook(nb, profile, dataset)
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            text = relativise(out.read_text(), repo_root())
            atomic_write(keep, lambda f: f.write(text.encode()))
        minutes = clock.minutes()
        text = update_times(log.read_text() if log.exists() else "", nb.name, profile, minutes,
                            plan.minutes.get(nb.name[:2]) if plan else None,
                            plan.cpu if plan else "-", plan.precision_name if plan else "-",
                            clock.attempt)
        atomic_write(log, lambda f: f.write(text.encode()))
        clock.done()
        print(f"   done in {minutes:.1f} min" + (f" over {clock.attempt} attempts"
                                                 if clock.attempt > 1 else ""), flush=True)


# ----------------------------------------------------------------------------- command line

def add_prepare_arguments(sp) -> None:
    add_config_arguments(sp)


def prepare_main(args) -> None:
    print(json.dumps(prepare(config_from_arguments(args)), indent=2))


def add_reproduce_arguments(sp) -> None:
    sp.add_argument("--profile", default=None, help="smoke, mini or paper (default: "
                    "$PAPERLIB_PROFILE or mini)")
    sp.add_argument("--only", default=None, help="run only notebooks whose name contains this, "
                    "or any of its comma-separated parts (--only 03,04,06)")
    sp.add_argument("--dataset", default=None, help="openmoji or faces (default: "
                    "$PAPERLIB_DATASET, else openmoji); faces writes results/faces/")
    sp.add_argument("--plan", action="store_true",
                    help="only say what the notebooks would train and how long that takes on "
                         "this CPU (a few steps of each kind of run are timed), then stop")
    sp.add_argument("--no-plan", action="store_true",
                    help="start the notebooks without timing the plan first (a resumed "
                         "reproduction on a CPU without bf16 units spends a minute or two on it); "
                         "reproduce_times.tsv then has no estimate")


def reproduce_main(args) -> int:
    if args.plan and args.no_plan:
        raise SystemExit("--plan and --no-plan contradict each other: choose one")
    if args.no_plan:  # the runner alone does not import torch: each attempt starts seconds sooner
        run_notebooks(profile=args.profile, only=args.only, dataset=args.dataset)
        return 0
    # estimate reads the registry, which imports this module for runs_dir: imported here, once
    # both are loaded, so that neither needs the other half made
    from .estimate import plan  # a cycle: estimate -> registry -> reproduce
    if args.plan:
        profile = args.profile or os.environ.get("PAPERLIB_PROFILE", "mini")
        if args.dataset != "both":
            d = get_dataset(args.dataset)
            print(f"== {d}\n{plan(profile, d, [nb.name for nb in notebooks(args.only)]).summary()}")
            return 0
        # as run_notebooks runs them
        per, cross = ([nb.name for nb in part] for part in split_for_both(args.only))
        for d in STUDY_DATASETS if per else ():
            print(f"== {d}\n{plan(profile, d, per).summary()}")
        if cross:
            print(f"== both datasets: {', '.join(cross)}\n"
                  f"{plan(profile, STUDY_DATASETS[0], cross).summary()}")
        return 0
    run_notebooks(profile=args.profile, only=args.only, dataset=args.dataset, planner=plan)
    return 0
