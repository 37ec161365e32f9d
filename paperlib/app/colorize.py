"""Colour sketches with a trained generator, from files or from tensors.

A sketch may be a line drawing (thresholded) or a colour image (made into a binary sketch with
the same XDoG as training); which of the two is decided once, on the full-size image. The
output has the sketch's own size and aspect ratio; nothing is cropped:

1. the sketch is resized so that its longer side is the working `size` (default: the model's
   training resolution `config.data.resolution`), aspect kept, and binarised;
2. it is padded with white paper (+1) to a multiple of the encoders' total stride (16) on each
   side, the padding split evenly between the two edges;
3. the reference, if any, is fitted inside the same unpadded working rectangle (aspect kept,
   centred, white around it when its aspect ratio differs from the sketch's) and padded the
   same way with white;
4. the generator runs on the padded canvas and the padding is cropped off again;
5. the colours are resized back to the sketch's original size (bilinear; antialiased when
   shrinking). With `lines="keep"` (the default) the ink pixels of the sketch binarised at its
   full, original resolution are then drawn black over them, so the line art stays crisp at
   any size; `lines="none"` keeps the plain resized generator output.

No reference means the paper's zero-filled reference [S 6.5]. `colorize_tensors` works on
(B,1,H,W) tensors of any H, W (padded to a multiple of 16 internally and cropped back); at a
multiple of 16, e.g. the training resolution, it is exactly the plain generator call.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..core.sketch import binarize_sketch_image, looks_like_line_drawing, sketch_tensor
from ..data.imageio import (IMAGE_EXTENSIONS, BadImageError, fit_inside, load_rgb, resize_long_side,
                            to_tensor, to_uint8)
from ..paths import DiskFullError, atomic_write
from ..training.snapshot import load_generator, resolve_snapshot

LINES = ("keep", "none")
PAPER = 1.0  # white paper, in both the sketch's {-1,+1} and the reference's [-1,1] range


# The largest working size. The attention of SCFT (and "sga") compares every cell of the
# canvas's 16x-downsampled feature grid with every other, so its memory grows with the fourth
# power of the size: a 2048 canvas is 128 x 128 = 16,384 cells and a 2 GiB score matrix
# (scores and softmax, fp32, where they are materialised), 4096 would be 32 GiB. The colours are resized back to the
# sketch's own size, so a working size near the training resolution is what the model knows.
MAX_SIZE = 2048


def attention_gib(size: int, stride: int = 16) -> float:
    """GiB of the attention scores and their softmax (fp32) on a size x size canvas."""
    cells = (size // stride) ** 2
    return 2 * 4 * cells ** 2 / 2 ** 30


def check_size(size, multiple: int = 16, name: str = "size") -> int:
    """`size` as an int, or a ValueError naming it (as `name`) unless it is a positive multiple
    of `multiple` and at most MAX_SIZE."""
    ok = isinstance(size, (int, np.integer)) and not isinstance(size, bool)
    if not ok or size <= 0 or size % multiple:
        hint = ""
        if ok and size > 0:
            lo = max(multiple, size // multiple * multiple)
            hint = f" (e.g. {lo} or {lo + multiple})" if lo != size else ""
        raise ValueError(f"{name} {size!r} is not a positive multiple of {multiple} (the encoders' "
                         f"total stride){hint}")
    if size > MAX_SIZE:
        raise ValueError(f"{name} {size} is over {MAX_SIZE}, the largest working size: the "
                         f"attention over the canvas would need up to about {attention_gib(size):,.0f} "
                         f"GiB ({attention_gib(MAX_SIZE):.0f} GiB at {MAX_SIZE}); the output has "
                         f"the sketch's own size whatever the working size")
    return int(size)


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = PAPER):
    """Pad (..., H, W) with `value` to multiples of `multiple`, split evenly between opposite
    edges. Returns (padded, box) with box = (top, left, H, W) for `crop_box`."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    top, left = ph // 2, pw // 2
    if ph or pw:
        x = F.pad(x, (left, pw - left, top, ph - top), value=value)
    return x, (top, left, h, w)


def crop_box(x: torch.Tensor, box) -> torch.Tensor:
    """Undo `pad_to_multiple`: the (..., H, W) region at box = (top, left, H, W)."""
    top, left, h, w = box
    return x[..., top:top + h, left:left + w]


@torch.no_grad()
def colorize_tensors(G, sketch: torch.Tensor, reference: torch.Tensor | None = None, *,
                     return_aux: bool = False):
    """sketch (B,1,H,W) in {-1,+1}, reference (B,3,H,W) in [-1,1] or None -> (B,3,H,W) in [-1,1].

    Any H, W: both inputs are padded with white paper to a multiple of the encoders' total
    stride and the output is cropped back; at a multiple (e.g. the training size) this is
    exactly `G(sketch, reference)[0]`. With `return_aux` it returns (output, aux) where aux is
    the generator's aux dict with the attention matrix (SCFT and "sga" only) over the padded
    canvas's feature grid, `padded_feature_grid(H, W, stride)` cells in row-major order.
    """
    if sketch.dim() != 4 or sketch.shape[1] != 1:
        raise ValueError(f"sketch must be (B, 1, H, W), got {tuple(sketch.shape)}")
    if reference is not None and reference.shape[-2:] != sketch.shape[-2:]:
        raise ValueError(f"reference must have the sketch's size {tuple(sketch.shape[-2:])}, "
                         f"got {tuple(reference.shape)}")
    device = next(G.parameters()).device
    stride = G.enc_s.total_stride
    s, box = pad_to_multiple(sketch, stride)
    ref = None if reference is None else pad_to_multiple(reference, stride)[0].to(device)
    if not return_aux:
        out, _ = G(s.to(device), ref)
        return crop_box(out.float().cpu(), box)
    out, aux = G(s.to(device), ref, return_attention=True)
    return crop_box(out.float().cpu(), box), aux


def padded_feature_grid(h: int, w: int, stride: int = 16):
    """The generator's feature grid for an h x w input padded by `pad_to_multiple`:
    (rows, cols, top, left), top/left being the padding before the input's first row/column."""
    hp, wp = h + (-h % stride), w + (-w % stride)
    return hp // stride, wp // stride, (hp - h) // 2, (wp - w) // 2


def prepare_inputs(sketch: np.ndarray, reference: np.ndarray | None, *, data_cfg, size: int,
                   stride: int = 16):
    """Steps 1 and 3 of the module docstring: (H,W,3) uint8 sketch image (+ reference image or
    None) -> (sketch (1,1,h,w) in {-1,+1}, reference (1,3,h,w) in [-1,1] or None, line_drawing)
    at the working size; `line_drawing` is the decision made once on the full-size sketch."""
    size = check_size(size, stride)
    line_drawing = looks_like_line_drawing(sketch)
    work = resize_long_side(sketch, size)
    h, w = work.shape[:2]
    s = sketch_tensor(binarize_sketch_image(work, data_cfg, line_drawing))[None]  # (1,1,h,w)
    r = None if reference is None else to_tensor(fit_inside(reference, h, w))[None]
    return s, r, line_drawing


def finish_output(out: torch.Tensor, sketch: np.ndarray, *, data_cfg, line_drawing: bool,
                  lines: str = "keep", ink: np.ndarray | None = None) -> np.ndarray:
    """Step 5: (1,3,h,w) generator colours -> (H,W,3) uint8 at the sketch image's own size,
    with its full-resolution ink drawn on top for lines="keep". `ink`, if given, is that ink
    mask already computed (several models colouring one large sketch binarise it once)."""
    if lines not in LINES:
        raise ValueError(f"lines={lines!r}; choose one of {LINES}")
    H, W = sketch.shape[:2]
    h, w = out.shape[-2:]
    if (h, w) != (H, W):
        out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=False,
                            antialias=H < h or W < w)
    img = to_uint8(out[0])
    if lines == "keep":
        img[binarize_sketch_image(sketch, data_cfg, line_drawing) if ink is None else ink] = 0
    return img


def colorize_image(G, sketch: np.ndarray, reference: np.ndarray | None = None, *, data_cfg,
                   size: int, lines: str = "keep") -> np.ndarray:
    """(H,W,3) uint8 sketch image (+ any-size reference image or None) -> (H,W,3) uint8 colours
    at the sketch's own size; see the module docstring for the steps."""
    if lines not in LINES:
        raise ValueError(f"lines={lines!r}; choose one of {LINES}")
    s, r, line_drawing = prepare_inputs(sketch, reference, data_cfg=data_cfg, size=size,
                                        stride=G.enc_s.total_stride)
    out = colorize_tensors(G, s, r)  # (1,3,h,w)
    return finish_output(out, sketch, data_cfg=data_cfg, line_drawing=line_drawing, lines=lines)


def listing(path: Path) -> list[Path]:
    """The image files of a folder (recursively, sorted) or the one file `path` names."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"{path} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return files
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return [path]


def given(value, flag: str) -> Path:
    """A path option as a Path; an empty one is an error (Path("") would mean the current
    folder, searched recursively)."""
    if value is None or not str(value).strip():
        raise ValueError(f"{flag} is empty: give a file or folder")
    return Path(value)


def output_is_folder(out: str | Path) -> bool:
    """Whether `out` names a folder (an existing folder, a path ending in '/', or a name without
    a suffix) or an image file (a known image extension); anything else is a ValueError."""
    text = str(out)
    if text == "-":
        raise ValueError("--out -: writing to standard output is not supported; give an image "
                         "file or a folder")
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)) or not path.suffix:
        if path.exists() and not path.is_dir():
            raise ValueError(f"--out {out} is an existing file without an image extension, "
                             f"not a folder")
        return True
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"--out {out}: {path.suffix!r} is not an image extension "
                         f"({', '.join(IMAGE_EXTENSIONS)}); give an image file, or a folder (an "
                         f"existing one, a name without a suffix, or a path ending in '/')")
    return False


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or below it, symbolic links resolved."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def output_names(sketches: list[Path], root: Path) -> list[Path]:
    """Each sketch's output path relative to the output folder: its path below `root` with a
    .png suffix; sketches of one folder sharing a stem (a.png, a.jpg) keep their whole name
    (a.png.png, a.jpg.png) so that no output replaces another."""
    rels = [s.relative_to(root) for s in sketches]
    stems: dict[tuple, int] = {}
    for r in rels:
        stems[(r.parent, r.stem)] = stems.get((r.parent, r.stem), 0) + 1
    return [r.parent / ((r.name if stems[(r.parent, r.stem)] > 1 else r.stem) + ".png")
            for r in rels]


def plan_outputs(sketch, out, reference=None, checkpoint=None) -> list[tuple[Path, Path]]:
    """(sketch file, output file) for each sketch, checked before anything is computed: an
    output never replaces an input (sketch, reference or checkpoint) or another output, and the
    output folder is never inside a folder that is read (a rerun would read its outputs as
    sketches or references). Each refusal is a ValueError naming both paths."""
    sketch, out_path = given(sketch, "--sketch"), given(out, "--out")
    reads = [sketch] + ([given(reference, "--reference")] if reference is not None else [])
    to_folder = output_is_folder(out)  # the text as given: Path() drops a trailing '/'
    out = out_path
    sketches = listing(sketch)
    refs = listing(reads[1]) if reference is not None else []
    if sketch.is_dir() and not to_folder:
        raise ValueError(f"--out {out} is an image file but --sketch {sketch} is a folder of "
                         f"sketches: give a folder for --out")
    out_folder = out if to_folder else out.parent
    for folder in (p for p in reads if p.is_dir()):
        if inside(out_folder, folder):
            raise ValueError(f"--out {out} is inside {folder}, a folder colorize reads: a rerun "
                             f"would take its outputs for inputs; choose an output outside it")
    if not to_folder:
        targets = [out]
    elif sketch.is_dir():
        targets = [out / name for name in output_names(sketches, sketch)]
    else:
        targets = [out / (sketch.stem + ".png")]
    inputs = {}
    for p in sketches + refs + ([Path(checkpoint)] if checkpoint is not None else []):
        if p.exists():
            st = p.stat()
            inputs[(st.st_dev, st.st_ino)] = p
        inputs[os.path.realpath(p)] = p
    seen: dict[str, Path] = {}
    for s_path, target in zip(sketches, targets):
        if target.is_dir():
            raise ValueError(f"the output for {s_path} would be {target}, which is a folder")
        st = target.stat() if target.exists() else None
        hit = inputs.get(os.path.realpath(target)) or (st and inputs.get((st.st_dev, st.st_ino)))
        if hit is not None:
            raise ValueError(f"the output for {s_path} would overwrite the input {hit} "
                             f"(--out {out}); choose another output")
        key = os.path.realpath(target)
        if key in seen:
            raise ValueError(f"{seen[key]} and {s_path} would both be written to {target}; "
                             f"rename one of them")
        seen[key] = s_path
    return list(zip(sketches, targets))


def save_image(img: np.ndarray, target: Path) -> None:
    """Write an (H,W,3) uint8 image through a temp file and a rename (`paths.atomic_write`): a
    failed write (a full disk, a kill) leaves the file that was there before as it was."""
    fmt = Image.registered_extensions().get(target.suffix.lower())
    if fmt is None:
        raise ValueError(f"{target}: {target.suffix or 'no extension'!r} is not an image "
                         f"extension to write ({', '.join(IMAGE_EXTENSIONS)})")
    try:
        atomic_write(target, lambda f: Image.fromarray(img).save(f, format=fmt))
    except DiskFullError:
        raise
    except OSError as e:
        raise OSError(e.errno, f"cannot write {target}: {e.strerror or e}") from None


def colorize_files(checkpoint, sketch, out, reference=None, device: str = "cpu",
                   progress: bool = True, size: int | None = None,
                   lines: str = "keep") -> list[Path]:
    """Colour one sketch file or a folder of them; `reference` is a file, a folder (paired by
    sorted order, cycled if shorter) or None. `out` is an image file for one sketch, else a
    folder, where each output keeps its sketch's path below the sketch folder (`plan_outputs`
    says which paths are refused, before any work). Each output has its sketch's size; `size`
    is the working size of the longer side (default the training resolution, a multiple of 16)
    and `lines` is "keep" or "none"."""
    if lines not in LINES:
        raise ValueError(f"lines={lines!r}; choose one of {LINES}")
    G, config, _ = load_generator(given(checkpoint, "--checkpoint"), device)
    plan = plan_outputs(sketch, out, reference, resolve_snapshot(checkpoint))
    refs = listing(Path(reference)) if reference is not None else None
    size = (check_size(config.data.resolution, G.enc_s.total_stride) if size is None
            else check_size(size, G.enc_s.total_stride, name="--size"))
    written = []
    for i, (s_path, target) in enumerate(tqdm(plan, desc="colorize",
                                              **({} if progress and len(plan) > 1 else {"disable": True}))):
        r = load_rgb(refs[i % len(refs)]) if refs else None
        img = colorize_image(G, load_rgb(s_path), r, data_cfg=config.data, size=size, lines=lines)
        save_image(img, target)
        written.append(target)
    return written


__all__ = ["colorize_tensors", "colorize_image", "colorize_files", "check_size",
           "pad_to_multiple", "crop_box", "padded_feature_grid", "prepare_inputs", "finish_output",
           "BadImageError"]


# ----------------------------------------------------------------------------- command line

def add_colorize_arguments(sp) -> None:
    sp.description = ("Colour a sketch; the output has the sketch's own size and aspect ratio "
                      "(nothing is cropped).")
    sp.add_argument("--checkpoint", required=True, help="a run folder (its final snapshot, else "
                    "its newest) or a snapshot-*.pt file; read without running any code it holds")
    sp.add_argument("--sketch", required=True,
                    help="a sketch image, or a folder of them (searched recursively); a line "
                    "drawing is thresholded, a colour image made into a sketch with XDoG")
    sp.add_argument("--reference", default=None,
                    help="reference image or folder; fitted inside the sketch's working canvas "
                    "(aspect kept, white around it)")
    sp.add_argument("--out", required=True,
                    help="an image file (.png, .jpg, ...) for one sketch, or a folder (an existing "
                    "one, a name without a suffix, or a path ending in '/'), where each output "
                    "keeps its sketch's path below the sketch folder; never an input or a folder "
                    "inside one that is read (docs/robustness.md)")
    sp.add_argument("--device", default="cpu", help="where the generator runs: cpu (default), "
                    "cuda, cuda:1, ...")
    sp.add_argument("--size", type=int, default=None,
                    help="working size: the sketch's longer side is resized to this, aspect kept, "
                    "and padded with white to a multiple of 16 for the generator; a positive "
                    "multiple of 16, at most 2048 (default: the model's training resolution)")
    sp.add_argument("--lines", choices=("keep", "none"), default="keep",
                    help="how the colours get back to the sketch's size: 'keep' (default) "
                    "upsamples them bilinearly and draws the sketch's own full-resolution line "
                    "art in black on top; 'none' is the plain bilinear upsampling")


def colorize_main(args) -> None:
    for path in colorize_files(args.checkpoint, args.sketch, args.out, args.reference,
                               device=args.device, size=args.size, lines=args.lines):
        print(path)
