"""paperlib.notebook: the one set-up call of every notebook, and tables shown reproducibly."""
import pandas as pd
import pytest

from paperlib import notebook
from paperlib.evaluation import evaluate
from paperlib.study import tables


def test_setup_prints_the_profile_line_and_applies_overrides(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_DATASET", "openmoji")  # restored after the test: setup exports it
    config, results = notebook.setup("smoke", data__resolution=64, train__max_steps=7)
    line = capsys.readouterr().out.strip()
    assert line.startswith("profile=smoke  dataset=openmoji  resolution=32")
    # the line shows the profile's own steps, the config carries the override
    assert f"steps={notebook.get_profile('smoke').train.max_steps}" in line
    assert config.train.max_steps == 7 and config.data.resolution == 64
    assert results.is_dir()


def test_setup_on_faces_exports_the_dataset_for_the_registry(capsys, monkeypatch):
    """After setup(dataset='faces') every registry call of the notebook (and of its worker
    processes, which inherit the environment) reads and writes the faces runs."""
    from paperlib.study import registry, reproduce

    monkeypatch.setenv("PAPERLIB_DATASET", "openmoji")
    config, results = notebook.setup("smoke", "faces")
    assert "dataset=faces" in capsys.readouterr().out
    assert config.data.dataset == "faces"
    assert results == reproduce.repo_root() / "runs" / "smoke-faces" / "results"
    assert registry.run_path("smoke", "add", 1).parent.name == "smoke-faces"
    assert registry.run_config("smoke", "add", 1).data.dataset == "faces"
    # an explicit dataset wins over the exported one
    assert registry.run_path("smoke", "add", 1, "openmoji").parent.name == "smoke"


def test_setup_names_an_unknown_dataset(monkeypatch):
    monkeypatch.setenv("PAPERLIB_DATASET", "openmoji")
    with pytest.raises(ValueError, match="unknown dataset 'celeba'.*openmoji.*faces"):
        notebook.setup("smoke", "celeba")
    monkeypatch.setenv("PAPERLIB_DATASET", "emoji")
    with pytest.raises(ValueError, match="unknown dataset 'emoji'"):
        notebook.setup("smoke")


@pytest.mark.parametrize("profile,dataset,results,runs", [
    ("mini", "openmoji", "results", "runs/mini"),
    ("mini", "faces", "results/faces", "runs/mini-faces"),
    ("paper", "openmoji", "results/paper", "runs/paper"),
    ("paper", "faces", "results/paper/faces", "runs/paper-faces"),
    ("smoke", "faces", "runs/smoke-faces/results", "runs/smoke-faces"),
])
def test_each_dataset_has_its_own_runs_and_results(profile, dataset, results, runs, monkeypatch, tmp_path):
    from paperlib.study import reproduce

    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    assert reproduce.results_dir(profile, dataset) == tmp_path / results
    assert reproduce.runs_dir(profile, dataset) == tmp_path / runs


def test_executed_notebooks_are_kept_per_dataset(monkeypatch, tmp_path):
    """mini on OpenMoji writes over the committed notebook; mini on faces keeps its own copy
    in results/faces/notebooks/; other profiles keep none."""
    from paperlib.study import reproduce

    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    nb = tmp_path / "notebooks" / "02_training.ipynb"
    assert reproduce.executed_notebook(nb, "mini", "openmoji") == nb
    assert reproduce.executed_notebook(nb, "mini", "faces") == tmp_path / "results/faces/notebooks/02_training.ipynb"
    assert reproduce.executed_notebook(nb, "smoke", "faces") is None


def test_setup_rejects_an_unknown_field():
    with pytest.raises(Exception, match="no_such"):
        notebook.setup("smoke", train__no_such=1)


@pytest.mark.parametrize("column,want", [("fid_cross", 2), ("fid_cross_sd", 2), ("kid_cross", 4),
                                         ("region_de_self", 2), ("region_jnd_share_self", 3),
                                         ("palette_follow_cross", 3), ("palette_cross", 2),
                                         ("ssim_self", 3), ("unknown", evaluate.DEFAULT_DECIMALS)])
def test_decimals_by_metric(column, want):
    assert evaluate.decimals(column) == want


def test_show_is_the_same_html_twice_at_the_metric_precision():
    df = pd.DataFrame({"run": ["a"], "fid_cross": [107.368645], "kid_cross": [0.033412],
                       "seeds": [2]})
    first = notebook.show(df, "t1").to_html()
    assert first == notebook.show(df, "t1").to_html()
    assert "107.37" in first and "107.368" not in first and "0.0334" in first
    assert "T_t1" in first
    # the fifth-decimal noise of a second reproduction does not show
    df2 = df.assign(fid_cross=[107.368658])
    assert notebook.show(df2, "t1").to_html() == first


def test_headline_rows_in_order_with_mean_and_spread(tmp_path):
    df = pd.DataFrame([{"run": r, "seed": s, "metric": m, "value": v}
                       for r, base in (("main", 10.0), ("arm", 20.0))
                       for s, v0 in ((0, base), (1, base + 2.0))
                       for m, v in (("region_de_self", v0), ("fid_cross", 100 + v0))])
    t = tables.headline_table(df, ["main", "arm"], metrics=("region_de_self", "fid_cross"))
    assert t["run"].tolist() == ["main", "arm"]
    # mean of 10 and 12 is 11, sd of the two is sqrt(2)
    assert t.loc[0, "region_de_self"] == "11.00 ± 1.41"
    assert t.loc[1, "fid_cross"] == "121.00 ± 1.41" and t.loc[1, "seeds"] == 2
    with pytest.raises(ValueError, match="nope"):
        tables.headline_table(df, ["main", "nope"], metrics=("region_de_self",))
    path = tables.save_headline(t, tmp_path, {"profile": "mini"})
    text = path.read_text()
    assert path.name == "headline.md" and "11.00 ± 1.41" in text and "- profile: mini" in text


def test_show_takes_a_grouped_tables_decimals_from_its_metric():
    df = pd.DataFrame({"run": ["a", "a"], "region_de_self": [19.43271, 19.5], "kid_cross": [0.02301, 0.024]})
    grouped = df.groupby("run").agg(["mean", "std"])
    html = notebook.show(grouped, "g").to_html()
    assert "19.47" in html and "19.466" not in html   # region_de at 2 decimals
    assert "0.0235" in html                           # kid at 4
