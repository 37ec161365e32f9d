"""What `pytest --nbval` compares in this project's notebooks, and what it leaves out.

Strict nbval re-executes every cell and compares its outputs with the stored ones after the
regexes of `tests/nbval_sanitize.cfg` (durations, memory addresses, machine paths, commit
hashes, pandas Styler ids). One more thing is left out here, because no regex can do it:
the stderr stream. It holds progress bars and warnings only (no result is ever printed there),
and whether a bar is drawn at all depends on the state of the run folders: a pool whose runs
are complete returns before it draws one, so a reproduction stores a bar that a re-execution
on the same runs does not. Everything on stdout and every rich output (tables as HTML and
text, Markdown) is compared; images are not (nbval skips them without nbdime).

This module is also a pytest plugin: `pyproject.toml` loads it (`addopts = -p ...`) for every
pytest run in the repository, so a plain `pytest --nbval notebooks` compares the same way.
"""
from __future__ import annotations

import sys

IGNORED_STREAMS = ("stderr",)


def skip_stderr(items) -> int:
    """Add the stderr stream to the keys nbval does not compare, for every collected notebook
    cell in `items`; returns how many notebooks were changed."""
    changed = set()
    for item in items:
        parent = getattr(item, "parent", None)
        keys = getattr(parent, "skip_compare", None)
        if keys is None:
            continue
        missing = tuple(k for k in IGNORED_STREAMS if k not in keys)
        if missing:
            parent.skip_compare = tuple(keys) + missing
            changed.add(id(parent))
    return len(changed)


def pytest_collection_modifyitems(session, config, items):
    """The pytest hook of this plugin: leave stderr out of nbval's comparison."""
    skip_stderr(items)


# The guard below reads the run registry, and with it torch: imported in its functions, so
# that loading the plugin (every pytest run in the repository) does not import torch.
CHECKED_PROFILES = ("mini",)


def required_runs(profile: str) -> list[tuple[str, int]]:
    """The runs the notebooks read in `profile` (mini): every arm with every seed, the precision
    check with seed 0 (as notebooks 02-06 train them). Notebook 09, which reads both datasets'
    runs, is not part of the check (the Makefile's NOTEBOOKS)."""
    from ..study.registry import ARMS, PRECISION_RUNS, study_seeds

    if profile not in CHECKED_PROFILES:
        raise ValueError(f"no strict notebook check for profile {profile!r}; it exists for "
                         f"{', '.join(CHECKED_PROFILES)}")
    return sorted({(n, s) for n in ARMS for s in study_seeds(profile)}
                  | {(r, 0) for r in PRECISION_RUNS.values()})


def missing_runs(profile: str = "mini", dataset: str | None = None) -> list[str]:
    """The runs a strict check of `profile`'s notebooks on `dataset` (None: $PAPERLIB_DATASET,
    else openmoji) reads whose training is not complete: nbval re-executes the notebooks, and
    a missing run would start training instead."""
    from ..study.registry import PRECISION_RUNS, RUNS, precision_runs, run_path
    from ..training.snapshot import FINAL

    required = required_runs(profile)
    unknown = sorted({n for n, _ in required} - set(RUNS))
    if unknown:
        raise ValueError(f"runs not in the registry: {', '.join(unknown)}")
    # the precision check's short runs are read only where this CPU trains them
    skipped = set(PRECISION_RUNS.values()) - set(precision_runs().values())
    return [f"{name} seed {seed}" for name, seed in required
            if name not in skipped and not (run_path(profile, name, seed, dataset) / FINAL).exists()]


def main(argv=None) -> int:
    """Exit 0 when every run the check reads is complete, else 1 with a message naming them;
    2 with one line for a profile or dataset the check does not know."""
    args = list(argv if argv is not None else sys.argv[1:]) or ["mini"]
    profile, dataset = args[0], (args[1] if len(args) > 1 else None)
    try:
        missing = missing_runs(profile, dataset)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if missing:
        from ..study.reproduce import runs_dir

        folder = runs_dir(profile, dataset).relative_to(runs_dir(profile, dataset).parent.parent)
        again = "make reproduce" + (f" DATASET={dataset}" if dataset and dataset != "openmoji" else "")
        print(f"check-notebooks needs the runs that `{again}` leaves in {folder}; "
              f"not complete: {', '.join(missing)}. Run `{again}` first.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
