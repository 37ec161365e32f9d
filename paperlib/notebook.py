"""The set-up every notebook starts with, and how its tables are shown.

`setup(profile)` replaces the cell each notebook used to copy: the profile's config (with the
notebook's overrides), the folder its tables and figures go to, and one line that says which
profile ran. `show(table)` displays a table at the precision the reproduction holds
(`PRECISION`), with a fixed id, so that re-executing a notebook on the same runs gives the
same output, character for character.
"""
from __future__ import annotations

from pathlib import Path

from .config import Config, get_profile, override

# Decimals shown per metric, by name prefix (longest prefix wins). A re-execution on the same
# runs reads the same metrics.jsonl and reproduces every digit; a second reproduction on the
# same kind of CPU moved FID in its 4th decimal (107.3687 against 107.3686: float summation
# order in the Inception features), which 2 decimals hide while still showing differences
# far below the spread between seeds (0.1 to 2 FID). The other metrics are shown at the
# resolution their analysis uses: colour errors in dE00 to 0.01 (one JND is about 1), ratios
# and hit rates to 0.001, KID (about 0.03) to 1e-4, PSNR to 0.01 dB.
PRECISION: dict[str, int] = {
    "fid": 2, "kid": 4, "ssim": 3, "psnr": 2, "region_jnd": 3, "region": 2, "ref_gain": 2,
    "palette_follow": 3, "palette": 2, "attention": 3, "g_": 4, "d_": 4,
}
DEFAULT_DECIMALS = 4


def decimals(column: str) -> int:
    """Decimals shown for a metric column (a `_sd` spread takes its metric's)."""
    name = column[:-3] if column.endswith("_sd") else column
    best = max((p for p in PRECISION if name.startswith(p)), key=len, default=None)
    return PRECISION[best] if best is not None else DEFAULT_DECIMALS


def setup(profile: str | None = None, **overrides) -> tuple[Config, Path]:
    """The notebook's config and results folder; prints the profile line every notebook shows.

    `profile` None means $PAPERLIB_PROFILE, else mini. Keyword overrides name config fields
    with `__` for the dot (`data__dataset='openmoji'`); they are applied after the line is
    printed, which shows the profile's own values."""
    from .study.reproduce import results_dir

    config = get_profile(profile)
    results = results_dir(config.profile)
    print(f"profile={config.profile}  resolution={config.data.resolution}  width={config.model.width}  "
          f"steps={config.train.max_steps}  batch={config.train.batch_size}  precision={config.train.precision}")
    if overrides:
        config = override(config, {k.replace("__", "."): v for k, v in overrides.items()})
    return config, results


def show(table, table_id: str, **properties):
    """A pandas Styler of `table` with each numeric column at its metric's decimals and the
    id `table_id` (pandas draws a random one per call, which would differ on every run; two
    tables of one notebook need two ids, or the page applies one's style to both)."""
    import pandas as pd

    numeric = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    styler = table.style.set_uuid(table_id)
    styler = styler.format({c: f"{{:.{decimals(str(c))}f}}" for c in numeric}, na_rep="")
    return styler.set_properties(**properties) if properties else styler
