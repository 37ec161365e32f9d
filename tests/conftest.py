import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("TQDM_DISABLE", "1")
# Two threads, or one per xdist worker (`make test` runs two): a second OpenMP thread waiting for
# a core the other worker holds makes each small step many times slower.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // _WORKERS))


def pytest_collection_modifyitems(config, items):
    """The slow tests first (a stable sort keeps the rest in order): `make test`'s two xdist
    workers start on them and the short tests fill in behind, instead of one slow test running
    alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def draw_shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat-coloured drawing with black outlines: a stand-in for emoji-like line art."""
    import cv2

    img = np.full((size, size, 3), 255, np.uint8)
    for _ in range(3):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        centre = tuple(int(c) for c in rng.integers(size // 4, 3 * size // 4, 2))
        radius = int(rng.integers(size // 8, size // 3))
        cv2.circle(img, centre, radius, colour, -1)
        cv2.circle(img, centre, radius, (0, 0, 0), max(1, size // 32))
    return img


def alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (killed, not yet reaped by its dead parent's
    reaper) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_with_env(entry: str) -> list[int]:
    """PIDs of the processes whose environment holds `entry` ("NAME=value"): a process tree
    started with a marker in its environment, children and grandchildren included."""
    found, needle = [], b"\0" + entry.encode() + b"\0"
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in b"\0" + (d / "environ").read_bytes() + b"\0":
                    found.append(int(d.name))
            except OSError:  # gone meanwhile, or not ours to read
                pass
    return found


@pytest.fixture
def image_folder(tmp_path):
    """A folder dataset of 24 small synthetic drawings (two sub-folders, like ImageNet classes)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for i in range(24):
        sub = root / f"class{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_shapes(rng, 48)).save(sub / f"img{i:02d}.png")
    return root


# ------------------------------------------- "What survives what" (README), from test results
# A fault test declares what it puts the code through with
#   request.node.user_properties.append(("survives", (row, n)))
# before it starts; the row counts n as survived only if the test then passes. Bad-input
# classes are declared as ("bad_input_class", name): a class is handled when all its cases pass.
_SURVIVES: dict = {}
_CLASSES: dict = {}


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.failed):
        return
    for key, value in report.user_properties:
        if key == "survives":
            row, n = value
            done, tried = _SURVIVES.get(row, (0, 0))
            _SURVIVES[row] = (done + (n if report.passed else 0), tried + n)
        elif key == "bad_input_class":
            ok, cases = _CLASSES.get(value, (True, 0))
            _CLASSES[value] = (ok and report.passed, cases + 1)


def pytest_terminal_summary(terminalreporter):
    if not _SURVIVES and not _CLASSES:
        return
    lines = ["| fault | survived or handled |", "|---|---|"]
    lines += [f"| {row} | {done}/{tried} |" for row, (done, tried) in _SURVIVES.items()]
    if _CLASSES:
        handled = sum(ok for ok, _ in _CLASSES.values())
        cases = sum(n for _, n in _CLASSES.values())
        lines.append(f"| bad-input classes for train, evaluate, colorize ({cases} cases) | "
                     f"{handled}/{len(_CLASSES)} |")
        failed = [c for c, (ok, _) in _CLASSES.items() if not ok]
        if failed:
            lines.append(f"(not handled: {', '.join(failed)})")
    terminalreporter.write_sep("=", "what survives what")
    for line in lines:
        terminalreporter.write_line(line)


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """A throwaway repository root (cwd), so the spawned workers write their runs there too;
    the data cache stays the real one (PAPERLIB_CACHE)."""
    from paperlib.paths import cache_root

    monkeypatch.setenv("PAPERLIB_CACHE", str(cache_root()))
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "paperlib").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: tests that time nothing, on a shared two-core machine,
    where a second OpenMP thread waiting for a busy core makes each small step many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Stand-ins with the Generator's call signature, for the colour metrics' analytic tests.
class StandIn(torch.nn.Module):
    """The Generator call signature; records the mode it was called in."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))  # for next(G.parameters()).device
        self.modes: list[bool] = []

    def forward(self, sketch, reference=None, return_attention=False):
        self.modes.append(self.training)
        return self.colour(sketch, reference), {}


class ReferenceCopier(StandIn):
    """Outputs its reference: all colours come from the reference."""

    def colour(self, sketch, reference):
        return reference


class ConstantColour(StandIn):
    """Ignores the reference: one orange everywhere."""

    def colour(self, sketch, reference):
        b, _, h, w = sketch.shape
        return torch.tensor([0.6, -0.2, 0.1]).view(1, 3, 1, 1).expand(b, 3, h, w)
