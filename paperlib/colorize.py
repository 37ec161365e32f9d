"""Colour sketches with a trained generator, from files or from tensors.

A sketch may be a line drawing (thresholded) or a colour image (made into a binary sketch with
the same XDoG as training). Images of any common format and size are resized and centre-cropped
to the model's training resolution. No reference means the paper's zero-filled reference [S 6.5].
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from .imageio import BadImageError, load_rgb, resize_center_crop, to_tensor, to_uint8
from .sketch import binarize_sketch_image, sketch_tensor
from .snapshot import load_generator

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@torch.no_grad()
def colorize_tensors(G, sketch: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """sketch (B,1,H,W) in {-1,+1}, reference (B,3,H,W) in [-1,1] or None -> (B,3,H,W) in [-1,1]."""
    device = next(G.parameters()).device
    ref = None if reference is None else reference.to(device)
    out, _ = G(sketch.to(device), ref)
    return out.float().cpu()


def load_sketch(path, resolution: int, data_cfg) -> torch.Tensor:
    """(1, H, W) in {-1, +1}: a line drawing thresholded, a colour image through XDoG."""
    img = resize_center_crop(load_rgb(path), resolution)
    return sketch_tensor(binarize_sketch_image(img, data_cfg))


def load_reference(path, resolution: int) -> torch.Tensor:
    return to_tensor(resize_center_crop(load_rgb(path), resolution))


def _listing(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return [path]


def colorize_files(checkpoint, sketch, out, reference=None, device: str = "cpu",
                   progress: bool = True) -> list[Path]:
    """Colour one sketch file or a folder of them; `reference` is a file, a folder (paired by
    sorted order, cycled if shorter) or None. `out` is a file for one sketch, else a folder."""
    G, config, _ = load_generator(checkpoint, device)
    res = config.data.resolution
    sketches = _listing(Path(sketch))
    refs = _listing(Path(reference)) if reference is not None else None
    out = Path(out)
    single = len(sketches) == 1 and out.suffix.lower() in IMAGE_SUFFIXES
    if not single:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, s_path in enumerate(tqdm(sketches, desc="colorize",
                                    **({} if progress and len(sketches) > 1 else {"disable": True}))):
        s = load_sketch(s_path, res, config.data)[None]
        r = load_reference(refs[i % len(refs)], res)[None] if refs else None
        img = to_uint8(colorize_tensors(G, s, r)[0])
        target = out if single else out / (s_path.stem + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image
        Image.fromarray(img).save(target)
        written.append(target)
    return written


__all__ = ["colorize_tensors", "colorize_files", "load_sketch", "load_reference", "BadImageError"]
