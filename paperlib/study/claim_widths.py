"""How much narrower the claims' intervals got: two claims.csv files (notebook 07's), one from an
earlier recipe and one from the current, side by side, interval by interval.

claims.csv holds each interval only inside its text ("[95% interval of the <gap> lo to hi]",
`claims.judged`), so the intervals are read back from there. Within one claim and dataset, the
n-th interval of a kind is paired with the n-th of the same kind: Fig. 1, for example, has one
interval of the gain and then one of the palette ratio, both named "gap".
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

# "[95% interval of the FID gap over seeds -3.10 to 1.25]" -> ("FID gap over seeds", -3.10, 1.25)
INTERVAL = re.compile(r"\[95% interval of the (?P<gap>.+?) (?P<lo>-?\d+(?:\.\d+)?) to "
                      r"(?P<hi>-?\d+(?:\.\d+)?)\]")
COLUMN = re.compile(r"^ours \((?P<dataset>[^)]+)\)$")


def intervals(text: str) -> list[tuple[str, float, float]]:
    """Every interval in one cell of claims.csv, in order: (what it is of, low, high)."""
    return [(m["gap"], float(m["lo"]), float(m["hi"])) for m in INTERVAL.finditer(text or "")]


def interval_rows(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per interval of a claims table: claim, dataset, gap (its kind, numbered where a
    claim has more than one of a kind), low, high."""
    rows = []
    for _, row in claims.iterrows():
        for column in claims.columns:
            m = COLUMN.match(str(column))
            if not m:
                continue
            seen: dict[str, int] = {}
            for gap, lo, hi in intervals(str(row[column]) if row[column] == row[column] else ""):
                seen[gap] = seen.get(gap, 0) + 1
                label = gap if seen[gap] == 1 else f"{gap} ({seen[gap]})"
                rows.append({"claim": row["claim"], "dataset": m["dataset"], "gap": label,
                             "low": lo, "high": hi})
    return pd.DataFrame(rows, columns=["claim", "dataset", "gap", "low", "high"])


def compare(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """The intervals of two claims tables side by side: width before and after, and after /
    before (below 1: narrower). An interval only one side has keeps NaN on the other. Rows follow
    the current table's claims, and its datasets in column order."""
    b, a = interval_rows(before), interval_rows(after)
    keys = ["claim", "dataset", "gap"]
    merged = b.merge(a, on=keys, how="outer", suffixes=(" before", " after"), sort=False)
    merged["width before"] = merged["high before"] - merged["low before"]
    merged["width after"] = merged["high after"] - merged["low after"]
    merged["after / before"] = merged["width after"] / merged["width before"]
    order = {c: i for i, c in enumerate(dict.fromkeys([*after["claim"], *before["claim"]]))}
    datasets = [m["dataset"] for c in [*after.columns, *before.columns]
                if (m := COLUMN.match(str(c)))]
    places = {d: i for i, d in enumerate(dict.fromkeys(datasets))}
    merged["order"] = merged["claim"].map(order)
    merged["place"] = merged["dataset"].map(places)
    return (merged.sort_values(["order", "place"], kind="stable").drop(columns=["order", "place"])
            .reset_index(drop=True))


def read_claims(path: Path) -> pd.DataFrame:
    """claims.csv, skipping its commented provenance lines."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no claims table at {path}: notebook 07 writes it")
    table = pd.read_csv(path, comment="#")
    if "claim" not in table.columns:
        raise ValueError(f"{path} is not a claims table: it has no 'claim' column")
    return table


def write(before: Path, after: Path, out: Path) -> pd.DataFrame:
    """compare() of two claims.csv files, written to out.csv and out.md with both sources named."""
    table = compare(read_claims(before), read_claims(after))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.6g")
    head = (f"### claim intervals: widths before and after\n\nbefore: `{before}`  \n"
            f"after: `{after}`  \nwidth = high - low of the 95% interval; after / before below 1 "
            "means narrower. A blank side had no such interval.\n\n")
    out.with_suffix(".md").write_text(head + table.to_markdown(index=False, floatfmt=".4g") + "\n")
    return table


def add_claim_widths_arguments(sp) -> None:
    sp.add_argument("--before", type=Path, required=True, help="the earlier claims.csv")
    sp.add_argument("--after", type=Path, default=Path("results/claims.csv"),
                    help="the current claims.csv (default results/claims.csv)")
    sp.add_argument("--out", type=Path, default=Path("results/claim-widths/openmoji"),
                    help="written as OUT.csv and OUT.md (default results/claim-widths/openmoji)")


def claim_widths_main(args) -> None:
    table = write(args.before, args.after, args.out)
    print(f"wrote {args.out.with_suffix('.csv')} and .md: {len(table)} intervals")
