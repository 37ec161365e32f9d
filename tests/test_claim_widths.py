"""claim_widths: intervals read back from claims.csv text and paired across two tables."""
import math

import numpy as np
import pandas as pd
import pytest

from paperlib.study import claim_widths
from paperlib.study.reproduce import repo_root


def table(rows):
    return pd.DataFrame(rows, columns=["claim", "paper", "ours (openmoji)", "verdict (openmoji)",
                                       "ours (faces)", "verdict (faces)"])


def test_intervals_are_read_in_order_with_their_kind_and_sign():
    text = ("gain 18.98 [95% interval of the gap 17.11 to 20.92]; ratio 0.663 "
            "[95% interval of the gap 0.227 to 0.444]; FID [95% interval of the FID gap over "
            "seeds -3.10 to -0.25]")
    assert claim_widths.intervals(text) == [("gap", 17.11, 20.92), ("gap", 0.227, 0.444),
                                            ("FID gap over seeds", -3.10, -0.25)]
    assert claim_widths.intervals("no interval here") == []


def test_widths_pair_by_claim_dataset_and_order_and_keep_one_sided_rows():
    before = table([["fig3", "p", "x [95% interval of the gap -1.79 to 0.83]", "undecided",
                     "y [95% interval of the gap -0.88 to 0.95]", "undecided"],
                    ["fig1", "p", "[95% interval of the gap 1 to 3] [95% interval of the gap "
                     "0.2 to 0.6]", "held", "", "held"]])
    after = table([["fig1", "p", "[95% interval of the gap 1.5 to 2.5] [95% interval of the gap "
                    "0.3 to 0.4]", "held", float("nan"), "held"],
                   ["fig3", "p", "x [95% interval of the gap -0.2 to 1.11]", "undecided",
                    "y", "-"],
                   ["table1", "p", "[95% interval of the FID gap over seeds -4 to -1]", "held",
                    "", ""]])
    out = claim_widths.compare(before, after).set_index(["claim", "dataset", "gap"])
    assert out.loc[("fig3", "openmoji", "gap"), "width before"] == pytest.approx(2.62)
    assert out.loc[("fig3", "openmoji", "gap"), "width after"] == pytest.approx(1.31)
    assert out.loc[("fig3", "openmoji", "gap"), "after / before"] == pytest.approx(0.5)
    # the second interval of the same kind pairs with the second, not the first
    assert out.loc[("fig1", "openmoji", "gap (2)"), "after / before"] == pytest.approx(0.25)
    assert out.loc[("fig1", "openmoji", "gap"), "after / before"] == pytest.approx(0.5)
    # faces lost its interval; table1 gained one: each keeps its single side
    assert math.isnan(out.loc[("fig3", "faces", "gap"), "width after"])
    assert math.isnan(out.loc[("table1", "openmoji", "FID gap over seeds"), "width before"])
    assert out.loc[("table1", "openmoji", "FID gap over seeds"), "width after"] == 3
    # the current table's claim order leads
    assert list(dict.fromkeys(out.reset_index()["claim"])) == ["fig1", "fig3", "table1"]
    assert list(out.loc["fig3"].reset_index()["dataset"]) == ["openmoji", "faces"]


def test_the_committed_earlier_claims_give_fig3s_width(tmp_path):
    earlier = repo_root() / "results" / "earlier-recipe" / "grid8-amd" / "claims.csv"
    rows = claim_widths.interval_rows(claim_widths.read_claims(earlier)).set_index(
        ["claim", "dataset", "gap"])
    fig3 = rows.loc[("fig3", "openmoji", "gap")]
    assert fig3["high"] - fig3["low"] == pytest.approx(0.83 + 1.79)
    written = claim_widths.write(earlier, earlier, tmp_path / "w")
    assert (written["after / before"].dropna() == 1).all() and len(written) == len(rows)
    assert (tmp_path / "w.md").read_text().startswith("### claim intervals")


def test_a_missing_or_foreign_table_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        claim_widths.read_claims(tmp_path / "nope.csv")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="t.csv.*no 'claim' column"):
        claim_widths.read_claims(tmp_path / "t.csv")


@pytest.mark.parametrize("dataset, before, after", [
    ("openmoji", "earlier-recipe/grid8-amd/claims.csv", "claims.csv"),
    ("faces", "earlier-recipe/faces-grid8-amd/claims.csv", "faces/claims.csv"),
])
def test_the_committed_widths_are_those_of_the_committed_claims(dataset, before, after):
    """results/claim-widths/<dataset>.csv is compare() of the two committed claims tables, so
    the widths the reports quote cannot drift from the claims they came from."""
    results = repo_root() / "results"
    rebuilt = claim_widths.compare(claim_widths.read_claims(results / before),
                                   claim_widths.read_claims(results / after))
    committed = pd.read_csv(results / "claim-widths" / f"{dataset}.csv")
    assert list(committed[["claim", "dataset", "gap"]].itertuples(index=False)) == \
        list(rebuilt[["claim", "dataset", "gap"]].itertuples(index=False))
    for column in ["width before", "width after", "after / before"]:
        assert np.allclose(committed[column], rebuilt[column], rtol=1e-5, equal_nan=True), column
