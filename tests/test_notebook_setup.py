"""paperlib.notebook: the one set-up call of every notebook, and tables shown reproducibly."""
import pandas as pd
import pytest

from paperlib import notebook


def test_setup_prints_the_profile_line_and_applies_overrides(capsys, tmp_path, monkeypatch):
    config, results = notebook.setup("smoke", data__dataset="folder", train__max_steps=7)
    line = capsys.readouterr().out.strip()
    assert line.startswith("profile=smoke  resolution=")
    # the line shows the profile's own steps, the config carries the override
    assert f"steps={notebook.get_profile('smoke').train.max_steps}" in line
    assert config.train.max_steps == 7 and config.data.dataset == "folder"
    assert results.is_dir()


def test_setup_rejects_an_unknown_field():
    with pytest.raises(Exception, match="no_such"):
        notebook.setup("smoke", train__no_such=1)


@pytest.mark.parametrize("column,want", [("fid_cross", 2), ("fid_cross_sd", 2), ("kid_cross", 4),
                                         ("region_de_self", 2), ("region_jnd_share_self", 3),
                                         ("palette_follow_cross", 3), ("palette_cross", 2),
                                         ("ssim_self", 3), ("unknown", notebook.DEFAULT_DECIMALS)])
def test_decimals_by_metric(column, want):
    assert notebook.decimals(column) == want


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
