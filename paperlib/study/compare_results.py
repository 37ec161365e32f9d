"""How far two reproductions' tables differ, metric by metric.

Two `results/` folders (say one from an Intel Xeon with AMX and one from an AMD EPYC without
it) hold the same CSV tables. For each table and each numeric column this reports the largest
absolute difference over the rows both have, the column's spread between seeds where the table
has one (`<metric>_sd`), and the ratio of the two: a difference well inside the seed spread is
what a different bf16 kernel is expected to give.

    python -m paperlib.study.compare_results A_DIR B_DIR --label-a AMD --label-b Intel \
        --out results/cross_cpu.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

# The tables of the reproduction keyed by their row labels (first matching column).
KEYS = ("run", "recipe", "claim", "metric", "notebook", "step", "size")


# Numeric columns that name a row rather than measure it.
NUMERIC_KEYS = ("seed", "step")


def row_key(df: pd.DataFrame) -> list[str]:
    """The columns that name a row: the non-numeric ones and the numeric ids (seed, step),
    else the known key names."""
    keys = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    keys += [c for c in NUMERIC_KEYS if c in df.columns and c not in keys]
    return keys or [c for c in KEYS if c in df.columns]


def compare_table(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per numeric column present in both: max |a - b| over the rows both tables have,
    the mean seed spread of that column (if a `_sd` column exists) and their ratio."""
    keys = row_key(a)
    if keys and all(k in b.columns for k in keys):
        # a text column left empty on one side (a dataset not run) reads back as float NaN:
        # such a key is compared as text, so its rows simply do not pair
        mixed = [k for k in keys if a[k].dtype != b[k].dtype]
        if mixed:
            a, b = a.copy(), b.copy()
            for k in mixed:
                a[k], b[k] = (s.astype(object).fillna("").astype(str) for s in (a[k], b[k]))
        merged = a.merge(b, on=keys, suffixes=("_a", "_b"))
    else:  # no key: rows in order
        n = min(len(a), len(b))
        merged = a.iloc[:n].reset_index(drop=True).join(b.iloc[:n].reset_index(drop=True),
                                                        lsuffix="_a", rsuffix="_b")
    rows = []
    for col in a.columns:
        if col in keys or col.endswith("_sd") or col not in b.columns:
            continue
        ca, cb = merged.get(f"{col}_a"), merged.get(f"{col}_b")
        if ca is None or cb is None or not (pd.api.types.is_numeric_dtype(ca)
                                            and pd.api.types.is_numeric_dtype(cb)):
            continue
        diff = (ca - cb).abs()
        if diff.isna().all():
            continue
        spread = None
        if f"{col}_sd_a" in merged.columns:
            spread = float(merged[f"{col}_sd_a"].mean())
        worst = float(diff.max())
        rows.append({"column": col, "rows": int(diff.notna().sum()), "max_abs_diff": worst,
                     "seed_sd": spread,
                     "diff_over_sd": (worst / spread) if spread else None})
    return pd.DataFrame(rows, columns=["column", "rows", "max_abs_diff", "seed_sd", "diff_over_sd"])


def compare_dirs(a_dir: Path, b_dir: Path) -> dict[str, pd.DataFrame]:
    """compare_table for every CSV present in both folders (by name), sorted by name."""
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    for d in (a_dir, b_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"no results folder at {d}")
    out = {}
    for pa in sorted(a_dir.glob("*.csv")):
        pb = b_dir / pa.name
        if pb.exists():
            # the tables carry their provenance as leading "# key: value" lines
            table = compare_table(pd.read_csv(pa, comment="#"), pd.read_csv(pb, comment="#"))
            if not table.empty:
                out[pa.stem] = table
    return out


def report(tables: dict[str, pd.DataFrame], label_a: str, label_b: str) -> str:
    lines = [f"# {label_a} against {label_b}", "",
             f"Largest absolute difference per column over the rows both tables have "
             f"(`python -m paperlib.study.compare_results`); `seed_sd` is the mean spread "
             f"between seeds in {label_a}'s table where it has one.", ""]
    for name, table in tables.items():
        lines += [f"## {name}", "", table.to_markdown(index=False, floatfmt=".4g"), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m paperlib.study.compare_results", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a_dir", type=Path)
    p.add_argument("b_dir", type=Path)
    p.add_argument("--label-a", default="A")
    p.add_argument("--label-b", default="B")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    text = report(compare_dirs(args.a_dir, args.b_dir), args.label_a, args.label_b)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
