"""Where runs and results live, and the headless papermill runner behind `make reproduce`.

Notebooks run in name order (01_..., 02_..., ...). Each is executed into `.executed/` and copied
over the committed notebook only when it finished, so an interrupted run never leaves a
half-written notebook; rerunning resumes, because every notebook skips training runs that are
complete and continues those that are not.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..paths import atomic_write, repo_root


def runs_dir(profile: str) -> Path:
    return repo_root() / "runs" / profile


def results_dir(profile: str) -> Path:
    """mini writes the committed results/; paper writes results/paper; smoke never touches results/."""
    root = repo_root()
    if profile == "mini":
        d = root / "results"
    elif profile == "smoke":
        d = root / "runs" / "smoke" / "results"
    else:
        d = root / "results" / profile
    d.mkdir(parents=True, exist_ok=True)
    return d


def notebooks(only: str | None = None) -> list[Path]:
    found = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if only is None or only in p.name]


def relativise(text: str, root: Path) -> str:
    """Strip this machine's checkout path from a notebook (papermill's metadata, warnings):
    committed notebooks name paths relative to the repository root."""
    return text.replace(str(root) + "/", "")


TIMES_HEADER = ("notebook", "profile", "minutes")


def update_times(text: str, notebook: str, profile: str, minutes: float) -> str:
    """reproduce_times.tsv with `notebook`'s row replaced by this run's time: one row per
    notebook for its last run (rows of other notebooks kept, so `--only 04` updates row 04
    alone), sorted by notebook name, under a header. Older files appended a row per run and had
    no header: their last row per notebook is kept."""
    rows: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        fields = tuple(line.split("\t"))
        if len(fields) == len(TIMES_HEADER) and fields != TIMES_HEADER:
            rows[fields[0]] = fields
    rows[notebook] = (notebook, profile, f"{minutes:.2f}")
    return "".join("\t".join(r) + "\n" for r in [TIMES_HEADER] + sorted(rows.values()))


def run_notebooks(profile: str | None = None, only: str | None = None) -> None:
    """Execute the notebooks headless in order with papermill, in the profile given."""
    profile = profile or os.environ.get("PAPERLIB_PROFILE", "mini")
    env = {**os.environ, "PAPERLIB_PROFILE": profile}
    out_dir = repo_root() / ".executed"
    out_dir.mkdir(exist_ok=True)
    books = notebooks(only)
    if not books:
        raise FileNotFoundError(f"no notebooks matching {only!r} in {repo_root() / 'notebooks'}")
    log = results_dir(profile) / "reproduce_times.tsv"
    for nb in books:
        print(f"== {nb.name} (profile {profile})", flush=True)
        t0 = time.time()
        out = out_dir / nb.name
        # The profile travels through the environment, not `-p`: an injected parameter cell
        # would pin the profile inside the committed notebook and defeat the smoke checks.
        cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "--cwd", str(nb.parent),
               "--kernel", "python3", "--log-output", "--no-progress-bar"]
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{nb.name} failed (papermill exit {proc.returncode}); the executed "
                               f"copy with the error is {out}")
        if profile == "mini":
            nb.write_text(relativise(out.read_text(), repo_root()))
        minutes = (time.time() - t0) / 60
        text = update_times(log.read_text() if log.exists() else "", nb.name, profile, minutes)
        atomic_write(log, lambda f: f.write(text.encode()))
        print(f"   done in {minutes:.1f} min", flush=True)
