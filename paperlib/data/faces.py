"""The `faces` dataset: DiceBear avatar faces (pip packages `dicebear-core`, `dicebear-styles`),
rendered with resvg.

Why a second dataset: in OpenMoji a part's colour is mostly fixed by its shape (a banana is
yellow), so a model can colour well while ignoring the reference. DiceBear picks every
variant (hair cut, eyes, mouth, clothes) and every colour (hair, skin, clothes) with its own
PRNG key, `seed:hairColor`, `seed:hairVariant`, ..., so colours are drawn independently of
the shapes: the sketch cannot tell a face's colours, only the reference can.

Styles and licences (dicebear-styles 10.6.0, LICENSE.md): "adventurer" by Lisa Wischofsky,
"micah" by Micah Lanier and "big-smile" by Ashley Seo, CC BY 4.0; "open-peeps" by Pablo
Stanley, CC0 1.0; dicebear-core is MIT. The styles' own palettes are used unchanged:
adventurer varies hair (14) and skin (4); micah hair (13), skin (3) and shirt (13);
big-smile hair (8) and skin (8); open-peeps skin (5) and clothing (7). Open Peeps draws hair
as part of its black ink; recolouring the ink would recolour every line too and, on the
darker skins, erase the face's lines from the sketch, so its hair stays black.

Splits, by seed (the seed string passed to DiceBear is the decimal number, so any face can be
redrawn on dicebear.com from its key "style/seed"):
- train: seeds 0 .. faces_train_per_style-1 of each style in faces_styles;
- test: the first faces_test_per_style seeds from TEST_SEED0 on of each of those styles whose
  face is not also a training face. Test seeds start far above any training count, so
  growing the training set never moves a face between the splits. Distinct seeds can still
  draw the same face (Open Peeps has few enough combinations that 6 of its first 300 held-out
  seeds repeat one of its first 2,700), so such seeds are skipped;
- test-unseen: seeds UNSEEN_SEED0 .. +faces_unseen-1 of faces_unseen_style, a style never
  seen in training.

The colour image is the SVG rendered on white (transparent background composited, as for
OpenMoji); the sketch is XDoG of it [S 6.3], as for the folder dataset. Renders are cached
as one compressed .npz per style, split, count and resolution; sketches are computed on
load, so changing the XDoG settings never invalidates the cache.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import DataConfig
from ..core.sketch import xdog
from ..paths import DiskFullError, atomic_write, built_or_locked, cache_root
from ..processes import render_pool
from .openmoji import render_svg

SPLITS = ("train", "test", "test-unseen")
TEST_SEED0 = 1_000_000  # first held-out seed of a training style
UNSEEN_SEED0 = 2_000_000  # first seed of the test-unseen style
PACKAGES = ("dicebear-core", "dicebear-styles")


class FacesUnavailableError(RuntimeError):
    """DiceBear is not installed (the CLI prints it as one `error:` line)."""


# ------------------------------------------------------------------------------ DiceBear

def dicebear_versions() -> dict:
    """{"dicebear-core": "10.7.0", "dicebear-styles": "10.6.0"}; a one-line error without them."""
    try:
        import dicebear  # noqa: F401  the renderer, imported here so a broken install shows now
        import dicebear_styles  # noqa: F401
        return {p: metadata.version(p) for p in PACKAGES}
    except (ImportError, metadata.PackageNotFoundError) as e:
        raise FacesUnavailableError(
            f"the faces dataset needs dicebear-core==10.7.0 and dicebear-styles==10.6.0 "
            f"(pip install dicebear-core==10.7.0 dicebear-styles==10.6.0): {e}") from None


def available_styles() -> list[str]:
    """Names of every style definition that dicebear-styles ships, sorted."""
    dicebear_versions()

    return sorted(p.name[:-len(".json")] for p in files("dicebear_styles").iterdir()
                  if p.name.endswith(".json"))


def check_styles(cfg: DataConfig) -> None:
    """Refuse unknown style names and an unseen style that is also trained on."""
    known = available_styles()
    for key, names in (("data.faces_styles", cfg.faces_styles),
                       ("data.faces_unseen_style", (cfg.faces_unseen_style,))):
        for name in names:
            if name not in known:
                raise ValueError(f"{key}: unknown DiceBear style {name!r}; dicebear-styles has "
                                 f"{', '.join(known)}")
    if cfg.faces_unseen_style in cfg.faces_styles:
        raise ValueError(f"data.faces_unseen_style={cfg.faces_unseen_style!r} is also in "
                         f"data.faces_styles: the test-unseen split would not be unseen")


_STYLES: dict = {}  # style name -> dicebear.Style, per process (workers inherit or rebuild it)


def _style(name: str):
    if name not in _STYLES:
        # the faces dataset only; a missing install is reported when faces are asked for
        from dicebear import Style

        definition = json.loads(files("dicebear_styles").joinpath(f"{name}.json")
                                .read_text(encoding="utf-8"))
        _STYLES[name] = Style(definition)
    return _STYLES[name]


def face_svg(style: str, seed: int, **options) -> str:
    """The SVG of one face; `options` are DiceBear options (e.g. hairColor=["#0e0e0e"])."""
    # the faces dataset only; a missing install is reported when faces are asked for
    from dicebear import Avatar

    return Avatar(_style(style), {"seed": str(seed), **options}).to_string()


def face_options(style: str, seed: int) -> dict:
    """Every value DiceBear picked for this face (variants and colours): equal options, equal
    image."""
    # the faces dataset only; a missing install is reported when faces are asked for
    from dicebear import Avatar

    return Avatar(_style(style), {"seed": str(seed)}).to_json()["options"]


def render_face(style: str, seed: int, resolution: int, **options) -> np.ndarray:
    """(resolution, resolution, 3) uint8 on white."""
    # resvg, background white: the same path as OpenMoji
    return render_svg(face_svg(style, seed, **options), resolution)


# ------------------------------------------------------------------------------ the splits

def split_counts(cfg: DataConfig, limit: int | None = None) -> dict:
    """Faces per style of each split; `limit` caps each (tiny sets for tests)."""
    cap = (lambda n: n) if limit is None else (lambda n: min(n, limit))
    return {"train": cap(cfg.faces_train_per_style), "test": cap(cfg.faces_test_per_style),
            "test-unseen": cap(cfg.faces_unseen)}


def split_styles(cfg: DataConfig, split: str) -> tuple:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of the faces dataset; use "
                         f"{', '.join(repr(s) for s in SPLITS)}")
    return (cfg.faces_unseen_style,) if split == "test-unseen" else tuple(cfg.faces_styles)


def split_seeds(cfg: DataConfig, split: str, style: str, limit: int | None = None) -> list[int]:
    """The seeds of `style` in `split`, in order (see the module docstring). With `limit`,
    the test split avoids the faces of the capped training split."""
    n = split_counts(cfg, limit)
    if split == "train":
        return list(range(n["train"]))
    if split == "test-unseen":
        return list(range(UNSEEN_SEED0, UNSEEN_SEED0 + n["test-unseen"]))
    seen = {json.dumps(face_options(style, s), sort_keys=True) for s in range(n["train"])}
    seeds, s = [], TEST_SEED0
    while len(seeds) < n["test"]:
        if s - TEST_SEED0 > 10 * n["test"] + 1000:  # a style with (nearly) no unseen face left
            raise ValueError(f"DiceBear style {style!r} draws too few distinct faces for "
                             f"{n['test']} test faces unlike its {n['train']} training faces")
        if json.dumps(face_options(style, s), sort_keys=True) not in seen:
            seeds.append(s)
        s += 1
    return seeds


# ------------------------------------------------------------------------------ rendering and cache

def cache_path(cfg: DataConfig, split: str, style: str, limit: int | None = None) -> Path:
    """One file per style, split, count and resolution, under the renderer versions."""
    import resvg_py  # the renderer: only rendering needs it (tests/test_imports.py)

    v = dicebear_versions()
    n = split_counts(cfg, limit)
    folder = (f"{cfg.resolution}px-resvg{resvg_py.__resvg_version__}"
              f"-dicebear{v['dicebear-core']}-styles{v['dicebear-styles']}")
    # The test split depends on the training count too (its repeats of training faces are skipped).
    stem = f"{style}-{split}{n[split]}" + (f"-unlike-train{n['train']}" if split == "test" else "")
    return cache_root() / "faces" / folder / f"{stem}.npz"


def _render_job(job: tuple[str, int, int]) -> np.ndarray:
    style, seed, resolution = job
    return render_face(style, seed, resolution)


def render_faces(style: str, seeds: list[int], resolution: int,
                 processes: int | None = None, desc: str = "") -> np.ndarray:
    """(N,H,W,3) uint8 renders of `seeds`, in a process pool, with a progress bar."""
    jobs = [(style, s, resolution) for s in seeds]
    processes = processes or min(len(jobs), os.cpu_count() or 1) or 1
    desc = desc or f"rendering {style} faces at {resolution}px"
    if processes > 1 and len(jobs) > 16:
        _style(style)  # parsed once here; forked workers inherit it
        with render_pool(processes) as pool:
            images = list(tqdm(pool.imap(_render_job, jobs, chunksize=32), total=len(jobs),
                               desc=desc))
    else:
        images = [_render_job(j) for j in tqdm(jobs, desc=desc)]
    return np.stack(images)


def _check_writable(folder: Path) -> None:
    """Fail before rendering, not after, when the cache folder cannot take a file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(f"cannot write the faces render cache in {folder}: {e.strerror or e}; "
                      f"set PAPERLIB_CACHE to a writable folder") from None


@dataclass
class FacesData:
    images: np.ndarray  # (N,H,W,3) uint8 colour renders on white
    styles: list  # N style names
    seeds: list  # N seeds, same order

    @property
    def keys(self) -> list[str]:
        return [f"{st}/{s}" for st, s in zip(self.styles, self.seeds)]


def load_style_split(cfg: DataConfig, split: str, style: str,
                     limit: int | None = None) -> FacesData:
    """One style's faces of one split, from the cache if present (else rendered and cached)."""
    path = cache_path(cfg, split, style, limit)
    with built_or_locked(path):  # one process renders; the others wait and read its cache
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                images, seeds = z["images"], [int(s) for s in z["seeds"]]
            return FacesData(images, [style] * len(seeds), seeds)
        _check_writable(path.parent)
        seeds = split_seeds(cfg, split, style, limit)
        images = render_faces(style, seeds, cfg.resolution,
                              desc=f"rendering {style} faces ({split}) at {cfg.resolution}px")
        try:
            atomic_write(path, lambda f: np.savez_compressed(
                f, images=images, seeds=np.array(seeds, dtype=np.int64)))
        except DiskFullError:
            raise
        except OSError as e:
            raise OSError(f"cannot write the faces render cache {path}: {e.strerror or e}; "
                          f"set PAPERLIB_CACHE to a writable folder") from None
        return FacesData(images, [style] * len(seeds), seeds)


def load_faces(cfg: DataConfig, split: str, limit: int | None = None) -> FacesData:
    """All faces of `split` at cfg.resolution, the styles interleaved in cfg order."""
    styles = split_styles(cfg, split)
    check_styles(cfg)
    if split_counts(cfg, limit)[split] < 1:
        field = {"train": "faces_train_per_style", "test": "faces_test_per_style",
                 "test-unseen": "faces_unseen"}[split]
        raise ValueError(f"faces split {split!r} is empty (data.{field}="
                         f"{getattr(cfg, field)}{f', limit={limit}' if limit is not None else ''})")
    parts = [load_style_split(cfg, split, st, limit) for st in styles]
    # Styles interleaved (style A's first face, style B's first, ..., A's second, ...), so the
    # first N items, all that an evaluation with data.eval_limit or a demo takes, hold every
    # style in equal shares.
    order = sorted(((i, k) for k, p in enumerate(parts) for i in range(len(p.seeds))))
    return FacesData(np.stack([parts[k].images[i] for i, k in order]),
                     [parts[k].styles[i] for i, k in order], [parts[k].seeds[i] for i, k in order])


def sketch_masks(data: FacesData, cfg: DataConfig) -> np.ndarray:
    """(N,H,W) bool ink masks: XDoG of each colour render with cfg's XDoG settings [S 6.3]."""
    return np.stack([xdog(img, cfg) for img in data.images])
