"""The strict notebook check (`make check-notebooks`) ignores exactly the noise it should.

Each case writes a one-cell notebook whose stored outputs are made here and runs strict
`pytest --nbval` on it with the project's sanitizer and its nbcheck plugin (as pyproject loads
it); the cases that share a configuration run in one pytest. The cell prints what a
reproduction prints: a number, a commit hash, a duration, an object's address, a path
(absolute here, stored relative), a pandas Styler table (random id), and a progress bar on
stderr."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

CELL = """\
import secrets, sys, pandas as pd
print('FID 107.37 | commit ' + secrets.token_hex(4)[:7] + ' | took %.1f s' % (secrets.randbelow(900) / 10))
print(object())
print(repr(__import__('pathlib').Path.cwd() / 'runs' / 'mini'))
if {bar}:
    sys.stderr.write('reference use: 100%|##########| 8/8 [00:28<00:00,  3.51it/s]\\n')
pd.DataFrame({{'fid': [107.37]}}).style.set_properties(**{{'text-align': 'left'}})
"""


def stored_outputs(fid: str) -> list:
    """What a reproduction on another day stored: other hash, time, address and Styler id, a
    progress bar on stderr; the FID as given."""
    html = pd.DataFrame({"fid": [107.37]}).style.set_properties(**{"text-align": "left"})._repr_html_()
    uuid = re.search(r"T_([0-9a-f]{5})", html).group(1)
    return [
        nbformat.v4.new_output("stream", name="stdout",
                               text=f"FID {fid} | commit 39a9c92 | took 61.2 s\n"
                                    "<object object at 0x7f39bf6f3990>\n"
                                    # make reproduce stores paths relative to the repository
                                    "PosixPath('runs/mini')\n"),
        nbformat.v4.new_output("stream", name="stderr",
                               text="\rreference use:   0%|          | 0/8 [00:00<?, ?it/s]"
                                    "\rreference use: 100%|##########| 8/8 [00:31<00:00,  3.86s/it]\n"),
        nbformat.v4.new_output("execute_result", execution_count=1, data={
            "text/html": html.replace(uuid, "1ca03"),
            "text/plain": "<pandas.io.formats.style.Styler at 0x7f0011223344>"}),
    ]


def write_case(folder: Path, name: str, fid: str, bar: bool = True) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(CELL.format(bar=bar), execution_count=1)
    cell.outputs = stored_outputs(fid)
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{name}.ipynb")


def strict_check(tmp_path: Path, cases: dict[str, tuple[str, bool]],
                 sanitizer: Path = ROOT / "tests" / "nbval_sanitize.cfg",
                 plugin: str = "paperlib.tools.nbcheck") -> tuple[subprocess.CompletedProcess, dict]:
    """Strict nbval over one notebook per case (name -> (stored FID, bar)), in one pytest: the
    run, and each case's outcome ("PASSED" or "FAILED")."""
    for name, (fid, bar) in cases.items():
        write_case(tmp_path, name, fid, bar)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # a copy beside the notebook: a path into the repository would make pytest take the
    # repository's own configuration (and its plugins) instead of this folder's
    (tmp_path / "sanitize.cfg").write_text(Path(sanitizer).read_text())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", plugin,
         "--nbval", "--nbval-sanitize-with", "sanitize.cfg", *(f"{n}.ipynb" for n in cases)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    outcomes = {n: o for o, n in re.findall(r"^(PASSED|FAILED) (\w+)\.ipynb::", done.stdout, re.M)}
    return done, outcomes


@pytest.fixture(scope="module")
def with_the_project_checks(tmp_path_factory):
    """The three cases that use the project's sanitizer and plugin, checked in one pytest."""
    return strict_check(tmp_path_factory.mktemp("nbcheck"), {
        "noise_with_bar": ("107.37", True), "noise_without_bar": ("107.37", False),
        "changed_number": ("107.38", True)})


@pytest.mark.parametrize("case", ["noise_with_bar", "noise_without_bar"])
def test_noise_alone_is_no_difference(with_the_project_checks, case):
    """With and without a progress bar on the re-executed side: a stderr that differs and one
    that is missing are both no difference."""
    done, outcomes = with_the_project_checks
    assert outcomes.get(case) == "PASSED", done.stdout + done.stderr


def test_a_changed_number_is_found(with_the_project_checks):
    done, outcomes = with_the_project_checks
    assert outcomes.get("changed_number") == "FAILED", done.stdout + done.stderr
    assert "107.38" in done.stdout


def test_without_the_sanitizer_the_noise_is_a_difference(tmp_path):
    """The noise is real: the same pair fails when nbval compares it raw."""
    (tmp_path / "empty.cfg").write_text("")
    done, outcomes = strict_check(tmp_path, {"raw": ("107.37", True)}, sanitizer=tmp_path / "empty.cfg")
    assert outcomes == {"raw": "FAILED"}, done.stdout + done.stderr


def test_without_the_plugin_a_missing_stderr_is_a_difference(tmp_path):
    """The stored side has a progress bar, the re-executed one none: only the plugin makes that
    no difference (the sanitizer cannot add a stream that is missing)."""
    done, outcomes = strict_check(tmp_path, {"no_plugin": ("107.37", False)},
                                  plugin="no:nbcheck_absent")
    assert outcomes == {"no_plugin": "FAILED"} and "stderr" in done.stdout, done.stdout + done.stderr


def test_the_guard_names_the_missing_runs_of_the_dataset_checked(monkeypatch, tmp_path, capsys):
    """Before strict nbval re-executes the faces notebooks, the guard lists the faces runs that
    are not complete and says which command makes them."""
    from paperlib.study import reproduce
    from paperlib.tools import nbcheck
    from paperlib.training.snapshot import FINAL

    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    monkeypatch.setenv("PAPERLIB_DATASET", "openmoji")
    monkeypatch.setenv("PAPERLIB_BF16_UNITS", "1")  # the precision check's runs are read too
    everything = nbcheck.missing_runs("mini", "faces")
    assert len(everything) == len(nbcheck.required_runs("mini")) and "add seed 0" in everything
    for name, seed in nbcheck.required_runs("mini"):
        if (name, seed) != ("add", 1):
            (tmp_path / "runs" / "mini-faces" / f"{name}-seed{seed}").mkdir(parents=True)
            (tmp_path / "runs" / "mini-faces" / f"{name}-seed{seed}" / FINAL).write_bytes(b"")
    assert nbcheck.missing_runs("mini", "faces") == ["add seed 1"]

    assert nbcheck.main(["mini", "faces"]) == 1
    err = capsys.readouterr().err
    assert "runs/mini-faces" in err and "add seed 1" in err and "make reproduce DATASET=faces" in err
    # the OpenMoji runs are another folder: all of them missing there
    assert len(nbcheck.missing_runs("mini", "openmoji")) == len(nbcheck.required_runs("mini"))
    with pytest.raises(ValueError, match="unknown dataset 'shoes'"):
        nbcheck.missing_runs("mini", "shoes")


def test_the_strict_check_of_one_dataset_leaves_out_the_two_dataset_notebook():
    """`make check-notebooks` re-executes notebooks 01-08 of the dataset checked: notebook 09
    reads the runs of both datasets, which a one-dataset reproduction does not leave, and
    re-executing it would start training them (seen: it began training the faces runs)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for dataset, folder in (("openmoji", "notebooks"), ("faces", "results/faces/notebooks")):
        # -n prints the commands; -o treats the environment stamp as up to date
        out = subprocess.run(["make", "-s", "-n", "-o", ".venv/.installed", "VENV=.venv",
                              "check-notebooks", f"DATASET={dataset}"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        nbval = next(line for line in out.splitlines() if "--nbval " in line)
        assert "09_generalisation" not in nbval and folder in nbval, nbval
        if dataset == "openmoji":
            assert all(f"notebooks/0{i}_" in nbval for i in range(1, 9)), nbval


def test_without_bf16_units_the_guard_does_not_wait_for_the_short_precision_runs(monkeypatch, tmp_path):
    from paperlib.study import reproduce
    from paperlib.tools import nbcheck

    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    monkeypatch.setenv("PAPERLIB_BF16_UNITS", "0")
    missing = nbcheck.missing_runs("mini", "openmoji")
    assert len(missing) == len(nbcheck.required_runs("mini")) - 2
    assert not any(m.startswith("short-") for m in missing) and "add seed 0" in missing


@pytest.mark.parametrize("args,named", [(["smoke"], "'smoke'"), (["mini", "shoes"], "shoes")])
def test_a_profile_or_dataset_without_a_check_is_one_line_and_status_2(args, named, capsys):
    from paperlib.tools import nbcheck

    assert nbcheck.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and err.count("\n") == 1
