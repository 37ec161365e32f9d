import ast
import json
from pathlib import Path

import pytest

from paperlib.study.reproduce import notebooks

ORDER = ["01_data_prep", "02_training", "03_aggregation_ablation", "04_loss_ablation",
         "05_attention_visualization", "06_no_reference", "07_fid_tables", "08_try_it"]
CROSS = ["09_generalisation"]  # runs after both datasets (reproduce.CROSS_DATASET)
NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebooks_run_in_the_documented_order():
    assert [p.stem for p in notebooks()] == ORDER
    assert [p.stem for p in notebooks(cross=True)] == CROSS
    readme = (NB_DIR.parent / "README.md").read_text()
    positions = [readme.find(name) for name in ORDER + CROSS]
    assert all(p >= 0 for p in positions), "README must list every notebook"
    assert positions == sorted(positions), "README lists the notebooks out of order"


@pytest.mark.parametrize("name", ORDER + CROSS)
def test_one_parameters_cell_of_literals(name):
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    injected = [c for c in nb["cells"]
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert not injected, "a committed notebook must not pin parameters"
    tree = ast.parse("".join(tagged[0]["source"]))
    names = []
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign), ast.dump(stmt)
        ast.literal_eval(stmt.value)  # raises if not a literal
        names += [t.id for t in stmt.targets]
    assert "profile" in names


@pytest.mark.parametrize("name", ORDER + CROSS)
def test_notebooks_hold_no_long_logic(name):
    """Logic belongs in paperlib: no function or class definitions in a notebook."""
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            tree = ast.parse("".join(cell["source"]))
            assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


@pytest.mark.slow
def test_executed_copies_are_not_collected_again():
    """papermill writes executed notebooks to .executed/ (and the faces reproduction keeps
    copies in results/faces/notebooks/); pytest run from the repository root collects the
    notebooks in notebooks/ and none of those copies."""
    import shutil
    import subprocess
    import sys

    root = NB_DIR.parent
    probe = root / ".executed" / "99_probe.ipynb"
    probe.parent.mkdir(exist_ok=True)
    shutil.copyfile(NB_DIR / f"{ORDER[0]}.ipynb", probe)
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval-lax",
                              "-p", "no:cacheprovider", ".", "--ignore=tests", "--ignore=.venv",
                              "--ignore=runs"], cwd=root, capture_output=True, text=True,
                             timeout=120).stdout
    finally:
        probe.unlink()
    assert f"notebooks/{ORDER[0]}.ipynb::Cell 0" in out, out[-2000:]
    assert "99_probe" not in out and "results/" not in out, out[-2000:]


def test_committed_notebooks_hold_no_machine_paths():
    from paperlib.study.reproduce import relativise

    assert relativise('"input_path": "/home/u/repo/notebooks/a.ipynb"', Path("/home/u/repo")) == \
        '"input_path": "notebooks/a.ipynb"'
    for name in ORDER + CROSS:
        text = (NB_DIR / f"{name}.ipynb").read_text()
        assert str(NB_DIR.parent) + "/" not in text
        assert '"/home/' not in text and '"/root/' not in text
