"""Every sort in paperlib and the notebooks whose ties could reach a table, a figure or a choice
is stable or has a key that leaves no ties. numpy's and torch's default sorts return tied
elements in an order that depends on the SIMD kernel (AVX2 or AVX-512) or the device: a result
that rests on one differs between machines. The rule, checked on the source:

- pandas `sort_values` on several keys (a list or tuple literal) is np.lexsort, which is
  stable; on one key, and `sort_index`, need kind="stable";
- `argsort`, `np.sort` / `torch.sort` and a method `.sort(...)` with arguments need
  kind="stable" (numpy, pandas) or stable=True (torch);
- `topk`, `kthvalue`, `argpartition`, `np.partition`, `nlargest`, `nsmallest` and a bare
  `.sort()` (a list's, which is stable, or an array's, which is not) have no stable form here;
- any of these may instead carry a `# tie-safe: <why>` comment on its lines or the line above,
  for a sort that cannot meet a tie (a permutation, unique keys) or whose result does not
  depend on the order of ties.

Python's `sorted` and `list.sort(key=...)` are stable and not checked."""
import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "# tie-safe:"
NEED_STABLE = {"sort_values", "sort_index", "argsort", "sort"}
NO_STABLE_FORM = {"topk", "kthvalue", "argpartition", "nlargest", "nsmallest"}
ARRAY_MODULES = {"np", "numpy", "torch"}


def is_stable(call: ast.Call) -> bool:
    for kw in call.keywords:
        value = kw.value.value if isinstance(kw.value, ast.Constant) else None
        if (kw.arg, value) in (("kind", "stable"), ("kind", "mergesort"), ("stable", True)):
            return True
    return False


def several_keys(call: ast.Call) -> bool:
    by = call.args[0] if call.args else next((kw.value for kw in call.keywords if kw.arg == "by"), None)
    return isinstance(by, (ast.List, ast.Tuple)) and len(by.elts) >= 2


def unsettled(call: ast.Call) -> str | None:
    """What is wrong with a call's sort, or None when it is stable or no sort."""
    f = call.func
    if not isinstance(f, ast.Attribute):
        return None
    name, on_module = f.attr, isinstance(f.value, ast.Name) and f.value.id in ARRAY_MODULES
    if name in NO_STABLE_FORM or (name == "partition" and on_module):
        return f"{name} has no stable form"
    if name == "sort" and not on_module:
        if not call.args and not call.keywords:
            return "a bare .sort() may be an array's, which is not stable"
        if not call.args and {kw.arg for kw in call.keywords} <= {"key", "reverse"}:
            return None  # list.sort: Python's sort is stable
    if name not in NEED_STABLE or is_stable(call):
        return None
    if name == "sort_values" and several_keys(call):
        return None
    return f"{name} without a stable kind"


def findings(source: str, where: str) -> list[str]:
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and (why := unsettled(node)):
            near = lines[max(node.lineno - 2, 0):node.end_lineno]
            if not any(MARK in line for line in near):
                out.append(f"{where}:{node.lineno}: {why}: {lines[node.lineno - 1].strip()}")
    return out


def notebook_code(path: Path) -> str:
    """The notebook's code cells as one module; IPython magics and shell lines (%, !) become
    blank lines, which keeps the line numbers."""
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in code.splitlines())


def test_every_sort_in_the_package_and_the_notebooks_settles_its_ties():
    found = []
    for path in sorted((ROOT / "paperlib").rglob("*.py")):
        found += findings(path.read_text(), str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        found += findings(notebook_code(path), str(path.relative_to(ROOT)))
    assert not found, "sorts whose ties are left to the CPU:\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    'df.sort_values("step")', "df.sort_values(by=['step'])", "s.sort_values()", "df.sort_index()",
    "np.argsort(x)", "x.argsort(axis=1)", "torch.argsort(x, descending=True)", "np.sort(x)",
    "torch.sort(x, dim=0)", "t.sort(dim=-1)", "a.sort()", "torch.topk(x, 3)", "x.topk(3)",
    "np.argpartition(x, 3)", "np.partition(x, 3)", "df.nlargest(3, 'v')", "x.kthvalue(2)",
    'df.sort_values("step", kind="quicksort")', "torch.argsort(x, stable=False)",
])
def test_an_unstable_sort_is_found(line):
    assert findings(line, "x.py")


@pytest.mark.parametrize("line", [
    'df.sort_values("step", kind="stable")', 'df.sort_values(["step", "seed"])',
    'df.sort_values(by=("a", "b"), ascending=[True, False])', "np.argsort(x, kind='stable')",
    "np.sort(x, kind='mergesort')", "torch.argsort(x, descending=True, stable=True)",
    "torch.sort(x, stable=True)", "rows.sort(key=len)", "rows.sort(key=len, reverse=True)",
    "sorted(xs)", "name.partition('.')", "key.rpartition('=')",
    "np.argsort(perm)  # tie-safe: a permutation has no ties",
    "# tie-safe: unique steps\ndf.sort_values('step')",
])
def test_a_stable_or_marked_sort_passes(line):
    assert not findings(line, "x.py")
