"""The shape of the package: the method apart from the tooling, public seams between modules,
no code among the results, and a README a newcomer can read in minutes."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"core", "data", "training", "evaluation", "study", "app", "tools"}
TOP_MODULES = {"__init__", "__main__", "config", "paths", "processes", "notebook"}


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


# The layers, bottom to top: a module imports from its own layer or those below it, never from
# one above, at module level or inside a function. The top-level modules config, paths and
# processes are the bottom; app and tools share a layer; notebook sits under __main__.
LAYERS = {"__init__": 0, "config": 0, "paths": 0, "processes": 0, "core": 1, "data": 2, "training": 3,
          "evaluation": 4, "study": 5, "app": 6, "tools": 6, "notebook": 7, "__main__": 8}


def imported_modules(path: Path, package: list[str]):
    """(line, dotted paperlib module) for every import of ours in `path`, at any depth; `package`
    is the file's package as a list (["paperlib", "study"])."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "paperlib":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "paperlib":
                module = node.module
            else:
                continue
            if module == "paperlib":  # `from paperlib import x`: each name is a module
                for alias in node.names:
                    yield node.lineno, f"paperlib.{alias.name}"
            else:
                yield node.lineno, module


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(root: Path) -> list[str]:
    """file:line and the import, for each import in the package at `root` (a folder named
    paperlib) of a module in a layer above the importing one."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("").parts  # ("paperlib", "study", "x")
        package = list(rel[:-1])  # an __init__.py's package is its own folder
        here = layer_of(".".join(rel))
        for line, module in imported_modules(path, package):
            there = layer_of(module)
            if LAYERS.get(there, -1) > LAYERS[here]:
                found.append(f"{path.relative_to(root.parent)}:{line} ({here}) imports {module} ({there})")
    return found


def test_every_module_is_in_a_layer():
    pkg = ROOT / "paperlib"
    assert {layer_of(".".join(p.relative_to(ROOT).with_suffix("").parts))
            for p in pkg.rglob("*.py")} <= set(LAYERS)


def test_imports_point_down_the_layers():
    assert upward_imports(ROOT / "paperlib") == []


def test_the_layer_check_sees_an_upward_import(tmp_path):
    pkg = tmp_path / "paperlib"
    (pkg / "training").mkdir(parents=True)
    (pkg / "study").mkdir()
    (pkg / "study" / "figures.py").write_text("from ..training import loop\n")  # downward: fine
    (pkg / "config.py").write_text("import json\n\n\ndef f():\n    from .data import faces\n")
    (pkg / "training" / "loop.py").write_text(
        "from ..core import model\nfrom paperlib.study import figures\n\n\n"
        "def save():\n    from ..evaluation.fid import stats\n    import paperlib.app.demo\n")
    assert upward_imports(pkg) == [
        "paperlib/config.py:5 (config) imports paperlib.data (data)",
        "paperlib/training/loop.py:2 (training) imports paperlib.study (study)",
        "paperlib/training/loop.py:6 (training) imports paperlib.evaluation.fid (evaluation)",
        "paperlib/training/loop.py:7 (training) imports paperlib.app.demo (app)",
    ]


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
