"""Reading a run's training log, `stats.jsonl`: one JSON object per log step (every loss term,
learning rates, images/s), appended by `paperlib.training.loop`."""
from __future__ import annotations

import json
from pathlib import Path

STATS = "stats.jsonl"


def read_stats(run_dir) -> list[dict]:
    """The log lines of a run's stats.jsonl as dicts, in order; [] before the first line.

    A last line without its newline may still be being written (a live run, read by a
    progress bar) or have been cut by a kill (dropped when the run resumes): it is kept only if
    it is a whole JSON object. Any other line that is not a JSON object is a ValueError naming
    the file and the line number: a damaged log must not quietly become a shorter curve."""
    path = Path(run_dir) / STATS
    if not path.exists():
        return []
    *lines, tail = path.read_text().split("\n")  # tail: "" unless the last line is unfinished
    rows = [_parse(path, number, line) for number, line in enumerate(lines, start=1)
            if line.strip()]
    if tail.strip():
        try:
            rows.append(_parse(path, len(lines) + 1, tail))
        except ValueError:
            pass
    return rows


def _parse(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except ValueError as e:
        raise ValueError(f"{path}: line {number} is not valid JSON ({e.msg}): {line[:80]!r}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}: line {number} is not a JSON object: {line[:80]!r}")
    return row
