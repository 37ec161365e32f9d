"""The set-up every notebook starts with, and how its tables are shown.

`setup(profile, dataset)` replaces the cell each notebook used to copy: the profile's config on
the dataset (with the notebook's overrides), the folder its tables and figures go to, and one
line that says which profile and dataset ran. `show(table)` displays a table at the precision the reproduction holds
(`paperlib.evaluation.evaluate.PRECISION`), with a fixed id, so that re-executing a notebook on the same runs gives the
same output, character for character.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .config import Config, get_dataset, get_profile, override
from .evaluation.evaluate import decimals
from .study.reproduce import results_dir
from .training.loop import resolve_device
from .training.precision import resolve


def setup(profile: str | None = None, dataset: str | None = None, **overrides) -> tuple[Config, Path]:
    """The notebook's config and results folder; prints the line every notebook shows.

    `profile` None means $PAPERLIB_PROFILE, else mini; `dataset` None means $PAPERLIB_DATASET,
    else openmoji. The dataset is then exported as $PAPERLIB_DATASET, so that every registry
    call of the notebook (and the worker processes it starts) reads and writes that dataset's
    runs. Keyword overrides name config fields with `__` for the dot (`data__resolution=64`);
    they are applied after the line is printed, which shows the profile's own values."""
    config = get_profile(profile)
    dataset = get_dataset(dataset)
    os.environ["PAPERLIB_DATASET"] = dataset
    config = override(config, {"data.dataset": dataset})
    results = results_dir(config.profile, dataset)
    # "auto" shown as what it resolves to on this machine: the precision the runs train in
    precision = resolve(config.train.precision, resolve_device(config.train.device), warn=False)
    print(f"profile={config.profile}  dataset={dataset}  resolution={config.data.resolution}  "
          f"width={config.model.width}  steps={config.train.max_steps}  "
          f"batch={config.train.batch_size}  precision={precision.precision}")
    if overrides:
        config = override(config, {k.replace("__", "."): v for k, v in overrides.items()})
    return config, results


def show(table, table_id: str, **properties):
    """A pandas Styler of `table` with each numeric column at its metric's decimals and the
    id `table_id` (pandas draws a random one per call, which would differ on every run; two
    tables of one notebook need two ids, or the page applies one's style to both)."""
    numeric = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    styler = table.style.set_uuid(table_id)
    # a grouped table's columns are (metric, statistic) pairs: the metric sets the decimals
    name = lambda c: str(c[0] if isinstance(c, tuple) else c)  # noqa: E731
    styler = styler.format({c: f"{{:.{decimals(name(c))}f}}" for c in numeric}, na_rep="")
    return styler.set_properties(**properties) if properties else styler
