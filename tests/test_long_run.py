"""`python -m paperlib long-run` and `long-run-summary`: the options, smoke-size runs on the CPU
(a fixed step count, and a time budget), and the summary of the committed GPU run."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from paperlib.__main__ import main
from paperlib.study import long_run
from paperlib.study.long_run_summary import SUMMARY_MD, last_per_seed, summarise
from paperlib.training.snapshot import FINAL

GPU = Path(__file__).resolve().parents[1] / "results" / "gpu"


def folder_sets(root):
    return ["--set", "data.dataset=folder", "--set", f"data.root={root}",
            "--set", "data.test_fraction=0.3"]


def smoke_args(root, out, work, *extra):
    return ["long-run", "--profile", "smoke", "--seeds", "0", "--device", "cpu", "--out", str(out),
            "--work", str(work), *folder_sets(root), *extra]


# ----------------------------------------------------------------------------- options

def test_options_become_the_plan(tmp_path, monkeypatch):
    plans = []
    monkeypatch.setattr(long_run, "run", plans.append)
    monkeypatch.chdir(tmp_path)
    assert main(["long-run", "--out", "o", "--seeds", "3", "5", "--budget", "300", "--round", "100",
                 "--set", "train.ema_decay=0.999", "--augment-on-device", "--no-samples"]) == 0
    assert main(["long-run", "--work", "w"]) == 0
    budgeted, default = plans
    assert budgeted.seeds == (3, 5) and budgeted.steps == 0 and budgeted.budget_seconds == 300
    assert budgeted.round_to == 100 and budgeted.sets == ("train.ema_decay=0.999",)
    assert budgeted.augment_on_device and not budgeted.samples
    assert Path(budgeted.work).parts[-3:] == ("runs", "mini", "long-run")
    # the committed run's settings
    assert default.steps == 8800 and default.seeds == (0, 1) and default.snapshots == 8
    assert default.profile == "mini" and default.work == default.out == "w"
    assert not default.augment_on_device


def test_steps_and_budget_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as e:
        main(["long-run", "--out", "o", "--steps", "10", "--budget", "100"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--snapshots", "0"], "--snapshots 0: must be at least 1"),
    (["--seeds", "1", "1"], "--seeds 1 1: give one or more distinct seeds"),
    (["--steps", "-3"], "--steps -3: must be a positive number of steps"),
    (["--budget", "5"], "--budget 5: must be more than the 12 s"),
    (["--test-n", "-1"], "--test-n -1: must be 0 or more"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["long-run", "--out", str(out), "--work", str(tmp_path / "w"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "w").exists()


def test_the_budget_fills_whole_rounds():
    # the committed run: 29.6 ms/step timed, 308 s left after the reserve -> 8,800 steps
    assert long_run.budget_steps(320, 0.0296, 800) == 8800
    assert long_run.budget_steps(13, 1.0, 800) == 800  # at least one round
    assert long_run.budget_steps(1e9, 0.001, 800) == 29600  # at most MAX_STEPS, whole rounds


# ----------------------------------------------------------------------------- smoke runs

@pytest.mark.slow
def test_a_smoke_run_writes_its_curves_and_resumes(image_folder, tmp_path):
    """One seed, 4 steps, a snapshot every 2: the training and the measuring worker run side by
    side in the pool. Every snapshot is measured on both splits, and the numbers are the
    snapshot's own; a second call finds the run complete and trains nothing."""
    from paperlib.data.datasets import build_dataset
    from paperlib.evaluation.evaluate import reference_use
    from paperlib.training.snapshot import load_generator

    out, work = tmp_path / "out", tmp_path / "work"
    assert main(smoke_args(image_folder, out, work, "--steps", "4", "--snapshots", "2",
                           "--train-n", "4", "--workers", "2")) == 0
    meta = json.loads((out / "meta.json").read_text())
    entry = meta["runs"]["0"]
    config = entry["config"]
    assert entry["runner"]["max_steps"] == 4 and entry["snapshots"] == [2, 4]
    assert entry["final_snapshot"] and (work / "seed0" / FINAL).exists()
    assert config["train"]["snapshot_every"] == 2 and config["loss"]["random_perceptual_weights"]
    assert meta["plan"]["steps"] == 4 and entry["samples_step"] == 4

    curves = [json.loads(x) for x in (out / "curves-seed0.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in curves] == [(2, "test"), (2, "train"), (4, "test"),
                                                         (4, "train")]
    G, cfg, _ = load_generator(work / "seed0" / "snapshot-0000004.pt")
    n_test = len(build_dataset(cfg.data, "test"))
    assert [r["n"] for r in curves] == [n_test, 4, n_test, 4]
    assert all(r["seed"] == 0 and math.isfinite(r["region_de_self"]) for r in curves)
    again = reference_use(G, cfg.data, n=4, seed=0, split="train")
    assert curves[3]["region_de_self"] == pytest.approx(again["region_de_self"], rel=1e-6)

    stats = [json.loads(x) for x in (out / "stats-seed0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in stats] == [1, 2, 3, 4]
    assert Image.open(out / "samples-seed0.png").size[0] > 0
    log = (out / "log.txt").read_text()
    assert log.count(" curve] seed0 step") == 4 and "done: step 4" in log

    snapshot = work / "seed0" / "snapshot-0000002.pt"
    written = snapshot.stat().st_mtime_ns
    assert main(smoke_args(image_folder, out, work, "--steps", "4", "--snapshots", "2",
                           "--train-n", "4", "--workers", "1", "--no-samples")) == 0
    assert snapshot.stat().st_mtime_ns == written
    assert (out / "stats-seed0.jsonl").read_text().count("\n") == 4
    assert [json.loads(x) for x in (out / "curves-seed0.jsonl").read_text().splitlines()] == curves

    text, md, _ = summarise(out)
    assert md == out / SUMMARY_MD and "| 0 | 4 | 4 | yes |" in text
    assert f"test split (n = {n_test}, eval seed 0)" in text


def test_a_budget_chooses_the_steps_from_a_timed_run(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(long_run, "CAL_WINDOW", 1)  # a 3-step timing run
    monkeypatch.setattr(long_run, "CAL_WINDOWS", 2)
    out, work = tmp_path / "out", tmp_path / "work"
    assert main(smoke_args(image_folder, out, work, "--budget", "13", "--round", "2",
                           "--snapshots", "1", "--train-n", "0", "--workers", "1",
                           "--no-samples")) == 0
    meta = json.loads((out / "meta.json").read_text())
    seconds, steps = meta["plan"]["sec_per_step"]["0"], meta["plan"]["steps"]
    assert seconds > 0 and steps == long_run.budget_steps(13, seconds, 2)
    assert meta["runs"]["0"]["runner"]["sec_per_step"] == seconds
    assert meta["runs"]["0"]["snapshots"] == [steps]
    assert not list(work.glob("timing-*"))  # the timing run is thrown away
    assert {json.loads(x)["split"] for x in (out / "curves-seed0.jsonl").read_text().splitlines()} \
        == {"test"}


# ----------------------------------------------------------------------------- the summary

def committed_tables() -> list[str]:
    """The non-empty lines of results/gpu/long_run_summary.md without the repository's CPU runs
    (their rows and the fit through them), which a summary without runs/ leaves out."""
    committed = (GPU / SUMMARY_MD).read_text().splitlines()
    return [x for x in committed if x and "(repo)" not in x and not x.startswith("Log-linear")]


def test_the_summary_of_the_committed_gpu_run_gives_its_committed_tables(tmp_path):
    text, _, png = summarise(GPU / "8800-steps", tmp_path, runs_root=tmp_path / "no-runs")
    assert [x for x in text.splitlines() if x] == committed_tables()
    assert png.stat().st_size > 10_000


def test_the_committed_tables_come_out_without_avx512(tmp_path):
    """numpy sorts with AVX-512 kernels where the CPU has them and AVX2 ones elsewhere, and the
    two order tied keys differently; both seeds end at step 8800. A new interpreter with the
    AVX-512 kernels switched off (NPY_DISABLE_CPU_FEATURES is read when numpy is imported)
    must give the same tables. On a CPU without AVX-512 it is the same run as above."""
    # numpy's dispatch targets: "found" on this CPU, "not found" if absent or already switched off
    simd = np.show_config(mode="dicts")["SIMD Extensions"]
    off = [f for f in simd["found"] + simd.get("not found", [])
           if ("512" in f or f == "X86_V4") and f not in simd["baseline"]]
    script = ("import json, sys\n"
              "import numpy as np, pandas as pd\n"
              "from paperlib.study.long_run_summary import load, markdown\n"
              "c, s, meta = load(__import__('pathlib').Path(sys.argv[1]))\n"
              "print(json.dumps({'found': np.show_config(mode='dicts')['SIMD Extensions']['found'],\n"
              "                  'text': markdown(c, s, meta, pd.DataFrame())}))\n")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(off)}
    done = subprocess.run([sys.executable, "-c", script, str(GPU / "8800-steps")], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert not [f for f in out["found"] if "512" in f or f == "X86_V4"]
    assert [x for x in out["text"].splitlines() if x] == committed_tables()


def test_seeds_that_end_at_one_step_come_in_seed_order():
    """Ten seeds logged in reverse order, all ending at step 49, and seed 0 logging its last
    step twice (a resumed run): one row per seed, seeds ascending, the later line of a pair."""
    rows = [{"seed": seed, "step": step, "value": float(step)}
            for seed in range(9, -1, -1) for step in range(50)]
    rows.append({"seed": 0, "step": 49, "value": -1.0})
    last = last_per_seed(pd.DataFrame(rows))
    assert last["seed"].tolist() == list(range(10))
    assert last["step"].tolist() == [49] * 10
    assert last["value"].tolist() == [-1.0] + [49.0] * 9
    # a seed stopped early (by the time guard) comes first: the order is (step, seed)
    rows += [{"seed": 10, "step": 3, "value": 3.0}]
    assert last_per_seed(pd.DataFrame(rows))["seed"].tolist() == [10, *range(10)]


def test_the_summary_compares_with_the_repository_runs(tmp_path):
    runs = tmp_path / "runs"
    for name, step, value in (("scft-triplet", 1000, 22.79), ("scft-triplet-3x", 3000, 19.87)):
        folder = runs / f"{name}-seed0"
        folder.mkdir(parents=True)
        torch.save({"step": step}, folder / FINAL)  # read_metrics takes the step from it
        row = {"metric": "region_de_self", "value": value, "split": "test", "reference": "image",
               "dataset": "openmoji", "step": step}
        (folder / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    text, _, _ = summarise(GPU / "8800-steps", tmp_path, runs_root=runs)
    assert "| scft-triplet (repo) | 1000 | 22.79 |" in text
    assert "| scft-triplet-3x (repo) | 3000 | 19.87 |" in text
    assert "Log-linear fit of the final values" in text


def test_the_summary_of_a_folder_without_curves_fails_clearly(tmp_path, capsys):
    assert main(["long-run-summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "curves-seed*.jsonl" in err and "Traceback" not in err


def test_a_registry_run_is_the_start_of_the_plan():
    """--run takes the registry's overrides (dataset first, as the registry does), then the
    plan's schedule, then --set."""
    from paperlib.study.long_run import LongRun, run_config

    plan = LongRun(out="o", work="w", run="hue-sga", sets=("data.dataset=faces", "train.lr_g=0.0003"),
                   split="val", hue=True)
    c = run_config(plan, seed=1, steps=400)
    assert (c.model.aggregation, c.data.dataset, c.data.val_holdout) == ("sga", "faces", 256)
    assert (c.train.max_steps, c.train.snapshot_every, c.train.seed) == (400, 50, 1)
    assert c.train.lr_g == 0.0003
    with pytest.raises(ValueError, match="unknown run 'no-such-run'"):
        run_config(LongRun(out="o", work="w", run="no-such-run"), seed=0, steps=400)
