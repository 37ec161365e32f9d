from pathlib import Path

import pytest

from paperlib.study.reproduce import update_times

HEADER = "notebook\tprofile\tminutes\testimated_minutes\tcpu\tprecision\tattempts\n"


def test_update_times_keeps_one_sorted_row_per_notebook():
    text = update_times("", "02_b.ipynb", "mini", 3.14159, 2.5, "AMD EPYC", "fp32")
    assert text == HEADER + "02_b.ipynb\tmini\t3.14\t2.50\tAMD EPYC\tfp32\t1\n"
    text = update_times(text, "01_a.ipynb", "mini", 1)
    text = update_times(text, "02_b.ipynb", "smoke", 0.5, 0.4, "Intel Xeon", "bf16", 3)  # a rerun replaces its row
    assert text == HEADER + ("01_a.ipynb\tmini\t1.00\t-\t-\t-\t1\n"
                             "02_b.ipynb\tsmoke\t0.50\t0.40\tIntel Xeon\tbf16\t3\n")


def test_update_times_reads_the_old_appended_log():
    old = "01_a.ipynb\tmini\t0.13\n04_d.ipynb\tmini\t18.60\n04_d.ipynb\tmini\t20.00\n\n"
    text = update_times(old, "03_c.ipynb", "mini", 2)
    assert text.splitlines() == [HEADER.strip(), "01_a.ipynb\tmini\t0.13\t-\t-\t-\t-",
                                 "03_c.ipynb\tmini\t2.00\t-\t-\t-\t1", "04_d.ipynb\tmini\t20.00\t-\t-\t-\t-"]


def test_update_times_reads_the_three_column_file():
    old = "notebook\tprofile\tminutes\n01_a.ipynb\tmini\t0.29\n"
    text = update_times(old, "02_b.ipynb", "mini", 5, 4, "AMD EPYC", "bf16")
    assert text.splitlines()[1:] == ["01_a.ipynb\tmini\t0.29\t-\t-\t-\t-",
                                     "02_b.ipynb\tmini\t5.00\t4.00\tAMD EPYC\tbf16\t1"]


def test_a_notebook_clock_counts_every_attempt_and_survives_a_kill(tmp_path):
    """The clock file is written while an attempt runs (so a SIGKILLed attempt leaves its time
    behind), the next attempt goes on from it, and a finished notebook drops it."""
    import time

    from paperlib.study.reproduce import Clock, read_clock, write_clock

    path = tmp_path / "clock" / "03_x.json"
    assert read_clock(path) == (0.0, 0, False)
    with Clock(path, every=0.02) as clock:
        assert clock.attempt == 1
        time.sleep(0.3)
        # written by the beat while running: what a kill at this moment would leave
        running, attempts, finished = read_clock(path)
        assert attempts == 1 and running > 0 and not finished
    # an attempt that was killed 5 minutes in
    write_clock(path, 5.0, 1)
    with Clock(path, every=60) as clock:
        assert (clock.attempt, clock.before) == (2, 5.0)
    minutes, attempts, finished = read_clock(path)
    assert attempts == 2 and 5.0 <= minutes < 5.1 and not finished
    clock.done()
    assert read_clock(path)[1:] == (2, True)
    # run again on purpose after it finished: timed afresh
    with Clock(path, every=60) as clock:
        assert (clock.attempt, clock.before) == (1, 0.0)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a notebook clock"):
        read_clock(path)


def test_a_resumed_notebook_records_the_time_of_all_its_attempts(monkeypatch, tmp_path):
    """execute() with a notebook whose earlier attempt was killed 7 minutes in: the row of
    reproduce_times.tsv holds the 7 minutes plus this attempt's, and 2 attempts."""
    import subprocess

    from paperlib.study import reproduce

    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    book = tmp_path / "notebooks" / "03_x.ipynb"
    book.parent.mkdir()
    book.write_text("{}")
    calls = []

    def papermill(cmd, env):
        calls.append(cmd)
        Path(cmd[4]).write_text("{}")  # the executed copy
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(reproduce.subprocess, "run", papermill)
    clock = reproduce.clock_path("smoke", "openmoji", book.name)
    reproduce.write_clock(clock, 7.0, 1)
    times = reproduce.results_dir("smoke", "openmoji") / "reproduce_times.tsv"
    reproduce.execute("smoke", "openmoji", [book])
    row = times.read_text().splitlines()[1]
    fields = row.split("\t")
    assert fields[0] == "03_x.ipynb" and 7.0 <= float(fields[2]) < 7.5 and fields[6] == "2", row
    assert reproduce.read_clock(clock)[1:] == (2, True) and len(calls) == 1
    # the same reproduction rerun (after a stop in a later notebook): skipped, its row kept
    reproduce.execute("smoke", "openmoji", [book])
    assert len(calls) == 1 and times.read_text().splitlines()[1] == row
    # the reproduction over (run_notebooks drops the clocks), a new run is timed afresh
    reproduce.drop_clocks("smoke", "openmoji", [book])
    reproduce.execute("smoke", "openmoji", [book])
    row = times.read_text().splitlines()[1]
    assert len(calls) == 2 and float(row.split("\t")[2]) < 1 and row.split("\t")[6] == "1", row


def test_the_plan_is_printed_first_and_its_estimate_kept_beside_the_time(monkeypatch, tmp_path, capsys):
    """execute() with a planner: the plan's summary comes before the first notebook, and each
    notebook's row holds the plan's minutes for it, its CPU and its precision."""
    import subprocess
    from types import SimpleNamespace

    from paperlib.study import reproduce

    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    (tmp_path / "notebooks").mkdir()
    books = [tmp_path / "notebooks" / f"0{i}_x.ipynb" for i in (3, 4)]
    for b in books:
        b.write_text("{}")
    asked = []

    def planner(profile, dataset, names):
        asked.append((profile, dataset, names))
        return SimpleNamespace(summary=lambda: "Estimated time: 5 min", minutes={"03": 2.5},
                               cpu="AMD EPYC", precision_name="fp32")

    def papermill(cmd, env):
        Path(cmd[4]).write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(reproduce.subprocess, "run", papermill)
    reproduce.execute("smoke", "openmoji", books, planner)
    assert asked == [("smoke", "openmoji", ["03_x.ipynb", "04_x.ipynb"])]
    out = capsys.readouterr().out
    assert out.index("Estimated time: 5 min") < out.index("== 03_x.ipynb")
    rows = (reproduce.results_dir("smoke", "openmoji") / "reproduce_times.tsv").read_text().splitlines()
    assert [r.split("\t")[3:6] for r in rows[1:]] == [["2.50", "AMD EPYC", "fp32"],
                                                      ["-", "AMD EPYC", "fp32"]]


def test_a_reproduction_that_finishes_drops_its_clocks_and_a_rerun_skips_what_it_finished(monkeypatch, tmp_path):
    """make reproduce stopped in its second notebook and rerun: the first is skipped (its time
    kept), the second goes on; once all have finished, the clocks go, and the next make
    reproduce runs everything again."""
    import subprocess

    from paperlib.study import reproduce

    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    (tmp_path / "notebooks").mkdir()
    books = [tmp_path / "notebooks" / f"0{i}_x.ipynb" for i in (1, 2)]
    for b in books:
        b.write_text("{}")
    ran, fail = [], {"02_x.ipynb"}

    def papermill(cmd, env):
        name = Path(cmd[3]).name
        ran.append(name[:2])
        Path(cmd[4]).write_text("{}")
        return subprocess.CompletedProcess(cmd, 1 if name in fail else 0)

    monkeypatch.setattr(reproduce.subprocess, "run", papermill)
    with pytest.raises(RuntimeError, match="02_x.ipynb failed"):
        reproduce.run_notebooks("smoke", dataset="openmoji")
    fail.clear()
    reproduce.run_notebooks("smoke", dataset="openmoji")
    assert ran == ["01", "02", "02"]
    rows = (reproduce.results_dir("smoke", "openmoji") / "reproduce_times.tsv").read_text().splitlines()
    assert [r.split("\t")[6] for r in rows[1:]] == ["1", "2"]
    assert not list((reproduce.runs_dir("smoke", "openmoji") / "reproduce-clock").glob("*.json"))
    reproduce.run_notebooks("smoke", dataset="openmoji")
    assert ran == ["01", "02", "02", "01", "02"]
    # the same with a list of notebooks: resumed from where it stopped
    fail.add("02_x.ipynb")
    with pytest.raises(RuntimeError):
        reproduce.run_notebooks("smoke", only="01,02", dataset="openmoji")
    fail.clear()
    reproduce.run_notebooks("smoke", only="01,02", dataset="openmoji")
    assert ran[5:] == ["01", "02", "02"]


def test_only_takes_a_list_of_notebooks_and_names_a_part_that_matches_none():
    from paperlib.study.reproduce import notebooks

    names = [p.name[:2] for p in notebooks("03,04,06")]
    assert names == ["03", "04", "06"]
    assert [p.name[:2] for p in notebooks("06, 03")] == ["03", "06"]  # in the notebooks' order
    assert [p.name[:2] for p in notebooks("04")] == ["04"]
    with pytest.raises(FileNotFoundError, match="'99'"):
        notebooks("03,99")
