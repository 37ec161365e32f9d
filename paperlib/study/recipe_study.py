"""`python -m paperlib recipe-study`: the recipe study, out of `make reproduce`.

mini departs from the paper's recipe where this study showed the reference is used sooner on
two cores (config.mini's docstring). Its runs (`registry.RECIPES`: the paper's five-term
objective, L1 + triplet alone, and the adopted recipe on Table 2's grid) train with one seed;
each is measured on training images at every snapshot, never on the test split. The command
writes table_recipe.{csv,md} and fig_recipe_curves.png into the dataset's results folder, where
the committed ones are; notebook 02 shows them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import get_dataset, get_profile, override
from ..evaluation.dynamics import recipe_provenance
from .figures import reference_use_curves
from .parallel import ensure_runs
from .registry import RECIPES
from .reproduce import results_dir
from .tables import curves, recipe_table, save_table

TABLE, FIGURE = "table_recipe", "fig_recipe_curves.png"


def run(profile: str, dataset: str, seed: int = 0, progress: bool = True) -> list[Path]:
    """Train (or resume) the recipe runs, then write their table and curves; the files written."""
    ensure_runs(profile, [(r, seed) for r in RECIPES], evaluate=False, progress=progress,
                dataset=dataset)
    out = results_dir(profile, dataset)
    config = override(get_profile(profile), {"data.dataset": dataset})
    table = recipe_table(profile, RECIPES, seed, progress=progress, dataset=dataset)
    md = save_table(table, TABLE, out, recipe_provenance(config, seed))
    fig = reference_use_curves(curves(profile, RECIPES, seed, progress=progress, dataset=dataset),
                               x="minutes")
    fig.savefig(out / FIGURE, dpi=100)
    return [md, md.with_suffix(".csv"), out / FIGURE]


def add_recipe_study_arguments(sp) -> None:
    sp.description = __doc__.splitlines()[0]
    sp.add_argument("--profile", default="mini", help="the recipe the runs change (default mini)")
    sp.add_argument("--dataset", default=None, help="openmoji (default) or faces")
    sp.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")


def recipe_study_main(args) -> None:
    for path in run(args.profile, get_dataset(args.dataset), args.seed):
        print(f"wrote {path}")


def committed(dataset: str | None = None, profile: str = "mini") -> tuple[pd.DataFrame, Path]:
    """The committed recipe table of `dataset` (as a DataFrame) and its curves' figure path:
    the study ran in `profile` mini, whichever profile reads it."""
    out = results_dir(profile, get_dataset(dataset))
    path = out / f"{TABLE}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: `python -m paperlib recipe-study "
                                f"--dataset {get_dataset(dataset)}` writes it")
    return pd.read_csv(path, comment="#"), out / FIGURE
