"""Try the trained models on any sketch and reference: the logic behind notebook 08.

`Demo` holds the current choice (sketch, reference, feature cell, working size, the model
whose attention is shown) and every trained arm of the run registry. Each callback changes
the choice and returns a `View`: the numpy arrays the notebook displays. It knows nothing of
ipywidgets, so the tests drive it directly; `paperlib.app.widget.build_widget` only wires
widgets to it.

Everything goes through `paperlib.app.colorize`, the code behind `python -m paperlib colorize`:
a line drawing is thresholded, a colour image becomes a sketch with the training XDoG, the
output has the sketch's own size (long side resized to the working size, padded with white to
the encoders' stride, cropped back, the full-resolution lines drawn over the colours), and no
reference means the zero reference [S 6.5]. Uploaded files are decoded by
`imageio.decode_rgb`, which refuses images over `MAX_PIXELS` from their header alone.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import get_dataset, get_profile, override
from ..core.sketch import binarize_sketch_image
from ..data.datasets import build_dataset
from ..data.imageio import BadImageError, decode_rgb, fit_inside, to_uint8
from ..paths import repo_root
from ..study import registry
from ..study.figures import attention_overlay
from ..study.registry import ARM_LABELS, ARMS, MAIN, TRAINED_BY
from ..study.reproduce import results_dir
from ..training.loop import is_complete
from ..training.snapshot import FINAL, load_generator
from .colorize import (check_size, colorize_tensors, finish_output, padded_feature_grid, prepare_inputs,
                       save_image)

# Uploads above this are refused before decoding: a 16.8-megapixel image already needs a few
# hundred MB for the full-resolution XDoG and the six arms' outputs.
MAX_PIXELS = 4096 * 4096

SKETCH_KINDS = ("line", "xdog", "upload")
CELL_COLOUR = (230, 20, 20)


@dataclass
class SplitImage:
    """One test-split item: its key, colour image (H,W,3) uint8 and line-art ink mask (H,W)."""
    key: str
    image: np.ndarray
    ink: np.ndarray


@dataclass
class MissingArm:
    name: str
    label: str
    reason: str
    command: str
    notebook: str


@dataclass
class View:
    """What the widget shows; every image is (H,W,3) uint8 at the sketch's own size."""
    sketch: np.ndarray  # the binarised sketch, the chosen feature cell outlined in red
    reference: np.ndarray  # the reference fitted into the sketch's frame; mid grey = zero reference
    attention: np.ndarray | None  # the reference under the main arm's attention for the cell
    output: np.ndarray | None  # the main arm's colours (None: no trained arm)
    outputs: dict[str, np.ndarray]  # every trained arm, in the registry's ARMS order
    cell: tuple[int, int]
    grid: tuple[int, int]
    main: str | None
    sketch_label: str
    reference_label: str
    message: str = ""
    missing: list[MissingArm] = field(default_factory=list)


def ink_to_rgb(ink: np.ndarray) -> np.ndarray:
    """(H,W) bool ink mask -> (H,W,3) uint8 black lines on white paper."""
    return np.repeat(np.where(ink, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def one_line(text) -> str:
    """A message for a one-line label: whitespace (newlines included) collapsed."""
    return " ".join(str(text).split())


def arm_status(profile: str, seed: int = 0, names=tuple(ARMS), dataset: str | None = None):
    """(trained: name -> run folder, missing: [MissingArm]) for the registry's arms on
    `dataset` (None: $PAPERLIB_DATASET, else openmoji)."""
    trained, missing = {}, []
    for name in names:
        path = registry.run_path(profile, name, seed, dataset)
        if is_complete(path):
            trained[name] = path
            continue
        reason = f"training incomplete (no {FINAL})" if path.exists() else "not trained"
        missing.append(MissingArm(name, ARM_LABELS.get(name, name), reason,
                                  registry.train_command(profile, name, seed, dataset), TRAINED_BY.get(name, "")))
    return trained, missing


def load_test_images(data_cfg, split: str = "test", limit: int | None = None) -> list[SplitImage]:
    """The split's images with their line-art ink masks (OpenMoji: the artist's line group)."""
    ds = build_dataset(data_cfg, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    items = (ds[i] for i in range(n))
    return [SplitImage(it["key"], to_uint8(it["image"]), it["sketch"][0].numpy() < 0) for it in items]


class Demo:
    """The state of the try-it widget and its callbacks; see the module docstring.

    arms: name -> generator (any module with the Generator call signature and
    `enc_s.total_stride`); data_cfg: the XDoG settings for colour sketches; test_images: what
    the test-image choices pick from. `size` is the working size of the sketch's longer side
    (default: data_cfg.resolution), `lines` as in `colorize_image`.
    """

    def __init__(self, arms: dict, data_cfg, test_images: list[SplitImage], *, size: int | None = None,
                 missing: list[MissingArm] | None = None, main: str | None = None,
                 lines: str = "keep", save_path=None, sketch_index: int = 0,
                 reference_index: int | None = 1, max_pixels: int = MAX_PIXELS, profile: str = "",
                 root=None):
        if not test_images:
            raise ValueError("Demo needs at least one test image")
        self.arms = {n: arms[n] for n in ARMS if n in arms}
        self.arms.update({n: g for n, g in arms.items() if n not in self.arms})
        self.data_cfg = data_cfg
        self.test_images = test_images
        self.missing = list(missing or [])
        self.lines = lines
        self.max_pixels = max_pixels
        self.profile = profile
        self.stride = next((int(g.enc_s.total_stride) for g in self.arms.values()), 16)
        self.size = check_size(size or data_cfg.resolution, self.stride)
        # Relative save paths are taken from `root` (the repository root for `from_runs`), not
        # from the kernel's working folder, and are shown as given: no machine path on screen.
        self.root = Path(root) if root else Path.cwd()
        self.root_label = "the repository root" if root else "the working folder"
        self.save_path = Path(save_path) if save_path else Path("try_it_output.png")
        self._run = None  # outputs, attention and geometry of the current sketch and reference
        self._main = main if main in self.arms else self._default_main()
        self.message = ""
        self.cell = (0, 0)
        self._uploads: dict[str, tuple[np.ndarray, str]] = {}
        self._test_index: dict[str, int] = {}  # the test images last picked as sketch / reference
        self._set_reference_image(*self._test_reference(reference_index))
        self._set_sketch_image(*self._test_sketch(sketch_index, "line"), centre=True)

    @classmethod
    def from_runs(cls, profile: str, seed: int = 0, dataset: str | None = None, **kwargs) -> "Demo":
        """Every complete arm of `profile` (seed `seed`) on `dataset` (None: $PAPERLIB_DATASET,
        else openmoji) and that dataset's test split; arms not trained are listed in
        `missing`, never trained here."""
        dataset = get_dataset(dataset)
        config = override(get_profile(profile), {"data.dataset": dataset})
        trained, missing = arm_status(profile, seed, dataset=dataset)
        arms = {name: load_generator(path)[0] for name, path in trained.items()}
        root = repo_root()
        kwargs.setdefault("root", root)
        kwargs.setdefault("save_path", results_dir(profile, dataset).relative_to(root) / "try_it_output.png")
        return cls(arms, config.data, load_test_images(config.data), missing=missing,
                   profile=profile, **kwargs)

    # ------------------------------------------------------------------------ callbacks

    def set_sketch(self, index: int | None = None, kind: str = "line") -> View:
        """A test image's line art ("line") or its colours' XDoG sketch ("xdog"); "upload" goes
        back to the last uploaded sketch. `index` None keeps the current test image."""
        if kind not in SKETCH_KINDS:
            raise ValueError(f"sketch kind {kind!r}; choose one of {SKETCH_KINDS}")
        if kind == "upload":
            if "sketch" not in self._uploads:
                self.message = "no sketch file uploaded yet: use the sketch upload button"
                return self.view()
            self._set_sketch_image(*self._uploads["sketch"])
        else:
            self._set_sketch_image(*self._test_sketch(self._index(index, "sketch"), kind))
        return self.view()

    def upload_sketch(self, data: bytes, name: str = "upload") -> View:
        """An uploaded sketch file: a line drawing is thresholded, a colour image made into a
        sketch with the training XDoG. A bad file leaves the sketch as it was, with a message."""
        img = self._decode(data, name, "sketch")
        if img is not None:
            self._uploads["sketch"] = (img, f"your file {name}")
            self._set_sketch_image(img, f"your file {name}")
        return self.view()

    def set_reference(self, index: int | None) -> View:
        """A test image's colours as the reference; None is the zero reference."""
        self._set_reference_image(*self._test_reference(index))
        return self.view()

    def use_uploaded_reference(self) -> View:
        if "reference" not in self._uploads:
            self.message = "no reference file uploaded yet: use the reference upload button"
            return self.view()
        self._set_reference_image(*self._uploads["reference"])
        return self.view()

    def upload_reference(self, data: bytes, name: str = "upload") -> View:
        img = self._decode(data, name, "reference")
        if img is not None:
            self._uploads["reference"] = (img, f"your file {name}")
            self._set_reference_image(img, f"your file {name}")
        return self.view()

    def set_cell(self, row: int, col: int) -> View:
        """The sketch feature cell whose attention is shown (clamped into the grid)."""
        gh, gw = self.grid
        self.cell = (min(max(int(row), 0), gh - 1), min(max(int(col), 0), gw - 1))
        return self.view()

    def click(self, x: float, y: float) -> View:
        """A click at pixel (x, y) of the displayed sketch (its own size) picks that cell."""
        run = self._compute()
        H, W = self._sketch.shape[:2]
        h, w = run["work"]
        top, left = run["pad"]
        row = math.floor((y * h / H + top) / self.stride)
        col = math.floor((x * w / W + left) / self.stride)
        return self.set_cell(row, col)

    @property
    def main(self) -> str | None:
        """The trained arm whose output is shown large and whose attention is drawn."""
        return self._main

    def set_main(self, name: str) -> View:
        if name not in self.arms:
            raise ValueError(f"{name!r} is not a trained arm here; trained: {list(self.arms)}")
        if name != self._main:
            self._main = name
            self._run = None  # the attention kept is the main arm's
        return self.view()

    def set_size(self, size: int) -> View:
        """The working size of the sketch's longer side (a multiple of 16)."""
        try:
            self.size = check_size(size, self.stride)
        except ValueError as e:
            self.message = one_line(e)
            return self.view()
        self._run = None
        self.set_cell(*self.cell)
        return self.view()

    def save(self, path=None) -> Path | None:
        """Write the main arm's output (the sketch's own size) as PNG; None if there is none."""
        out = self.view().output
        if out is None:
            self.message = "nothing to save: no trained model"
            return None
        shown = Path(path) if path else self.save_path
        path = shown if shown.is_absolute() else self.root / shown
        save_image(out, path)  # through a temp file: a failed save keeps the earlier file
        self.message = f"saved {shown} ({out.shape[1]} x {out.shape[0]})"
        return path

    # ------------------------------------------------------------------------ the view

    @property
    def sketch_shape(self) -> tuple[int, int]:
        """(H, W) of the current sketch image: the size of every displayed array."""
        return self._sketch.shape[:2]

    def picked_index(self, which: str) -> int | None:
        """The test image last picked as the "sketch" or the "reference" (None: none yet)."""
        if which not in ("sketch", "reference"):
            raise ValueError(f"which={which!r}; choose 'sketch' or 'reference'")
        return self._test_index.get(which)

    @property
    def has_reference(self) -> bool:
        """Whether a reference image is in use (False: the zero reference)."""
        return self._reference is not None

    @property
    def grid(self) -> tuple[int, int]:
        return self._compute()["grid"]

    def view(self) -> View:
        run = self._compute()
        H, W = self._sketch.shape[:2]
        sketch, attention = self._cell_images()
        outputs = run["outputs"]
        kind = "a line drawing, thresholded" if run["line_drawing"] else "a colour image, XDoG sketch"
        return View(sketch=sketch, reference=run["reference"], attention=attention,
                    output=outputs.get(self.main), outputs=dict(outputs), cell=self.cell,
                    grid=run["grid"], main=self.main,
                    sketch_label=f"{self._sketch_label}: {W} x {H}, {kind}",
                    reference_label=self._reference_label, message=self.message,
                    missing=list(self.missing))

    def _cell_images(self):
        """The sketch with the cell outlined and the attention overlay, cached per cell: a
        callback builds the view more than once, and a large image makes each build slow."""
        run = self._compute()
        if self.cell in run["cells"]:
            return run["cells"][self.cell]
        H, W = self._sketch.shape[:2]
        sketch = ink_to_rgb(run["ink"])
        y0, y1, x0, x1 = self.cell_box(*self.cell)
        t = max(1, round(min(H, W) / 64))  # a visible outline at any size
        sketch[y0:min(y0 + t, y1), x0:x1] = CELL_COLOUR
        sketch[max(y1 - t, y0):y1, x0:x1] = CELL_COLOUR
        sketch[y0:y1, x0:min(x0 + t, x1)] = CELL_COLOUR
        sketch[y0:y1, max(x1 - t, x0):x1] = CELL_COLOUR
        attention = None
        if run["attention"] is not None:
            attention = attention_overlay(run["reference"], self._heat(run["attention"]))
        run["cells"][self.cell] = (sketch, attention)
        return sketch, attention

    def binarised_sketch(self) -> np.ndarray:
        """The sketch as the model reads it, at its own size: (H,W,3) black ink on white."""
        return ink_to_rgb(self._compute()["ink"])

    def cell_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Cell (row, col) of the feature grid in the sketch's own pixels: y0, y1, x0, x1."""
        run = self._compute()
        H, W = self._sketch.shape[:2]
        h, w = run["work"]
        top, left = run["pad"]
        s = self.stride

        def span(i, pad, work, full):
            a, b = min(max(i * s - pad, 0), work), min(max((i + 1) * s - pad, 0), work)
            lo = math.floor(a * full / work)
            return lo, max(math.ceil(b * full / work), lo + 1)  # at least one pixel

        y0, y1 = span(row, top, h, H)
        x0, x1 = span(col, left, w, W)
        return y0, min(y1, H), x0, min(x1, W)

    def status_markdown(self) -> str:
        """Which arms are shown and which are not trained, with the commands that train them."""
        prof = f" in profile `{self.profile}`" if self.profile else ""
        shown = ", ".join(ARM_LABELS.get(n, n) for n in self.arms) or "none"
        lines = [f"**Trained arms{prof}:** {shown}."]
        if self.missing:
            lines.append(f"**Not trained{prof}** (nothing is trained here; each line trains one):")
            for m in self.missing:
                via = (f", or run notebook {m.notebook} (`python -m paperlib reproduce --only "
                       f"{m.notebook}`), which trains both seeds and evaluates them") if m.notebook else ""
                lines.append(f"- {m.label} (`{m.name}`): {m.reason}. `{m.command}`{via}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------ internals

    def _default_main(self):
        if MAIN in self.arms:
            return MAIN
        # An arm with an attention map to show: SCFT, or the opt-in stop-gradient attention.
        scft = [n for n, g in self.arms.items()
                if getattr(getattr(g, "cfg", None), "aggregation", "") in ("scft", "sga")]
        return (scft or list(self.arms) or [None])[0]

    def _index(self, index, which: str) -> int:
        if index is None:
            return self._test_index.get(which, 0)
        if not 0 <= int(index) < len(self.test_images):
            raise ValueError(f"test image {index} does not exist; there are {len(self.test_images)}")
        return int(index)

    def _test_sketch(self, index: int, kind: str):
        index = self._index(index, "sketch")
        self._test_index["sketch"] = index
        t = self.test_images[index]
        if kind == "line":
            return ink_to_rgb(t.ink), f"test image {index} ({t.key}), line art"
        # The training XDoG of the colour image, as `colorize` does for a colour sketch.
        ink = binarize_sketch_image(t.image, self.data_cfg, line_drawing=False)
        return ink_to_rgb(ink), f"test image {index} ({t.key}), XDoG of its colours"

    def _test_reference(self, index: int | None):
        if index is None:
            return None, "none (zero reference)"
        index = self._index(index, "reference")
        self._test_index["reference"] = index
        return self.test_images[index].image, f"test image {index} ({self.test_images[index].key})"

    def _decode(self, data, name: str, what: str):
        try:
            img = decode_rgb(data, name, self.max_pixels)
        except BadImageError as e:
            self.message = one_line(f"{e}; the {what} is unchanged")
            return None
        self.message = ""
        return img

    def _set_sketch_image(self, img: np.ndarray, label: str, centre: bool = False) -> None:
        self._sketch, self._sketch_label = img, label
        self._run = None
        self.message = ""
        if centre:
            gh, gw = self.grid
            self.cell = (gh // 2, gw // 2)
        else:
            self.set_cell(*self.cell)  # the new sketch's grid may be smaller

    def _set_reference_image(self, img: np.ndarray | None, label: str) -> None:
        self._reference, self._reference_label = img, label
        self._run = None
        self.message = ""

    def _compute(self) -> dict:
        """Every arm on the current sketch and reference (cached until one of them changes)."""
        if self._run is not None:
            return self._run
        sketch, ref = self._sketch, self._reference
        s, r, line_drawing = prepare_inputs(sketch, ref, data_cfg=self.data_cfg, size=self.size,
                                            stride=self.stride)
        h, w = s.shape[-2:]
        gh, gw, top, left = padded_feature_grid(h, w, self.stride)
        ink = binarize_sketch_image(sketch, self.data_cfg, line_drawing)  # full size, once
        outputs, attention = {}, None
        for name, G in self.arms.items():
            out, aux = colorize_tensors(G, s, r, return_aux=True)
            outputs[name] = finish_output(out, sketch, data_cfg=self.data_cfg,
                                          line_drawing=line_drawing, lines=self.lines, ink=ink)
            if name == self.main and "attention" in aux:
                attention = aux["attention"][0].float().cpu()  # (P_sketch, P_reference)
        H, W = sketch.shape[:2]
        shown_ref = (np.full((H, W, 3), to_uint8(torch.zeros(3, 1, 1))[0, 0], np.uint8)
                     if ref is None else fit_inside(ref, H, W))
        self._run = {"outputs": outputs, "attention": attention, "main": self.main,
                     "grid": (gh, gw), "pad": (top, left), "work": (h, w), "reference": shown_ref,
                     "ink": ink, "line_drawing": line_drawing, "cells": {}}
        return self._run

    def _heat(self, att: torch.Tensor) -> np.ndarray:
        """The chosen cell's attention row as an (H,W) map over the reference's own frame."""
        import cv2  # OpenCV is large: loaded by the functions that resize or filter

        run = self._run
        gh, gw = run["grid"]
        top, left = run["pad"]
        h, w = run["work"]
        row = att[self.cell[0] * gw + self.cell[1]].reshape(gh, gw).numpy()
        full = np.kron(row, np.ones((self.stride, self.stride)))[top:top + h, left:left + w]
        H, W = self._sketch.shape[:2]
        return cv2.resize(full.astype(np.float32), (W, H), interpolation=cv2.INTER_NEAREST)



# ---------------------------------------------------------------------------- the figure

def try_it_figure(demo: Demo, sketch_index: int, reference_indices, kind: str = "line"):
    """One sketch (a test image's line art or XDoG), one row per reference (None: the zero
    reference), one column per trained arm; arms not trained are named under the grid."""
    import matplotlib.pyplot as plt  # matplotlib only when a figure is drawn

    demo.set_sketch(sketch_index, kind)
    rows = [demo.set_reference(i) for i in reference_indices]
    names = list(demo.arms)
    n_cols = 2 + len(names)
    width = max(1.75 * n_cols, 7.0)  # room for the title and the list of missing arms
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(width, 1.75 * len(rows) + 0.9),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    titles = ["sketch", "reference"] + [ARM_LABELS.get(n, n) for n in names]
    for c, title in enumerate(titles):
        axes[0][c].set_title(textwrap.fill(title, 16), fontsize=8.5)
    for r, view in enumerate(rows):
        if r == 0:
            axes[r][0].imshow(demo.binarised_sketch())
        else:
            axes[r][0].axis("off")
        axes[r][1].imshow(view.reference)
        axes[r][1].set_ylabel(_row_label(demo, reference_indices[r], sketch_index), fontsize=7.5)
        for c, name in enumerate(names):
            axes[r][2 + c].imshow(view.outputs[name])
    sketch_label = rows[0].sketch_label.split(":")[0] if rows else ""
    title = (f"Try it: {sketch_label}, {len(rows)} references, every trained arm"
             + (f" (profile {demo.profile})" if demo.profile else ""))
    fig.suptitle(textwrap.fill(title, int(width * 11)), fontsize=10)
    bottom = 0.0
    if demo.missing:
        text = textwrap.fill("not trained (see the notebook for the commands): " + ", ".join(
            f"{m.label} ({m.name})" for m in demo.missing), int(width * 15))
        fig.text(0.01, 0.01, text, fontsize=7.5, ha="left", va="bottom")
        bottom = (text.count("\n") + 1) * 0.14 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    demo.set_reference(reference_indices[0] if len(reference_indices) else None)
    return fig


def _row_label(demo: Demo, index, sketch_index: int) -> str:
    if index is None:
        return "zero reference"
    head = "its own colours" if index == sketch_index else f"test image {index}"
    return head + "\n" + textwrap.fill(demo.test_images[index].key, 16, break_on_hyphens=True)
