"""compare_results: the largest difference per column between two reproductions' tables."""
from pathlib import Path

import pandas as pd
import pytest

from paperlib.study.compare_results import compare_dirs, compare_table, main, report

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_differences_by_run_key_against_the_seed_spread():
    a = pd.DataFrame({"run": ["add", "scft"], "fid": [100.0, 90.0], "fid_sd": [1.0, 3.0],
                      "seeds": [2, 2]})
    b = pd.DataFrame({"run": ["scft", "add"], "fid": [90.5, 99.0], "fid_sd": [0.0, 0.0],
                      "seeds": [2, 2]})  # other row order: matched by run
    t = compare_table(a, b).set_index("column")
    assert t.loc["fid", "max_abs_diff"] == pytest.approx(1.0)
    assert t.loc["fid", "seed_sd"] == pytest.approx(2.0)
    assert t.loc["fid", "diff_over_sd"] == pytest.approx(0.5)
    assert t.loc["seeds", "max_abs_diff"] == 0
    assert "fid_sd" not in t.index


def test_identical_folders_differ_by_zero_and_a_missing_folder_is_named(tmp_path):
    df = pd.DataFrame({"run": ["x"], "v": [1.5]})
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        with open(tmp_path / d / "t.csv", "w") as f:  # as save_table writes them
            f.write(f"# git commit: {d}\n")
            df.to_csv(f, index=False)
    out = compare_dirs(tmp_path / "a", tmp_path / "b")
    assert list(out) == ["t"] and out["t"]["max_abs_diff"].tolist() == [0.0]
    with pytest.raises(FileNotFoundError, match="nope"):
        compare_dirs(tmp_path / "a", tmp_path / "nope")
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r.md")]) == 0
    assert "## t" in (tmp_path / "r.md").read_text()


def test_rows_of_one_seed_are_compared_with_the_same_seed():
    a = pd.DataFrame({"run": ["x", "x"], "seed": [0, 1], "v": [1.0, 5.0]})
    b = pd.DataFrame({"run": ["x", "x"], "seed": [1, 0], "v": [5.5, 1.0]})
    t = compare_table(a, b).set_index("column")
    assert t.loc["v", "max_abs_diff"] == pytest.approx(0.5) and t.loc["v", "rows"] == 2
    assert "seed" not in t.index


def test_a_key_column_empty_on_one_side_pairs_no_rows_instead_of_failing():
    # claims.csv with the other dataset not run: that column is all empty, which pandas reads
    # as float, against text on the side where it ran
    a = pd.DataFrame({"claim": ["fig1", "fig3"], "ours (faces)": [None, None], "v": [1.0, 2.0]})
    b = pd.DataFrame({"claim": ["fig1", "fig3"], "ours (faces)": ["x", None], "v": [1.5, 4.0]})
    t = compare_table(a, b).set_index("column")
    # fig3 is empty on both sides and pairs; fig1 does not
    assert t.loc["v", "rows"] == 1 and t.loc["v", "max_abs_diff"] == pytest.approx(2.0)


@pytest.mark.parametrize("doc, amd, intel", [
    ("cross_cpu.md", "amd", "earlier-recipe/intel"),
    ("cross_cpu_faces.md", "amd/faces", "earlier-recipe/faces-intel"),
])
def test_the_committed_cross_cpu_tables_rebuild_from_the_committed_results(doc, amd, intel):
    # the tables under each comparison's hand-written summary are the tool's output for the two
    # committed folders: a table changed in either folder without rerunning the tool fails here
    text = report(compare_dirs(RESULTS / amd, RESULTS / intel), "AMD", "Intel")
    body = text.split("\n", 2)[2]  # the tool's own heading gives way to the summary's
    assert "## table_all_runs" in body
    assert (RESULTS / doc).read_text().rstrip().endswith(body.rstrip())
