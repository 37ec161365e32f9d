import pandas as pd
import pytest

from paperlib.study import generalisation as gen
from paperlib.study import reproduce
from paperlib.study.registry import MAIN, RUNS, run_config


def test_every_case_names_a_registry_run_and_the_jobs_cover_them_once():
    assert {c.run for c in gen.CASES} <= set(RUNS)
    assert len({c.name for c in gen.CASES}) == len(gen.CASES)
    jobs = gen.training_jobs(seeds=(0, 1))
    assert set(jobs) == {"openmoji", "faces"}
    assert jobs["faces"] == [(MAIN, 0), (MAIN, 1)]
    # the main model is the line-art arm of the sketch-kind cases: trained once
    assert MAIN == "scft-triplet"
    assert sorted(jobs["openmoji"]) == sorted((r, s) for r in (MAIN, "scft-triplet-xdog") for s in (0, 1))


def test_no_two_cases_measure_the_same_thing():
    """A case is a run scored on a test set; two cases with the same run, training and test
    data would be one measurement shown twice in the table."""
    measured = [(c.run, c.trained, c.tested, c.split, c.sketch) for c in gen.CASES]
    assert len(set(measured)) == len(measured), measured
    # the sketch-kind block's line-art baseline is the across-datasets row
    base = next(c for c in gen.CASES if c.name == "OpenMoji -> OpenMoji")
    assert (base.run, base.sketch) == (MAIN, "line")
    kinds = [c for c in gen.CASES if c.question.startswith("sketch kind")]
    assert {(c.run, c.sketch) for c in kinds} == {(MAIN, "xdog"), ("scft-triplet-xdog", "xdog"),
                                                  ("scft-triplet-xdog", "line")}


def test_the_xdog_arm_differs_from_the_full_method_in_its_sketches_alone():
    a = run_config("mini", "scft-triplet", 0, "openmoji")
    b = run_config("mini", "scft-triplet-xdog", 0, "openmoji")
    assert (a.data.sketch_source, b.data.sketch_source) == ("line", "xdog")
    assert a.train == b.train and a.model == b.model and a.loss == b.loss


def long_rows(cases, values):
    """A long metrics table as long_table makes it: two seeds per case."""
    rows = []
    for case, v in zip(cases, values):
        for seed, dv in ((0, -1.0), (1, 1.0)):
            for m in ("region_de_self", "fid_cross"):
                rows.append({"run": case.name, "seed": seed, "metric": m, "value": v + dv,
                             "step": 1000, "sketch_source": case.sketch or "xdog"})
    return pd.DataFrame(rows)


def test_the_table_has_one_row_per_case_with_mean_and_spread():
    cases = gen.CASES[:2] + gen.CASES[-1:]
    table = gen.generalisation_table(long_rows(cases, [10.0, 20.0, 30.0]), cases,
                                     metrics=("region_de_self", "fid_cross"))
    assert list(table["case"]) == [c.name for c in cases]
    assert list(table["region_de_self"]) == ["10.00 ± 1.41", "20.00 ± 1.41", "30.00 ± 1.41"]
    assert table["tested on"].iloc[-1] == "openmoji test, line sketches"
    assert table["tested on"].iloc[1] == "faces test"
    with pytest.raises(ValueError, match="no metrics for run"):
        gen.generalisation_table(long_rows(cases[:1], [1.0]), cases, metrics=("fid_cross",))


def test_the_memory_summary_puts_the_datasets_side_by_side():
    df = pd.DataFrame([{"run": MAIN, "seed": s, "compared": c, "dataset": d,
                        "region_de": base + s, "region_dh": base / 2}
                       for d, base in (("openmoji", 10.0), ("faces", 20.0))
                       for c in ("output against a(I)", "output against I") for s in (0, 2)]
                      + [{"run": "other", "seed": 0, "compared": "output against I",
                          "dataset": "faces", "region_de": 99.0, "region_dh": 99.0}])
    out = gen.memory_summary(df).set_index("compared")
    assert out.loc["output against I", "region_de (openmoji)"] == 11.0
    assert out.loc["output against I", "region_de (faces)"] == 21.0
    assert out.loc["output against a(I)", "region_dh (faces)"] == 10.0
    with pytest.raises(ValueError, match="no rows of run"):
        gen.memory_summary(df, run="missing")


def test_a_case_whose_run_has_not_finished_says_which(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "run_path", lambda *a: tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="faces -> faces.*has not finished"):
        gen.case_rows("mini", gen.CASES[2], 0)


def test_the_generalisation_notebook_runs_after_both_datasets(monkeypatch):
    assert [p.name for p in reproduce.notebooks(cross=True)] == list(reproduce.CROSS_DATASET)
    assert not set(reproduce.CROSS_DATASET) & {p.name for p in reproduce.notebooks()}
    assert [p.name for p in reproduce.notebooks("09")] == ["09_generalisation.ipynb"]
    calls = []
    monkeypatch.setattr(reproduce, "execute",
                        lambda profile, dataset, books, planner=None: calls.append((dataset, [b.name[:2] for b in books])))
    reproduce.run_notebooks("mini", dataset="both")
    per = [p.name[:2] for p in reproduce.notebooks()]
    assert calls == [("openmoji", per), ("faces", per), ("openmoji", ["09"])]
    calls.clear()
    reproduce.run_notebooks("mini", only="09", dataset="both")  # once, not once per dataset
    assert calls == [("openmoji", ["09"])]
    calls.clear()
    reproduce.run_notebooks("mini", only="07", dataset="both")
    assert calls == [("openmoji", ["07"]), ("faces", ["07"])]
    with pytest.raises(FileNotFoundError, match="'99'"):
        reproduce.run_notebooks("mini", only="99", dataset="both")


def test_every_openmoji_test_set_names_its_sketches():
    """OpenMoji has two kinds of sketch: a case scored there says which, faces cases do not."""
    for case in gen.CASES:
        assert (case.sketch in ("line", "xdog")) == (case.tested == "openmoji"), case.name
