"""One reader for a run's training log (paperlib.training.stats)."""
import json

import pytest

from paperlib.training.stats import STATS, read_stats


def write(run, text):
    run.mkdir(exist_ok=True)
    (run / STATS).write_text(text)


def test_rows_come_back_in_order_and_a_run_without_a_log_has_none(tmp_path):
    assert read_stats(tmp_path / "not-started") == []
    rows = [{"step": 1, "g_rec": 0.5}, {"step": 2, "g_rec": 0.25}]
    write(tmp_path / "run", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert read_stats(tmp_path / "run") == rows


def test_a_damaged_line_is_an_error_naming_the_file_and_line(tmp_path):
    write(tmp_path / "run", '{"step": 1}\n{"step": 2, "g_r\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"stats\.jsonl: line 2 is not valid JSON") as e:
        read_stats(tmp_path / "run")
    assert str(tmp_path / "run" / STATS) in str(e.value) and "\n" not in str(e.value)
    write(tmp_path / "run", '{"step": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2 is not a JSON object"):
        read_stats(tmp_path / "run")


def test_an_unfinished_last_line_is_left_out_and_a_finished_one_kept(tmp_path):
    """The training loop appends whole lines; a reader can meet the last one half written."""
    write(tmp_path / "run", '{"step": 1}\n{"step": 2, "g_r')
    assert read_stats(tmp_path / "run") == [{"step": 1}]
    write(tmp_path / "run", '{"step": 1}\n{"step": 2}')
    assert read_stats(tmp_path / "run") == [{"step": 1}, {"step": 2}]
