"""Training and evaluation import only what they use: the packages that only rendering
(resvg_py), FID (pytorch_fid, torchvision), the notebook widget (ipywidgets, ipyevents) and
screenshots (playwright) need are imported inside the functions that use them, so a machine
without them can still train and measure (as `python -m paperlib long-run` does)."""
import json
import subprocess
import sys

import pytest

OPTIONAL = ("resvg_py", "pytorch_fid", "torchvision", "ipywidgets", "ipyevents", "playwright")


def loaded_after(code: str) -> list[str]:
    """The OPTIONAL packages in sys.modules after running `code` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {OPTIONAL!r} if m in sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", ["paperlib.training.loop", "paperlib.evaluation.evaluate",
                                    "paperlib.evaluation.dynamics", "paperlib.study.long_run"])
def test_importing_loads_no_optional_package(module):
    assert loaded_after(f"import {module}") == []


def test_computing_a_frechet_distance_loads_pytorch_fid():
    """The check above sees a package that is imported: FID's own function loads it."""
    code = ("import numpy as np\nfrom paperlib.evaluation import fid\n"
            "fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))")
    assert "pytorch_fid" in loaded_after(code)
