"""The shape of the package: the method apart from the tooling, public seams between modules,
no code among the results, and a README a newcomer can read in minutes."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"core", "data", "training", "evaluation", "study", "app", "tools"}
TOP_MODULES = {"__init__", "__main__", "config", "paths", "notebook"}


def test_the_package_is_its_subpackages_and_a_handful_of_modules():
    pkg = ROOT / "paperlib"
    assert {p.stem for p in pkg.glob("*.py")} == TOP_MODULES
    assert {p.name for p in pkg.iterdir() if p.is_dir() and p.name != "__pycache__"} == SUBPACKAGES
    for sub in SUBPACKAGES:
        assert (pkg / sub / "__init__.py").is_file(), sub


def private_crossings(path: Path) -> list[str]:
    """Leading-underscore names that `path` imports from, or reads off, a paperlib module."""
    tree = ast.parse(path.read_text())
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            ours = node.level > 0 or (node.module or "").startswith("paperlib")
            for alias in node.names:
                if ours and alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
                if ours:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("paperlib"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} reads {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module_border():
    files = list((ROOT / "paperlib").rglob("*.py")) + list((ROOT / "tests").rglob("*.py"))
    crossings = [c for f in files for c in private_crossings(f)]
    assert crossings == []


def test_the_check_sees_a_private_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from paperlib.evaluation import fid\nfrom .x import _hidden\nfid._thing()\n")
    assert len(private_crossings(probe)) == 2


def test_nothing_under_results_is_code():
    """results/ holds outputs only. The one kind of notebook there is a record, not code: the
    executed copy `make reproduce DATASET=<d>` keeps of each committed notebook, with its
    outputs, in results/<d>/notebooks/ (reproduce.executed_notebook); it must be a copy of a
    notebook in notebooks/, never a notebook of its own."""
    from paperlib.study.reproduce import notebooks

    names = {p.name for p in notebooks() + notebooks(cross=True)}
    code = [p.relative_to(ROOT) for p in (ROOT / "results").rglob("*")
            if p.suffix in {".py", ".sh", ".ipynb"}
            and not (p.suffix == ".ipynb" and p.parent.name == "notebooks" and p.name in names
                     and p.parent.parent.parent == ROOT / "results")]
    assert code == []


def test_the_readme_is_short_and_the_details_are_in_docs():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    assert (ROOT / "docs").is_dir() and any((ROOT / "docs").glob("*.md"))
