"""Fault tolerance, measured: SIGKILL during training and during `reproduce`, damaged
checkpoints, a full disk, and two processes on one run folder.

Kills at random moments come from outside (SIGKILL to a training process, `reproduce`'s and
its kernel's);
the windows too short to hit by chance (a checkpoint being written, the two renames that
replace it) are hit deterministically with the PAPERLIB_FAULT hook of `paperlib.training.faults`.
"""
import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import processes_with_env

from paperlib.config import get_profile, override
from paperlib.training.runlock import RunLock, RunLockedError
from paperlib.training.checkpoint import CheckpointError
from paperlib.training import faults
from paperlib.training.loop import train
from paperlib.training.snapshot import FINAL
from paperlib.training.stats import STATS

REPO = Path(__file__).resolve().parents[1]
STEPS = 24
# Half the smoke width: a quarter of its weights, so the many checkpoints these tests write
# (each fsynced) stay small.
WIDTH = 0.125


def env(**extra):
    """The environment of a child process: this checkout's paperlib first on the path."""
    path = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    e = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for k in ("PAPERLIB_FAULT", "PAPERLIB_FAULT_MARKER"):
        e.pop(k, None)
    e.update(extra)
    return e


def declare(request, row: str, n: int):
    request.node.user_properties.append(("survives", (row, n)))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from conftest import draw_shapes

    root = tmp_path_factory.mktemp("faults") / "images"
    root.mkdir()
    rng = np.random.default_rng(5)
    for i in range(16):
        Image.fromarray(draw_shapes(rng, 32)).save(root / f"img{i:02d}.png")
    return root


# The SIGKILL test's run: a smoke run on a folder of images, with these settings.
TRAIN_SETS = {"data.test_fraction": 0.0, "train.max_steps": STEPS, "train.checkpoint_every": 3,
              "train.snapshot_every": 4, "train.sample_every": 8, "model.width": WIDTH}


def train_cmd(root, run, *sets):
    return [sys.executable, "-m", "paperlib", "train", "--profile", "smoke", "--dataset",
            "folder", "--root", str(root), "--run-dir", str(run),
            *[a for k, v in TRAIN_SETS.items() for a in ("--set", f"{k}={v}")],
            *[a for s in sets for a in ("--set", s)]]


def digest_of(stdout: str) -> str:
    return json.loads(stdout.strip().splitlines()[-1])["weights_sha1"]


def wait_for(cond, timeout=120.0, proc=None, alive=None):
    """Wait until cond(); False if the process (a Popen `proc`, or `alive()` false) ends first."""
    t0 = time.time()
    while not cond():
        if proc is not None and proc.poll() is not None or alive is not None and not alive():
            return False
        if time.time() - t0 > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)
    return True


def stats_steps(run):
    return [json.loads(x)["step"] for x in (run / "stats.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ 1. SIGKILL during training

# The killed processes are forks of this one, which has paid for the imports and the first
# step's set-up once: a fresh `python -m paperlib train` spends some 7 s on them (torch, and
# torch._dynamo, which building an optimiser imports) before it takes the run folder, seven
# times over. What a kill can damage is the run folder, and a fork writes it as the command does.
FORK = multiprocessing.get_context("fork")


def fork_train(config, run, fault: str | None = None, marker: Path | None = None):
    """A forked process that trains `config` in `run` (PAPERLIB_FAULT=`fault` and
    PAPERLIB_FAULT_MARKER=`marker` in it) and exits."""
    def child():
        os.environ.pop(faults.MARKER_ENV, None)
        if marker:
            os.environ[faults.MARKER_ENV] = str(marker)
        if fault:
            os.environ[faults.ENV] = fault
        else:
            os.environ.pop(faults.ENV, None)
        train(config, run, progress=False)

    proc = FORK.Process(target=child, daemon=True)
    proc.start()
    return proc


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_sigkill_at_random_moments_and_mid_checkpoint_resumes_bit_exactly(images, tmp_path, request):
    """Five SIGKILLs of a training process: in the middle of writing checkpoint-latest.pt,
    between the renames that replace it, and at three random moments (start-up, and twice in
    training: a step, a snapshot, a sample or a checkpoint write). The run then finishes with
    the weights, the EMA snapshots and the stats lines of an uninterrupted run."""
    declare(request, "SIGKILL during `train` (random moments, mid-checkpoint write, between "
            "checkpoint renames); final weights bit-identical", 5)
    # The uninterrupted run in this process, at the killed processes' one thread (conftest's
    # one_thread): fp32 training at a fixed thread count gives the same bits in any process.
    config = override(get_profile("smoke"), {
        "data.dataset": "folder", "data.root": str(images), **TRAIN_SETS})
    straight = train(config, tmp_path / "straight", progress=False)

    run = tmp_path / "killed"
    kills = 0
    # (a) Killed with checkpoint-latest.pt half written: the 2nd checkpoint (step 3) is in its
    # temp file, cut to half its length; checkpoint-latest.pt is still the step-0 one.
    proc = fork_train(config, run, "checkpoint-write@2")
    proc.join(300)
    assert proc.exitcode == -signal.SIGKILL
    assert list(run.glob("checkpoint-latest.pt.*.tmp"))
    assert torch.load(run / "checkpoint-latest.pt", weights_only=False)["step"] == 0
    kills += 1
    # (b) Killed between the two renames: the old checkpoint is already
    # checkpoint-previous.pt and no checkpoint-latest.pt exists.
    proc = fork_train(config, run, "checkpoint-write-rotate@2")
    proc.join(300)
    assert proc.exitcode == -signal.SIGKILL
    assert not (run / "checkpoint-latest.pt").exists() and (run / "checkpoint-previous.pt").exists()
    kills += 1
    # (c) Random moments: one in start-up, 0-0.2 s after the process took the run folder's
    # lock (loading data, building and restoring the networks, trimming the stats); two in
    # training, once the run has logged a random 1 to 5 steps more than the folder held
    # (whatever that step's end is doing: its stats line, a sample, a snapshot, a checkpoint).
    rng = random.Random(20200513)
    lock, stats = run / "train.lock", run / STATS
    for moment in ("start-up", "training", "training"):
        logged = lines(stats)
        proc = fork_train(config, run)
        alive = lambda: proc.exitcode is None  # noqa: E731
        assert wait_for(lambda: lock.exists() and lock.read_text().strip() == str(proc.pid),
                        alive=alive)
        if moment == "start-up":
            time.sleep(rng.uniform(0.0, 0.2))
        else:
            more = rng.randint(1, 5)
            assert wait_for(lambda: lines(stats) >= logged + more, alive=alive)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(60)
        assert proc.exitcode == -signal.SIGKILL, "the run finished before the kill"
        kills += 1

    done = train(config, run, progress=False)
    assert done["done"] and done["weights_sha1"] == straight["weights_sha1"]
    # What the notebooks read is identical too: every EMA snapshot and the stats lines.
    for snap in sorted((tmp_path / "straight").glob("snapshot-*.pt")):
        a = torch.load(snap, weights_only=False)["generator"]
        b = torch.load(run / snap.name, weights_only=False)["generator"]
        assert all(torch.equal(a[k], b[k]) for k in a), snap.name
    assert stats_steps(run) == list(range(1, STEPS + 1))
    assert not list(run.glob("*.tmp"))
    assert kills == 5


# ------------------------------------------------------- 2. SIGKILL during `make reproduce`

NOTEBOOK = "06_no_reference.ipynb"


def _reproduce_root(where: Path) -> Path:
    """A minimal checkout for `reproduce --only 06`: its own runs/ and .executed/, this
    checkout's package and notebook 06."""
    (where / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", where)
    (where / "paperlib").symlink_to(REPO / "paperlib", target_is_directory=True)
    shutil.copy(REPO / "notebooks" / NOTEBOOK, where / "notebooks")
    return where


def _reproduce(root: Path, fault: str | None = None, timeout=600, workers: int = 2):
    """Run `python -m paperlib reproduce --profile smoke --only 06 --no-plan` in `root`, its
    notebook's runs in a pool of `workers` (1: in the kernel). With `fault`, the process that
    reaches that point kills itself and the test then SIGKILLs the rest of the process tree,
    as a kill of `make reproduce` would. Returns the exit status."""
    # A marker of its own per attempt: a worker of an earlier attempt that outlives the kill
    # for a moment (the kernel notices its parent's death only by polling) must not write the
    # marker this attempt waits for.
    marker = root / f"fault-{len(list(root.glob('fault-*.pid*')))}.pid"
    extra = {"PAPERLIB_CACHE": str(REPO / ".cache"), "PAPERLIB_WORKERS": str(workers)}
    if fault:
        extra.update(PAPERLIB_FAULT=fault, PAPERLIB_FAULT_MARKER=str(marker))
    log = root / "reproduce.log"  # a file, not a pipe: papermill logs every cell's output
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "paperlib", "reproduce", "--profile",
                                 "smoke", "--only", NOTEBOOK[:2], "--no-plan"],
                                cwd=root, env=env(**extra),
                                start_new_session=True, stdout=out, stderr=out)
        if fault:
            hit = wait_for(marker.exists, timeout=timeout, proc=proc)
            assert hit, f"the notebook finished without reaching {fault}: {log.read_text()[-2000:]}"
            os.killpg(proc.pid, signal.SIGKILL)
            # The kernel runs in a session of its own, and its workers die with it: wait for
            # every process of this attempt, so none holds a run folder the next one needs.
            tree = f"PAPERLIB_FAULT_MARKER={marker}"
            assert wait_for(lambda: not processes_with_env(tree), timeout=60)
            marker.rename(marker.with_suffix(".pid.done"))
        rc = proc.wait(timeout)
    assert fault or rc == 0, log.read_text()[-3000:]
    return rc


@pytest.mark.slow
def test_reproduce_killed_in_training_and_in_evaluation_resumes(fake_root, request):
    """`reproduce --only 06` (smoke) SIGKILLed, process tree and all, while it trains in a
    pool (notebook 06 trains its two runs at once in worker processes,
    `paperlib.training.parallel`), and again while it evaluates (each run with an image and a
    zero reference); the third attempt finishes without retraining any finished run, and its
    table holds the metrics of the same runs trained and evaluated uninterrupted. (One notebook,
    the smallest that trains and evaluates: the full smoke reproduction takes minutes per
    attempt. The second and third attempts run in the kernel, without the pool's workers, whose
    start costs each of them seconds of imports; the uninterrupted runs are made in this
    process. That the pool trains and scores as one process does is tests/test_parallel.py's
    question.)"""
    from paperlib.study import parallel

    declare(request, "SIGKILL during `reproduce --only 06` (in training, in evaluation); "
            "tables equal to an uninterrupted run", 2)
    root = _reproduce_root(fake_root / "killed")
    runs = root / "runs" / "smoke"
    finals = lambda: {p.parent.name for p in runs.glob(f"*/{FINAL}")}  # noqa: E731
    # The pool starts both runs; the first 2nd checkpoint write kills all. Every attempt skips
    # the plan, as a resumed `make reproduce` may (that its estimate is kept beside the time:
    # tests/test_reproduce.py).
    assert _reproduce(root, "checkpoint-write@2") != 0
    assert not finals()
    assert _reproduce(root, "evaluate", workers=1) != 0
    # Killed in evaluation: a finished run without its metrics.
    assert finals() and all(not (runs / name / "metrics.jsonl").exists() for name in finals())
    finished = {p: p.stat().st_mtime_ns for name in finals() for p in (runs / name).iterdir()
                if p.is_file() and p.name != "train.lock"}
    _reproduce(root, workers=1)
    times = (root / "runs" / "smoke" / "results" / "reproduce_times.tsv").read_text()
    row = times.splitlines()[1].split("\t")
    # the notebook's time is over its three attempts, the two killed ones included
    assert "Estimated time" not in (root / "reproduce.log").read_text()
    assert row[3] == "-" and row[6] == "3" and float(row[2]) > 0, times
    # Not retrained: every file the finished runs had is untouched.
    assert {p: p.stat().st_mtime_ns for p in finished} == finished

    # the uninterrupted runs go to fake_root's own runs/ (the working directory)
    paths = parallel.ensure_runs("smoke", [("scft-noref", 0), ("scft-noref", 1)],
                                 no_reference=True, workers=1, progress=False, dataset="openmoji")
    assert [p.name for p in paths] == ["scft-noref-seed0", "scft-noref-seed1"]
    assert sorted(p.parent.name for p in runs.glob("*/metrics.jsonl")) == [p.name for p in paths]
    values = lambda path: {(r["metric"], r["reference"]): r["value"]  # noqa: E731
                           for r in map(json.loads, path.read_text().splitlines())}
    want = {p.name: values(p / "metrics.jsonl") for p in paths}
    for name, expected in want.items():
        got = values(runs / name / "metrics.jsonl")
        assert len(expected) > 10 and {ref for _, ref in expected} == {"image", "zero"}, name
        assert got.keys() == expected.keys(), name
        for k in expected:
            assert got[k] == pytest.approx(expected[k], rel=1e-6, abs=1e-9), (name, k)
    # the notebook's table is the mean and spread of those metrics over the two seeds (its
    # CSV holds four decimals)
    table = pd.read_csv(runs / "results" / "table_no_reference.csv", comment="#").set_index("metric")
    for (metric, ref) in want["scft-noref-seed0"]:
        seeds = [want[n][metric, ref] for n in want]
        assert table.loc[metric, f"{ref}_mean"] == pytest.approx(np.mean(seeds), abs=1e-4)
        assert table.loc[metric, f"{ref}_std"] == pytest.approx(np.std(seeds, ddof=1), abs=1e-4)


# ----------------------------------------------------------------- 3. damaged checkpoints

def folder_config(root, **sets):
    c = override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(root),
                                        "data.test_fraction": 0.0, "train.max_steps": 6,
                                        "train.checkpoint_every": 2, "train.snapshot_every": 0,
                                        "train.sample_every": 100, "model.width": WIDTH})
    return override(c, sets)


@pytest.fixture(scope="module")
def straight_digest(images, tmp_path_factory):
    return train(folder_config(images), tmp_path_factory.mktemp("straight") / "run",
                 progress=False)["weights_sha1"]


def _damage(kind: str, path: Path, images: Path, tmp: Path):
    good = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 3])
    elif kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "an image's contents":
        path.write_bytes((images / "img00.png").read_bytes())
    elif kind == "a generator snapshot":
        shutil.copy(path.parent / FINAL if (path.parent / FINAL).exists()
                    else next(path.parent.glob("snapshot-*.pt")), path)
    elif kind == "another width's checkpoint":
        other = tmp / "other"
        train(folder_config(images, **{"model.width": 2 * WIDTH}), other, stop_at_step=1,
              progress=False)
        shutil.copy(other / "checkpoint-latest.pt", path)
    else:
        raise ValueError(kind)


DAMAGE = ["truncated", "zero bytes", "an image's contents", "a generator snapshot",
          "another width's checkpoint"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(kind, images, tmp_path,
                                                                   straight_digest, request):
    declare(request, "damaged checkpoint-latest.pt (truncated, empty, an image, a snapshot, "
            "another width's): resumed from checkpoint-previous.pt, bit-identical", 1)
    run = tmp_path / "run"
    config = folder_config(images, **{"train.snapshot_every": 2})
    train(config, run, stop_at_step=4, progress=False)  # checkpoints at steps 0, 2, 4
    latest = run / "checkpoint-latest.pt"
    _damage(kind, latest, images, tmp_path)
    with pytest.warns(UserWarning, match=r"checkpoint-latest\.pt.*resuming from "
                                         r"checkpoint-previous\.pt at step 2"):
        summary = train(config, run, progress=False)
    assert summary["done"] and (run / "checkpoint-latest.pt.damaged").exists()
    assert summary["weights_sha1"] == straight_digest
    assert stats_steps(run) == [1, 2, 3, 4, 5, 6]


def test_a_complete_run_drops_the_fallback_checkpoint_and_keeps_the_rest(images, tmp_path,
                                                                          straight_digest):
    # checkpoint-previous.pt guards a run in progress; once the run is complete it is only disk
    # (a third of a smoke run's folder), so `make test` and `make reproduce` leave none behind.
    run = tmp_path / "run"
    config = folder_config(images)
    train(config, run, stop_at_step=4, progress=False)
    assert (run / "checkpoint-previous.pt").exists()
    summary = train(config, run, progress=False)
    assert summary["done"] and summary["weights_sha1"] == straight_digest
    assert not (run / "checkpoint-previous.pt").exists()
    assert (run / "checkpoint-latest.pt").exists() and (run / "snapshot-final.pt").exists()
    # Rerunning a complete run neither trains nor needs the fallback.
    again = train(config, run, progress=False)
    assert again["weights_sha1"] == straight_digest and stats_steps(run) == [1, 2, 3, 4, 5, 6]


def test_no_usable_checkpoint_in_a_started_run_is_an_error_naming_the_files(images, tmp_path,
                                                                            request, capfd):
    declare(request, "started run without a usable checkpoint: error naming the file, never a "
            "silent restart", 3)
    run = tmp_path / "run"
    config = folder_config(images)
    train(config, run, stop_at_step=4, progress=False)
    before = (run / "stats.jsonl").read_text()
    # Both checkpoints damaged.
    (run / "checkpoint-latest.pt").write_bytes(b"")
    (run / "checkpoint-previous.pt").write_bytes(b"\x80not a pickle")
    with pytest.raises(CheckpointError, match=r"checkpoint-latest\.pt is unreadable.*"
                                              r"checkpoint-previous\.pt is unreadable.*"
                                              r"stats\.jsonl.*delete the folder"):
        train(config, run, progress=False)
    # No checkpoint at all, but stats and samples.
    (run / "checkpoint-latest.pt").unlink()
    (run / "checkpoint-previous.pt").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint-latest\.pt does not exist.*no "
                                              r"checkpoint-previous\.pt.*stats\.jsonl"):
        train(config, run, progress=False)
    assert (run / "stats.jsonl").read_text() == before  # nothing was overwritten
    # Through the command line (its entry point, in this process): one line, the file named,
    # exit status 2.
    from paperlib.__main__ import main

    capfd.readouterr()
    code = main(["train", "--profile", "smoke", "--dataset", "folder", "--root", str(images),
                 "--run-dir", str(run), "--set", "data.test_fraction=0", "--set",
                 "train.max_steps=6", "--set", "train.checkpoint_every=2", "--set",
                 "train.snapshot_every=0", "--set", "train.sample_every=100", "--set",
                 f"model.width={WIDTH}"])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"error: cannot resume the run in {run}" in err and "checkpoint-latest.pt" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err


# -------------------------------------------------------------------------- 4. full disk

def _enospc_after(n_bytes: int):
    def fake_save(obj, f, *args, **kwargs):
        f.write(b"\0" * n_bytes)
        raise OSError(errno.ENOSPC, "No space left on device")
    return fake_save


@pytest.mark.parametrize("what", ["checkpoint", "snapshot"])
def test_full_disk_keeps_the_previous_checkpoint_and_says_so(what, images, tmp_path, monkeypatch,
                                                             request, capsys):
    declare(request, "disk full (ENOSPC) while writing a checkpoint or a snapshot: previous "
            "checkpoint intact, message names the folder", 1)
    run = tmp_path / "run"
    sets = {"train.snapshot_every": 4 if what == "snapshot" else 0}
    config = folder_config(images, **sets)
    train(config, run, stop_at_step=2, progress=False)
    before = {p.name: p.read_bytes() for p in run.glob("checkpoint-*.pt")}
    monkeypatch.setattr(torch, "save", _enospc_after(4096))
    from paperlib.paths import DiskFullError

    with pytest.raises(DiskFullError) as info:
        train(config, run, progress=False)
    message = str(info.value)
    target = "snapshot-0000004.pt" if what == "snapshot" else "checkpoint-latest.pt"
    assert message.startswith("disk full") and str(run) in message and target in message
    assert {p.name: p.read_bytes() for p in run.glob("checkpoint-*.pt")} == before
    assert not list(run.glob("*.tmp"))
    monkeypatch.undo()
    blob = torch.load(run / "checkpoint-latest.pt", weights_only=False)
    assert blob["step"] == 2
    # The command line prints it as one line.
    from paperlib.__main__ import main

    monkeypatch.setattr(torch, "save", _enospc_after(10))
    code = main(["train", "--profile", "smoke", "--dataset", "folder", "--root", str(images),
                 "--run-dir", str(run)] + [a for k, v in {
                     "data.test_fraction": 0, "train.max_steps": 6, "train.checkpoint_every": 2,
                     "train.sample_every": 100, "model.width": WIDTH, **sets}.items() for a in ("--set", f"{k}={v}")])
    captured = capsys.readouterr().err  # progress bars may share the line; the error ends it
    err = [line[line.index("error:"):] for line in captured.splitlines() if "error:" in line]
    assert code == 2 and len(err) == 1, captured
    assert err[0].startswith("error: disk full") and str(run) in err[0]
    assert "Traceback" not in captured


# ------------------------------------------------------- 5. two processes on one run folder

def test_second_process_is_refused_and_a_killed_holder_leaves_no_stale_lock(images, tmp_path,
                                                                            request):
    declare(request, "second process on a run folder refused (folder and PID named); "
            "SIGKILLed holder leaves no stale lock", 2)
    run = tmp_path / "run"
    marker = tmp_path / "holder.pid"
    config = override(get_profile("smoke"), {
        "data.dataset": "folder", "data.root": str(images), "data.test_fraction": 0.0,
        "train.max_steps": 4, "train.checkpoint_every": 3, "train.snapshot_every": 4,
        "train.sample_every": 8, "model.width": WIDTH})
    # The holder (a fork of this process) stalls inside its first checkpoint write, lock held;
    # the second is the command itself, whose refusal is what a user sees.
    holder = fork_train(config, run, "checkpoint-write:stall", marker)
    try:
        assert wait_for(marker.exists, alive=lambda: holder.exitcode is None)
        second = subprocess.run(train_cmd(images, run, "train.max_steps=4"), env=env(),
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"run folder {run} is in use by another training process (PID {holder.pid})" \
            in second.stderr
        with pytest.raises(RunLockedError, match=str(holder.pid)):
            with RunLock(run):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(60)
    # The kernel dropped the dead holder's lock; its PID is still in the file, harmlessly,
    # and the next run takes the folder over (in this process, to save a start-up).
    assert (run / "train.lock").read_text().strip() == str(holder.pid)
    assert list(run.glob("*.tmp"))  # the holder died inside its checkpoint write
    assert train(config, run, progress=False)["done"]
    assert (run / "train.lock").read_text().strip() == str(os.getpid())
    assert not list(run.glob("*.tmp"))


def test_the_lock_is_per_open_file_even_within_one_process(tmp_path):
    with RunLock(tmp_path / "r"):
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):
            with RunLock(tmp_path / "r"):
                pass
    with RunLock(tmp_path / "r"):  # released on exit
        pass


def test_stale_temp_files_are_removed_and_stats_trimmed_on_resume(images, tmp_path):
    run = tmp_path / "run"
    config = folder_config(images)
    train(config, run, stop_at_step=4, progress=False)
    (run / "checkpoint-latest.pt.abc123.tmp").write_bytes(b"half")
    with open(run / "stats.jsonl", "a") as f:  # a step past the checkpoint, and a torn line
        f.write(json.dumps({"step": 5}) + "\n" + '{"step": 6, "g_r')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config, run, progress=False)
    assert not [w for w in caught if "checkpoint" in str(w.message)]  # a normal resume
    assert not list(run.glob("*.tmp"))
    assert stats_steps(run) == [1, 2, 3, 4, 5, 6]


def test_torch_zip_writer_failing_on_a_full_disk_is_reported_as_disk_full(tmp_path, monkeypatch):
    """torch.save reports a full disk as RuntimeError("... unexpected pos ...") from its zip
    writer, not as OSError: with the device (nearly) full it becomes the same DiskFullError
    naming the folder, the previous file kept; on a device with room the error is left as it is."""
    from paperlib import paths
    from paperlib.training.snapshot import atomic_save

    target = tmp_path / "checkpoint-latest.pt"
    atomic_save({"step": 1}, target)
    before = target.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"\0" * 64)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 249642880 vs 249642768")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(paths, "disk_nearly_full", lambda folder: True)
    with pytest.raises(paths.DiskFullError) as info:
        atomic_save({"step": 2}, target)
    assert str(info.value).startswith("disk full") and str(tmp_path) in str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == before and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(paths, "disk_nearly_full", lambda folder: False)
    with pytest.raises(RuntimeError, match="unexpected pos") as info:
        atomic_save({"step": 2}, target)
    assert not isinstance(info.value, paths.DiskFullError)
    assert target.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


def test_disk_nearly_full_reads_the_free_space_of_the_folders_device(tmp_path, monkeypatch):
    from paperlib import paths

    class Stat:
        f_frsize = 4096
        f_bavail = 0

    monkeypatch.setattr(paths.os, "statvfs", lambda folder: Stat)
    assert paths.disk_nearly_full(tmp_path)
    Stat.f_bavail = paths.NEARLY_FULL_BYTES // 4096 + 1
    assert not paths.disk_nearly_full(tmp_path)


def raise_disk_full(folder: str):
    """A worker job that meets a full disk (module level, so a spawned worker can import it)."""
    from paperlib.paths import DiskFullError

    raise DiskFullError(Path(folder) / "checkpoint-latest.pt",
                        OSError(errno.ENOSPC, "No space left on device"))


def test_disk_full_in_a_worker_process_reaches_the_parent_as_disk_full(tmp_path, request):
    """A run in a worker process that fills the disk must be reported as a full disk naming the
    folder, not as a broken process pool (the worker's exception is pickled to the parent)."""
    declare(request, "disk full in a worker of `parallel.ensure_runs`: the parent reports the "
            "full disk and the folder", 1)
    from paperlib.paths import DiskFullError
    from paperlib.training.parallel import run_in_workers

    jobs = [(str(tmp_path / "a"),), (str(tmp_path / "b"),)]
    with pytest.raises(RuntimeError) as info:
        run_in_workers(raise_disk_full, jobs, workers=2)
    cause = info.value.__cause__
    assert isinstance(cause, DiskFullError), repr(cause)
    assert str(cause).startswith("disk full") and str(tmp_path) in str(cause)
    assert "disk full" in str(info.value) and cause.errno == errno.ENOSPC


def test_errors_with_their_own_arguments_survive_pickling(tmp_path):
    import pickle

    from paperlib.data.imageio import BadImageError
    from paperlib.paths import DiskFullError

    for err in (DiskFullError(tmp_path / "snapshot.pt", OSError(errno.EDQUOT, "Disk quota exceeded")),
                BadImageError(tmp_path / "bad.png", "truncated file")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err), (err, back)
        assert str(tmp_path) in str(back)
