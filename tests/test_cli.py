"""End to end through the command line: train, evaluate, colorize and bench on tiny settings."""
import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from paperlib.__main__ import main
from paperlib.training.snapshot import FINAL


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "paperlib", *args], capture_output=True,
                          text=True, timeout=600, env={**__import__("os").environ, "TQDM_DISABLE": "1"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke run on a synthetic image folder with a held-out split."""
    from conftest import draw_shapes

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(3)
    for i in range(40):
        Image.fromarray(draw_shapes(rng, 48)).save(root / f"{i:02d}.png")
    run = root.parent / "run"
    # trained through the command line's entry point in this process (the commands below run
    # as processes of their own): one process start fewer
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", "--profile", "smoke", "--dataset", "folder", "--root", str(root),
                     "--run-dir", str(run), "--set", "data.test_fraction=0.3"])
    assert code == 0 and json.loads(out.getvalue().strip().splitlines()[-1])["done"] is True
    return root, run


def test_evaluate_end_to_end_writes_metrics_with_provenance(trained):
    root, run = trained
    proc = run_cli("evaluate", "--checkpoint", str(run), "--dataset", "folder", "--root", str(root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    metrics = {r["metric"]: r for r in rows}
    for m in ("fid_cross", "kid_cross", "fid_self", "ssim_self", "psnr_self", "region_de_self",
              "region_jnd_share_self", "palette_cross"):
        assert m in metrics, m
    r = metrics["fid_cross"]
    assert r["value"] >= 0 and r["n"] >= 2 and r["split"] == "test" and r["resolution"] == 32
    assert r["perceptual_network"] and r["fid_network"] and r["git_commit"] and r["step"] == 4
    assert -1 <= metrics["ssim_self"]["value"] <= 1
    assert "fid_cross" in proc.stdout  # the printed table


def test_colorize_a_real_file_with_and_without_reference(trained, tmp_path):
    root, run = trained
    sketch, ref = sorted(root.glob("*.png"))[:2]
    out = tmp_path / "out.png"
    proc = run_cli("colorize", "--checkpoint", str(run), "--sketch", str(sketch),
                   "--reference", str(ref), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = np.asarray(Image.open(out))
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8  # the sketch's own size
    out2 = tmp_path / "noref.png"
    assert main(["colorize", "--checkpoint", str(run), "--sketch", str(sketch), "--out", str(out2)]) == 0
    assert out2.exists()


def test_colorize_a_folder_in_batch(trained, tmp_path):
    root, run = trained
    folder = tmp_path / "sketches"
    folder.mkdir()
    for p in sorted(root.glob("*.png"))[:3]:
        Image.open(p).convert("L").save(folder / (p.stem + ".jpg"))
    assert main(["colorize", "--checkpoint", str(run), "--sketch", str(folder),
                 "--reference", str(root), "--out", str(tmp_path / "outs")]) == 0
    assert len(list((tmp_path / "outs").glob("*.png"))) == 3


def test_colorize_a_wide_sketch_keeps_its_size_and_its_edges(trained, tmp_path):
    """A 40x100 drawing framed by a black line touching all four edges: the output is exactly
    40x100 and, with the default --lines keep, the frame is there at every edge."""
    root, run = trained
    img = np.full((40, 100, 3), 255, np.uint8)
    img[:3] = img[-3:] = 0
    img[:, :3] = img[:, -3:] = 0
    img[18:22, 25:75] = 0
    sketch = tmp_path / "wide.png"
    Image.fromarray(img).save(sketch)
    ref = sorted(root.glob("*.png"))[0]
    for lines, size in (("keep", None), ("none", "48")):
        out = tmp_path / f"wide-{lines}.png"
        extra = ["--lines", lines] + (["--size", size] if size else [])
        assert main(["colorize", "--checkpoint", str(run), "--sketch", str(sketch),
                     "--reference", str(ref), "--out", str(out), *extra]) == 0
        res = np.asarray(Image.open(out))
        assert res.shape == (40, 100, 3)
        if lines == "keep":
            for edge in (res[0], res[-1], res[:, 0], res[:, -1]):
                assert (edge == 0).all()


@pytest.mark.parametrize("size", ["50", "0", "-32"])
def test_colorize_size_not_a_multiple_of_16_is_refused(trained, tmp_path, size, capsys):
    root, run = trained
    sketch = sorted(root.glob("*.png"))[0]
    code = main(["colorize", "--checkpoint", str(run), "--sketch", str(sketch),
                 "--out", str(tmp_path / "o.png"), "--size", size])
    err = capsys.readouterr().err
    assert code == 2 and f"size {size}" in err and "multiple of 16" in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("case", ["truncated", "not_an_image", "missing", "empty_folder"])
def test_colorize_bad_inputs_fail_clearly(trained, tmp_path, case, capsys):
    _, run = trained
    good = sorted(trained[0].glob("*.png"))[0]
    if case == "truncated":
        bad = tmp_path / "cut.png"
        bad.write_bytes(good.read_bytes()[:60])
    elif case == "not_an_image":
        bad = tmp_path / "notes.jpg"
        bad.write_text("this is not a picture")
    elif case == "missing":
        bad = tmp_path / "nope.png"
    else:
        bad = tmp_path / "empty"
        bad.mkdir()
    code = main(["colorize", "--checkpoint", str(run), "--sketch", str(bad),
                 "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and bad.name in err and "Traceback" not in err


def test_colorize_bad_checkpoint_fails_clearly(tmp_path, capsys):
    fake = tmp_path / FINAL
    fake.write_text("garbage")
    assert main(["colorize", "--checkpoint", str(fake), "--sketch", "x.png",
                 "--out", str(tmp_path / "o.png")]) == 2
    assert FINAL in capsys.readouterr().err


def test_bench_runs_and_reports_peaks(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--resolution", "32", "--batch", "2", "--width", "0.25",
                   "--repeats", "1", "--precision", "fp32", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["what"] for r in rows] == ["generator forward (inference)",
                                         "training step (G+D, all losses)"]
    for r in rows:
        assert r["images_per_sec"] > 0 and r["gflop_per_image"] > 0
        assert r["peak_fp32_gflops"] > 0 and r["peak_bf16_gflops"] > 0
    assert "matmul peak" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--set", "model.width=1"], "--set applies only with --compare or --breakdown or --loop"),
    (["--now-set", "model.width=1", "--breakdown"], "--now-set applies only with --compare"),
    (["--rev-set", "model.width=1", "--loop"], "--rev-set applies only with --compare"),
])
def test_bench_refuses_overrides_it_would_ignore(args, message):
    with pytest.raises(SystemExit, match=message):
        main(["bench", "--no-train", *args])


def test_reproduce_refuses_to_plan_and_not_plan_at_once(monkeypatch):
    """--plan (only the plan) and --no-plan (the notebooks without it) contradict: an error
    naming both, before anything is timed or run."""
    from paperlib.study import estimate, reproduce

    monkeypatch.setattr(estimate, "plan", lambda *a, **k: pytest.fail("the plan was timed"))
    monkeypatch.setattr(reproduce, "run_notebooks", lambda *a, **k: pytest.fail("notebooks ran"))
    with pytest.raises(SystemExit, match="--plan and --no-plan"):
        main(["reproduce", "--profile", "smoke", "--plan", "--no-plan"])


def test_reproduce_without_the_plan_runs_the_notebooks_with_no_planner(monkeypatch):
    from paperlib.study import estimate, reproduce

    calls = []
    monkeypatch.setattr(estimate, "plan", lambda *a, **k: pytest.fail("the plan was timed"))
    monkeypatch.setattr(reproduce, "run_notebooks", lambda **k: calls.append(k))
    assert main(["reproduce", "--profile", "smoke", "--only", "06", "--no-plan"]) == 0
    assert calls == [{"profile": "smoke", "only": "06", "dataset": None}]
    main(["reproduce", "--profile", "smoke", "--only", "06"])
    assert calls[1]["planner"] is estimate.plan


@pytest.mark.parametrize("only, expected", [
    (None, [("openmoji", "per"), ("faces", "per"), ("openmoji", "cross")]),
    ("09", [("openmoji", "cross")]),
    ("03", [("openmoji", "per"), ("faces", "per")]),
])
def test_reproduce_plans_both_datasets_as_it_runs_them(monkeypatch, capsys, only, expected):
    """`--plan --dataset both` plans what `make reproduce DATASET=both` runs: notebooks 01-08 on
    each dataset, and notebook 09, whose runs span both datasets, once."""
    from paperlib.study import estimate, reproduce

    calls = []

    class Planned:
        def __init__(self, dataset, names):
            kinds = {n in reproduce.CROSS_DATASET for n in names}
            assert len(kinds) == 1, f"per-dataset and cross notebooks in one plan: {names}"
            calls.append((dataset, "cross" if kinds.pop() else "per"))

        def summary(self):
            return "planned"

    monkeypatch.setattr(estimate, "plan", lambda profile, dataset, names: Planned(dataset, names))
    main(["reproduce", "--profile", "smoke", "--plan", "--dataset", "both",
          *(["--only", only] if only else [])])
    assert calls == expected
    assert capsys.readouterr().out.count("planned") == len(expected)


def test_reproduce_plan_for_both_names_an_only_that_matches_nothing(monkeypatch, capsys):
    """`--plan --dataset both --only x` where no notebook's name contains x: one line naming x
    and the notebooks folder, exit 2, as the run itself says; not an empty plan."""
    from paperlib.study import estimate

    monkeypatch.setattr(estimate, "plan", lambda *a, **k: pytest.fail("a plan was made"))
    assert main(["reproduce", "--profile", "smoke", "--plan", "--dataset", "both",
                 "--only", "nosuchnotebook"]) == 2
    err = capsys.readouterr().err
    assert "nosuchnotebook" in err and "notebooks" in err and "Traceback" not in err
