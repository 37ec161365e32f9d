"""OpenMoji: split by base code point, rendering, line-art sketches, the cache, bad SVGs."""
import os
import warnings
from dataclasses import replace

import numpy as np
import pytest

from paperlib.data import openmoji
from paperlib.config import DataConfig

RES, LIMIT = 48, 40


@pytest.fixture(scope="session")
def om_cache(tmp_path_factory):
    """Renders the first LIMIT SVGs once into a temporary cache for the whole session."""
    old = os.environ.get("PAPERLIB_CACHE")
    os.environ["PAPERLIB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["TQDM_DISABLE"] = "1"
    data = openmoji.load_openmoji(DataConfig(resolution=RES), limit=LIMIT)
    yield data
    if old is None:
        os.environ.pop("PAPERLIB_CACHE", None)
    else:
        os.environ["PAPERLIB_CACHE"] = old


def test_base_code():
    assert openmoji.base_code("1F44B-1F3FB") == "1F44B"
    assert openmoji.base_code("1F44B") == "1F44B"
    assert openmoji.base_code("E0AC-200D-2640-FE0F") == "E0AC"  # OpenMoji extra (private use)
    assert openmoji.base_code("1F1E9-1F1EA") == "1F1E9-1F1EA"  # a flag is its own group
    assert openmoji.base_code("1F1E9-1F1EA") != openmoji.base_code("1F1E9-1F1F0")


def test_split_never_straddles_a_base_and_is_deterministic():
    cfg = DataConfig()
    codes = openmoji.list_codes()
    assert len(codes) > 4000
    sides = {}
    for c in codes:
        sides.setdefault(openmoji.base_code(c), set()).add(openmoji.is_test(c, cfg))
    assert all(len(s) == 1 for s in sides.values())
    counts = openmoji.openmoji_counts(cfg)
    assert counts["train"] + counts["test"] == counts["total"] == len(codes)
    assert counts["base_groups"] == len(sides)
    assert 0.05 < counts["test"] / counts["total"] < 0.15
    assert openmoji.openmoji_counts(cfg) == counts
    assert openmoji.openmoji_counts(replace(cfg, split_seed=1))["test"] != counts["test"]
    tr = set(openmoji.split_indices(codes, cfg, "train"))
    te = set(openmoji.split_indices(codes, cfg, "test"))
    assert not tr & te and len(tr | te) == len(codes)


def test_line_only_svg_removes_colour():
    text = (openmoji.svg_dir() / "1F600.svg").read_text()
    line = openmoji.line_only_svg(text)
    assert 'id="line"' in line and 'id="color"' not in line and "#FCEA2B" not in line
    rgb = openmoji.render_svg(line, RES)
    assert (rgb.max(axis=2) - rgb.min(axis=2)).max() < 10  # black on white only


def test_renders_and_line_sketch(om_cache):
    d = om_cache
    assert d.images.shape == (LIMIT, RES, RES, 3) and d.images.dtype == np.uint8
    assert d.inks.shape == (LIMIT, RES, RES) and d.inks.dtype == np.bool_
    assert len(d.codes) == LIMIT and d.skipped == []
    assert 0.02 < d.inks.mean() < 0.4
    gray = d.images.mean(axis=3)
    assert gray[d.inks].mean() < 100  # line art is drawn on top of the colour: ink is dark there
    assert gray[~d.inks].mean() > 180  # and most of the rest is white paper / light fills
    assert (d.images[:, 0, 0] == 255).all()  # white background


def test_cache_is_reused(om_cache, monkeypatch):
    path = openmoji.cache_path(RES, LIMIT)
    assert path.is_file() and f"{RES}px-resvg" in str(path) and path.parent.name.endswith("-line")
    monkeypatch.setattr(openmoji, "render_all", lambda *a, **k: pytest.fail("re-rendered"))
    again = openmoji.load_openmoji(DataConfig(resolution=RES), limit=LIMIT)
    assert np.array_equal(again.images, om_cache.images) and again.codes == om_cache.codes


def test_xdog_sketch_source(om_cache):
    xd = openmoji.sketch_masks(om_cache, DataConfig(resolution=RES, sketch_source="xdog"))
    assert xd.shape == om_cache.inks.shape and xd.dtype == np.bool_
    assert not np.array_equal(xd, om_cache.inks) and xd.any()
    with pytest.raises(ValueError, match="sketch_source"):
        openmoji.sketch_masks(om_cache, DataConfig(sketch_source="hed"))


def test_bad_svg_raises_or_is_skipped(tmp_path):
    good = str(openmoji.svg_dir() / "1F600.svg")
    bad = tmp_path / "BAD.svg"
    bad.write_text("<svg this is not xml")
    with pytest.raises(ValueError, match="BAD.svg"):
        openmoji.render_all(32, paths=[good, str(bad)])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        d = openmoji.render_all(32, paths=[good, str(bad)], skip_bad=True)
    assert d.skipped == ["BAD"] and d.codes == ["1F600"]
    assert any("skipped 1" in str(x.message) for x in w)


def _load_after(barrier, cache: str, out: str) -> None:
    """A process that needs the OpenMoji cache at the same moment as another (forked, so the
    slowed render_all below is this process's too)."""
    os.environ["PAPERLIB_CACHE"] = cache
    barrier.wait()
    data = openmoji.load_openmoji(DataConfig(resolution=24), limit=20)
    np.save(out, data.images)


def test_two_processes_on_a_cold_cache_render_once(tmp_path, monkeypatch):
    import multiprocessing
    import time

    renders = tmp_path / "renders.txt"
    real = openmoji.render_all

    def slow_render(*args, **kwargs):
        with open(renders, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # both processes reach the cache before either has written it
        return real(*args, processes=1, **{k: v for k, v in kwargs.items() if k != "processes"})

    monkeypatch.setattr(openmoji, "render_all", slow_render)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_load_after, args=(barrier, str(tmp_path / "cache"),
                                                    str(tmp_path / f"out{i}.npy")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(renders.read_text().split()) == 1
    a, b = (np.load(tmp_path / f"out{i}.npy") for i in range(2))
    assert a.shape == (20, 24, 24, 3) and np.array_equal(a, b)
