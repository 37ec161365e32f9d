"""study.registry: the named runs as overrides of one profile, their commands and whether they
are trained; with them the claims and tables read over those runs (study.claims, study.tables)."""
import shlex

import pytest
import pandas as pd

from paperlib.config import get_profile, mini
from paperlib.study.claims import verdict
from paperlib.study.registry import RUNS, run_config
from paperlib.paths import atomic_write


def test_verdict_reads_gaps_against_the_seed_spread():
    assert verdict(1.0, 2.0, 0.5) == "held"
    assert verdict(1.0, 1.2, 0.5) == "same direction, inside the seed spread"
    assert verdict(2.0, 1.0, 0.1) == "did not hold"
    assert verdict(0.9, 0.5, 0.1, lower_is_better=False) == "held"


def test_ablations_are_config_values_of_one_profile():
    from paperlib.config import override
    from paperlib.study.registry import (ARMS, GRID8_STRIDES, MAIN, MAIN_HUE_ROTATION,
                                         MAIN_RES_CHANNELS, MAIN_STEPS, run_config as rc)

    base = get_profile("mini")
    main = run_config("mini", "scft-triplet", 0)
    assert MAIN == "scft-triplet" and "scft-triplet" in ARMS
    # the main recipe: mini on the 8x8 grid, the projection, MAIN_STEPS with the schedule stretched
    assert main.model == override(base, {"model.encoder_strides": GRID8_STRIDES,
                                         "model.res_channels": MAIN_RES_CHANNELS}).model
    assert main.train.max_steps == MAIN_STEPS and main.data.hue_rotation == MAIN_HUE_ROTATION > 0
    # the step study's chosen arm, trained on every training image
    chosen = rc("mini", "step-res256-long-hue", 0)
    assert override(main, {"data.val_holdout": chosen.data.val_holdout}) == chosen
    assert main.train.snapshot_every * base.train.max_steps == base.train.snapshot_every * MAIN_STEPS
    # every arm is the main recipe and its own overrides: the same grid, width, steps, schedule
    for arm in ARMS:
        c = run_config("mini", arm, 0)
        assert (c.model.encoder_strides, c.model.res_channels, c.model.width) == (
            main.model.encoder_strides, main.model.res_channels, main.model.width), arm
        assert c.train == main.train and c.loss.lambda_ab == main.loss.lambda_ab, arm
        assert c.data.hue_rotation == main.data.hue_rotation, arm
    assert run_config("mini", "scft-triplet-4x4", 0).model == base.model
    assert run_config("mini", "add", 1).model.aggregation == "add"
    assert run_config("mini", "add", 1).loss.correspondence_loss == "none"
    assert run_config("mini", "add", 1).train.seed == 1
    assert run_config("mini", "scft-l1").loss.correspondence_loss == "l1"
    assert run_config("mini", "scft-noref").data.no_reference_prob == 0.1
    short = run_config("mini", "short-fp32")
    assert short.train.precision == "fp32" and short.train.max_steps == MAIN_STEPS // 4
    assert short.model == main.model
    assert set(RUNS) >= {"scft-triplet", "add", "adain", "scft-l1", "scft-none", "scft-noref"}
    with pytest.raises(ValueError, match="unknown run"):
        run_config("mini", "nope")


def test_atomic_write_leaves_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_train_command_gives_the_registry_config():
    from paperlib.config import override
    from paperlib.study.registry import run_config, train_command

    # the main model's override is a tuple (its encoder strides): one shell word, parsed back whole
    for name in ("add", "scft-triplet", "scft-triplet-3x", "recipe-paper-objective", "scft-triplet-grid8"):
        cmd = shlex.split(train_command("smoke", name, seed=1))
        assert cmd[:5] == ["python", "-m", "paperlib", "train", "--profile"] and cmd[5] == "smoke"
        sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
        assert override(run_config("smoke", "scft-triplet-4x4", 0), sets) == run_config("smoke", name, 1)
        assert cmd[-1] == f"runs/smoke/{name}-seed1"


def test_train_command_on_faces_names_the_dataset_and_its_runs_folder(monkeypatch):
    from paperlib.config import override
    from paperlib.study.registry import run_config, train_command

    monkeypatch.delenv("PAPERLIB_DATASET", raising=False)
    cmd = train_command("smoke", "add", seed=0, dataset="faces").split()
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert "data.dataset=faces" in sets and cmd[-1] == "runs/smoke-faces/add-seed0"
    assert override(run_config("smoke", "scft-triplet-4x4", 0), sets) == run_config("smoke", "add", 0, "faces")


def test_is_trained_follows_the_final_snapshot(tmp_path, monkeypatch):
    from paperlib.study import registry

    monkeypatch.setattr(registry, "runs_dir", lambda profile, dataset=None: tmp_path / profile)
    assert not registry.is_trained("smoke", "add", 3)
    run = tmp_path / "smoke" / "add-seed3"
    run.mkdir(parents=True)
    (run / "checkpoint-latest.pt").write_bytes(b"")
    assert not registry.is_trained("smoke", "add", 3)
    (run / "snapshot-final.pt").write_bytes(b"")
    assert registry.is_trained("smoke", "add", 3)


def test_split_gap_table_scores_both_splits_on_equal_counts(tmp_path, image_folder, monkeypatch):
    """One row per split, each from reference_use on the first n images of that split, with n
    the test split's size unless given."""
    from paperlib.study import tables
    from paperlib.config import override
    from paperlib.data.datasets import build_dataset
    from paperlib.evaluation.evaluate import reference_use
    from paperlib.training.snapshot import load_generator
    from paperlib.training.loop import train

    run = tmp_path / "run"
    c = override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(image_folder),
                                        "data.test_fraction": 0.25, "train.max_steps": 2})
    train(c, run, progress=False)
    monkeypatch.setattr(tables, "run_path", lambda profile, name, seed, dataset=None: run)
    table = tables.split_gap_table("smoke", ["scft-triplet"], seeds=[0])
    n_test = len(build_dataset(c.data, "test"))
    assert 0 < n_test < len(build_dataset(c.data, "train"))
    assert list(table["split"]) == ["train", "test"] and list(table["n"]) == [n_test, n_test]
    assert list(table["step"]) == [2, 2]
    G, cfg, _ = load_generator(run)
    for split in ("train", "test"):
        want = reference_use(G, cfg.data, n=n_test, split=split)
        row = table[table["split"] == split].iloc[0]
        for k in tables.SPLIT_GAP_METRICS:
            assert row[k] == pytest.approx(want[k]), (split, k)
    # Different images: the two rows are not one measurement twice.
    assert table["region_de_self"].nunique() == 2
    assert list(tables.split_gap_table("smoke", ["scft-triplet"], seeds=[0], n=3)["n"]) == [3, 3]


def test_region_size_table_scores_as_many_images_as_the_evaluation(tmp_path, image_folder,
                                                                   monkeypatch):
    """By default the run's eval_limit test images (the whole split with 0, as in mini); n
    overrides it. The bins' region counts say how many images were scored."""
    from paperlib.study import tables
    from paperlib.config import override
    from paperlib.evaluation.evaluate import region_size_bins
    from paperlib.training.snapshot import load_generator
    from paperlib.training.loop import train

    run = tmp_path / "run"
    c = override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(image_folder),
                                        "data.test_fraction": 0.5, "train.max_steps": 1,
                                        "data.eval_limit": 2})
    train(c, run, progress=False)
    monkeypatch.setattr(tables, "run_path", lambda profile, name, seed, dataset=None: run)
    G, cfg, _ = load_generator(run)
    count = lambda df: int(df["n_regions"].sum())  # noqa: E731
    limited = tables.region_size_table("smoke", ["scft-triplet"], seeds=[0])
    assert set(limited["run"]) == {"scft-triplet"} and limited["bin"].is_unique
    assert count(limited) == sum(r["n_regions"] for r in region_size_bins(G, cfg.data, n=2))
    whole = tables.region_size_table("smoke", ["scft-triplet"], seeds=[0], n=0)
    assert count(whole) == sum(r["n_regions"] for r in region_size_bins(G, cfg.data, n=0))
    assert count(whole) > count(limited)


def test_no_reference_claim_averages_the_seeds_like_the_table_beside_it(monkeypatch):
    """fig5 puts the no-reference model's FIDs next to the full model's two-seed mean, so they
    are two-seed means too; a seed without both evaluations is left out, not half counted."""
    from paperlib.study import claims

    fid = {("0", False): 110.0, ("0", True): 140.0, ("1", False): 120.0, ("1", True): 150.0,
           ("2", False): 500.0}  # seed 2 lacks its zero-reference evaluation
    monkeypatch.setattr(claims, "run_path", lambda profile, name, seed, dataset=None: f"{name}-seed{seed}")
    monkeypatch.setattr(claims, "read_metrics", lambda run, no_reference=False: (
        [{"metric": "fid_cross", "value": fid[(run[-1], no_reference)]}]
        if (run[-1], no_reference) in fid else []))
    assert claims.read_metrics_pair("mini", seeds=(0, 1, 2)) == {"image": 115.0, "zero": 145.0,
                                                                 "seeds": 2}
    assert claims.read_metrics_pair("mini", seeds=(0,)) == {"image": 110.0, "zero": 140.0, "seeds": 1}
    assert claims.read_metrics_pair("mini", seeds=(2,)) == {}


def test_ensure_evaluated_selects_rows_by_filters_and_passes_the_rest_to_evaluate(tmp_path,
                                                                                  monkeypatch):
    """evaluate's other keywords (progress, limit, ...) change how an evaluation runs, not
    which rows it wrote: they reach evaluate, never read_metrics (which refuses them)."""
    from paperlib.study import registry

    monkeypatch.setattr(registry, "run_path", lambda profile, name, seed, dataset=None: tmp_path)
    calls = []
    monkeypatch.setattr(registry, "evaluate", lambda run, **kw: calls.append(kw) or [{"metric": "x"}])
    rows = registry.ensure_evaluated("smoke", "add", 0, no_reference=True, progress=False, limit=8)
    assert rows == [{"metric": "x"}]
    assert calls == [{"no_reference": True, "progress": False, "limit": 8}]


def test_every_arm_is_a_run_with_a_label_and_a_notebook():
    from paperlib.study.registry import ARM_LABELS, ARMS, MAIN, TRAINED_BY

    assert ARMS[0] == MAIN and ARMS == list(ARM_LABELS)
    assert set(ARMS) <= set(RUNS) and set(TRAINED_BY) == set(ARMS)
    assert len(set(ARM_LABELS.values())) == len(ARMS)  # a label names one arm


def test_claims_by_dataset_puts_the_verdicts_side_by_side_and_says_where_they_differ(monkeypatch, tmp_path):
    from paperlib.study import claims
    from paperlib.study.published import CLAIMS

    # no committed claims.csv in these results folders
    monkeypatch.setattr(claims, "results_dir", lambda profile, d: tmp_path / d)

    verdicts = {"openmoji": {k: "held" for k in CLAIMS}, "faces": {k: "held" for k in CLAIMS}}
    verdicts["faces"]["table1"] = "did not hold"
    ran = {"openmoji", "faces"}
    monkeypatch.setattr(claims, "metrics_table", lambda profile, names, seeds, dataset: (
        pd.DataFrame([{"run": "add"}]) if dataset in ran else pd.DataFrame()))
    monkeypatch.setattr(claims, "claims", lambda profile, seeds, dataset: pd.DataFrame(
        [(k, CLAIMS[k], f"{dataset} numbers", v) for k, v in verdicts[dataset].items()],
        columns=["claim", "paper", "ours", "verdict"]))
    t = claims.by_dataset("mini", (0, 1)).set_index("claim")
    assert list(t.columns) == ["paper", "ours (openmoji)", "verdict (openmoji)", "ours (faces)",
                               "verdict (faces)", "datasets agree"]
    assert t.loc["table1", "datasets agree"] == "no: the verdicts differ"
    assert t.loc["fig1", "datasets agree"] == "yes" and t.loc["fig1", "ours (faces)"] == "faces numbers"
    ran.discard("faces")
    t = claims.by_dataset("mini", (0, 1)).set_index("claim")
    assert (t["verdict (faces)"] == "not run (make reproduce DATASET=faces)").all()
    assert (t["datasets agree"] == "one dataset run").all()
    assert t.attrs["read"] == {}


def test_claims_of_a_dataset_whose_runs_are_elsewhere_come_from_its_own_committed_file(monkeypatch, tmp_path):
    """Each dataset's reproduction commits its claims.csv. Where a dataset's runs are not on
    this machine, its columns are read from its own file (never from another dataset's copy of
    them), and the provenance says so."""
    from paperlib.study import claims
    from paperlib.study.published import CLAIMS

    folders = {d: tmp_path / d for d in ("openmoji", "faces")}
    for f in folders.values():
        f.mkdir()
    monkeypatch.setattr(claims, "results_dir", lambda profile, d: folders[d])
    monkeypatch.setattr(claims, "metrics_table", lambda profile, names, seeds, dataset: (
        pd.DataFrame([{"run": "add"}]) if dataset == "openmoji" else pd.DataFrame()))
    monkeypatch.setattr(claims, "claims", lambda profile, seeds, dataset: pd.DataFrame(
        [(k, CLAIMS[k], f"{dataset} numbers", "held") for k in CLAIMS],
        columns=["claim", "paper", "ours", "verdict"]))
    # faces' own file: its columns from its runs, and a stale openmoji column that must not be read
    faces = pd.DataFrame({"claim": list(CLAIMS), "paper": list(CLAIMS.values()),
                          "ours (openmoji)": "stale", "verdict (openmoji)": "stale",
                          "ours (faces)": [f"gain {i} [95% interval of the gap 1 to 2]"
                                           for i in range(len(CLAIMS))],
                          "verdict (faces)": "did not hold"})
    (folders["faces"] / "claims.csv").write_text(
        "# profile: mini\n# dataset: faces\n# precision: fp32\n# seeds: 0, 1, 2\n"
        "# git commit: abc1234\n" + faces.to_csv(index=False))
    t = claims.by_dataset("mini", (0, 1, 2)).set_index("claim")
    assert (t["ours (openmoji)"] == "openmoji numbers").all()
    assert t["ours (faces)"].tolist() == faces["ours (faces)"].tolist()
    assert (t["verdict (faces)"] == "did not hold").all()
    assert (t["datasets agree"] == "no: the verdicts differ").all()
    read = t.attrs["read"]["faces claims"]
    assert "abc1234" in read and "fp32" in read and "0, 1, 2" in read and "not on this machine" in read
    assert "openmoji claims" not in t.attrs["read"]

    # a file that only says the dataset was not run is no result
    faces["verdict (faces)"] = "not run (make reproduce DATASET=faces)"
    (folders["faces"] / "claims.csv").write_text(faces.to_csv(index=False))
    t = claims.by_dataset("mini", (0, 1, 2)).set_index("claim")
    assert (t["datasets agree"] == "one dataset run").all() and t.attrs["read"] == {}


def test_each_hue_arm_is_the_base_arm_plus_its_one_lever():
    from paperlib.study.registry import HUE_ARMS, HUE_VAL, run_overrides

    base = run_overrides("mini", "hue-base")
    assert base == {**run_overrides("mini", "scft-triplet-3x"), "data.val_holdout": HUE_VAL, "loss.lambda_ab": 0.0}
    levers = {name: {k: v for k, v in run_overrides("mini", name).items() if base.get(k) != v}
              for name in HUE_ARMS[1:]}
    assert levers == {"hue-sga": {"model.aggregation": "sga"},
                      "hue-rotation": {"data.hue_rotation": 180.0},
                      "hue-ab": {"loss.lambda_ab": mini().loss.lambda_rec},
                      "hue-lr": {"train.lr_g": 3 * mini().train.lr_g}}


@pytest.mark.parametrize("sga_fid,expected", [(80.0, "held"), (99.0, "same direction, inside the seed spread"),
                                              (120.0, "did not hold"), (None, None)])
def test_the_sga_claim_compares_fid_with_scft_at_equal_steps(monkeypatch, sga_fid, expected):
    """The successor paper's claim gets a row only where the SGA arm ran; with one FID per arm
    (no interval over seeds) its verdict reads the FID gap against the larger seed spread of
    the two arms, as every claim without an interval does."""
    from paperlib.study import claims

    runs = {"scft-triplet": 100.0, "add": 110.0, "adain": 115.0}
    if sga_fid is not None:
        runs["sga"] = sga_fid
    cols = ["fid_cross", "region_de_self", "palette_cross", "ssim_self", "ref_gain_de_self",
            "palette_follow_cross"]
    table = pd.DataFrame([{"run": r, **{c: v for c in cols}, **{c + "_sd": 2.0 for c in cols}}
                          for r, v in runs.items()])
    one_seed = pd.DataFrame([{"reference": "image", "run": r, "seed": 0, "metric": "fid_cross",
                              "value": v} for r, v in runs.items()])
    monkeypatch.setattr(claims, "metrics_table", lambda *a, **k: one_seed)
    monkeypatch.setattr(claims, "summarise", lambda df, metrics: table)
    monkeypatch.setattr(claims, "attention_accuracy", lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(claims, "read_metrics_pair", lambda *a, **k: {})
    rows = claims.claims("mini", (0, 1)).set_index("claim")
    if expected is None:
        assert "sga" not in rows.index
    else:
        assert rows.loc["sga", "verdict"] == expected
        assert f"SGA {sga_fid:.2f} vs SCFT 100.00 [no KID interval" in rows.loc["sga", "ours"]
