"""Training and evaluation import only what they use: the packages that only rendering
(resvg_py), FID (pytorch_fid, torchvision), the notebook widget (ipywidgets, ipyevents) and
screenshots (playwright) need are imported inside the functions that use them, so a machine
without them can still train and measure (as `python -m paperlib long-run` does)."""
import json
import subprocess
import sys

import pytest

OPTIONAL = ("resvg_py", "pytorch_fid", "torchvision", "ipywidgets", "ipyevents", "playwright")


def loaded_after(code: str, packages=OPTIONAL) -> list[str]:
    """The `packages` in sys.modules after running `code` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {tuple(packages)!r} if m in sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


# Each module is imported in a fork of one fresh interpreter that has imported torch and
# nothing of ours: every module here imports torch anyway, and a fresh interpreter for each
# would spend its start on torch four times over. The interpreter's own packages after torch
# are reported too, so that torch itself loading one would be seen.
FORKED = """
import json, os, sys
import torch
packages, codes = json.loads(sys.argv[1])
loaded = lambda: sorted(m for m in packages if m in sys.modules)
found = {"import torch": loaded()}
for code in codes:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        status = 0
        try:
            exec(code, {})
            out = loaded()
        except BaseException as e:
            out, status = repr(e), 1
        os.write(w, json.dumps(out).encode())
        os._exit(status)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    found[code] = json.loads(data)
print(json.dumps(found))
"""
MODULES = ["paperlib.training.loop", "paperlib.evaluation.evaluate", "paperlib.evaluation.dynamics",
           "paperlib.study.long_run"]


@pytest.fixture(scope="module")
def loaded_by_module():
    codes = [f"import {m}" for m in MODULES] + [FRECHET]
    proc = subprocess.run([sys.executable, "-c", FORKED, json.dumps([OPTIONAL, codes])],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_torch_alone_loads_no_optional_package(loaded_by_module):
    assert loaded_by_module["import torch"] == []


@pytest.mark.parametrize("module", MODULES)
def test_importing_loads_no_optional_package(module, loaded_by_module):
    assert loaded_by_module[f"import {module}"] == []


FRECHET = ("import numpy as np\nfrom paperlib.evaluation import fid\n"
           "fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))")


def test_computing_a_frechet_distance_loads_pytorch_fid(loaded_by_module):
    """The check above sees a package that is imported: FID's own function loads it."""
    assert "pytorch_fid" in loaded_by_module[FRECHET]


def test_the_pytest_plugin_loads_without_torch():
    """Every pytest run in the repository loads paperlib.tools.nbcheck (pyproject's addopts);
    its guard imports the run registry, and with it torch, only when it is called."""
    assert loaded_after("import paperlib.tools.nbcheck", ["torch"]) == []
    assert loaded_after("from paperlib.tools import nbcheck\nnbcheck.required_runs('mini')",
                        ["torch"]) == ["torch"]


def test_reading_a_notebook_builds_no_iri_grammar():
    """papermill and nbval read notebooks with nbformat, which imports jsonschema; jsonschema
    4.25 and later import rfc3987-syntax, which builds its Lark grammars at import (3.5 s a
    process on a CPU with AVX2 only). pyproject.toml keeps jsonschema below 4.25."""
    assert loaded_after("import nbformat", ["jsonschema", "rfc3987_syntax"]) == ["jsonschema"]


def test_the_notebook_runner_loads_without_torch():
    """`reproduce --no-plan` only starts papermill: each resumed attempt is seconds sooner."""
    assert loaded_after("import paperlib.study.reproduce", ["torch"]) == []
