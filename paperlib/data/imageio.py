"""Robust image loading and the uint8 <-> [-1, 1] tensor conventions.

Every loader in the data pipeline goes through `load_rgb`, so every odd file (truncated,
not an image, grayscale, alpha, palette, 16-bit, CMYK, animated, too large, a broken or
looping symbolic link) is handled, or rejected with a `BadImageError` that names the file, in
exactly one place.

Decompression-bomb policy: an image may have at most max_pixels() pixels (64 megapixels, e.g.
8192 x 8192; $PAPERLIB_MAX_PIXELS changes it). The size is read from the file's header and
checked before any pixel is decoded, so a small file claiming a huge size costs nothing. Such
files are rejected with the limit in the message; in training data they count as unreadable
(`data.skip_bad` skips and counts them).
"""
from __future__ import annotations

import io
import os
import re
import warnings

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# File names taken for images wherever a folder is listed (datasets, colorize), lower case.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm")
# Largest image accepted (pixels), checked from the header before decoding: 64 MP decodes to
# ~200 MB of RGB and a few times that in float intermediates (XDoG, colorize at full size),
# well within a workstation; PIL's own guard only warns up to 179 MP.
DEFAULT_MAX_PIXELS = 8192 * 8192


def max_pixels() -> int:
    return int(os.environ.get("PAPERLIB_MAX_PIXELS", DEFAULT_MAX_PIXELS))


class BadImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")

    def __reduce__(self):
        # so that a data-loading worker can hand it to the parent process intact
        return type(self), (self.path, self.reason)


def _open_checked(path) -> Image.Image:
    return _open_and_decode(path, path)


def _open_and_decode(source, name, limit: int | None = None) -> Image.Image:
    """Open `source` (a path or a binary file object) and decode its pixels; any failure is a
    BadImageError naming `name`. The size is read from the header and checked against `limit`
    (default max_pixels()) before a single pixel is decoded."""
    # Truncated files must fail rather than come back half grey, whatever another library
    # set globally; PIL's default is already False.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; truncated images "
                           "would load silently. Reset it to False.")
    img = _open_header(source, name, limit)
    try:
        img.load()  # decodes the full pixel data: truncation is detected here, not at open()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        img.close()
        raise BadImageError(name, f"{type(exc).__name__}: {exc}") from None
    return img


def _open_header(source, name=None, limit: int | None = None) -> Image.Image:
    """Image.open (header only, nothing decoded) with the checks that need no pixels: a path
    exists and is a file, the format is known, the size is within `limit` (default
    max_pixels())."""
    name = source if name is None else name
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        if os.path.islink(source):
            raise BadImageError(name, "a broken or looping symbolic link")
        raise BadImageError(name, "is a folder, not a file" if os.path.isdir(source) else "no such file")
    limit = max_pixels() if limit is None else limit
    hint = ("decompression-bomb guard, checked from the header before decoding; set "
            "PAPERLIB_MAX_PIXELS to raise it")
    try:
        with warnings.catch_warnings():
            # our own limit applies; PIL's warning threshold would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image file (no image format PIL knows starts it)") from None
    except Image.DecompressionBombError as exc:  # PIL's own guard, above 2 x its limit (179 MP)

        n = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(n.group(1)):,} pixels is" if n else "it is"
        # PIL refuses above twice its own limit whatever ours is: name the one that applied.
        limit = min(limit, 2 * (Image.MAX_IMAGE_PIXELS or limit))
        raise BadImageError(name, f"{size} over the {limit:,}-pixel limit ({hint})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(name, f"{type(exc).__name__}: {exc}") from None
    w, h = img.size
    if w * h > limit:
        img.close()
        raise BadImageError(name, f"{w} x {h} = {w * h:,} pixels is over the {limit:,}-pixel "
                                  f"limit ({hint})")
    if w < 1 or h < 1:
        img.close()
        raise BadImageError(name, f"has no pixels ({w} x {h})")
    return img


def _high_bit_to_u8(arr: np.ndarray) -> np.ndarray:
    """16-bit (or 32-bit int) grey data -> uint8; 16-bit full range 0..65535 maps to 0..255."""
    arr = arr.astype(np.float64)
    scale = 255.0 / 65535.0 if arr.max(initial=0) <= 65535 else 255.0 / arr.max()
    return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H,W,4) uint8 -> (H,W,3) uint8, transparent parts become white paper."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def pil_to_rgb(img: Image.Image, path="<image>") -> np.ndarray:
    """Any PIL mode -> (H,W,3) uint8 RGB; alpha is composited on white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = _high_bit_to_u8(np.asarray(img))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "P":
        # Palette images may carry transparency in the palette; let PIL resolve it.
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        return _composite_on_white(np.asarray(img, dtype=np.uint8))
    if mode in ("1", "L"):
        grey = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    try:
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    except (OSError, ValueError) as exc:
        raise BadImageError(path, f"unsupported image mode {mode!r}: {exc}") from None


def load_rgb(path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    An EXIF orientation tag is applied (`upright`). Grayscale is replicated to three channels,
    alpha (RGBA/LA/palette transparency) is composited on white, palette and CMYK are converted, 16-bit data is scaled by
    255/65535. Unreadable, truncated or non-image files raise `BadImageError(path, reason)`.
    """
    return _to_rgb_checked(_open_checked(path), path)


def decode_rgb(data: bytes, name: str = "<upload>", max_pixels: int | None = None) -> np.ndarray:
    """`load_rgb` for the bytes of an uploaded file: (H, W, 3) uint8 RGB, or a BadImageError
    naming `name`. Images over `max_pixels` (default: the max_pixels() limit) are refused from
    their header alone."""
    return _to_rgb_checked(_open_and_decode(io.BytesIO(bytes(data)), name, max_pixels), name)


EXIF_ORIENTATION = 0x0112  # the EXIF tag: 1 is upright; 2-8 are the mirrored and rotated storages


def upright(img: Image.Image) -> Image.Image:
    """`img` as it is meant to be seen: a camera JPEG stored sideways with an EXIF orientation
    tag is rotated (or mirrored) accordingly, as every image viewer shows it. Images without
    the tag, or with a damaged EXIF block, are returned as they are."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block fails in many ways; the pixels are still good
        return img
    if orientation not in range(2, 9):
        return img
    turned = ImageOps.exif_transpose(img)
    img.close()
    return turned


def _to_rgb_checked(img: Image.Image, name) -> np.ndarray:
    try:
        img = upright(img)
        out = pil_to_rgb(img, name)
    finally:
        img.close()
    if out.ndim != 3 or out.shape[2] != 3 or out.shape[0] == 0 or out.shape[1] == 0:
        raise BadImageError(name, f"decoded to unexpected shape {out.shape}")
    return out


def check_image_header(path) -> str | None:
    """Cheap validity check (header and, for PNG, chunk checksums; no decode): None if fine,
    else the reason. Includes the pixel limit, so decompression bombs are caught here."""
    try:
        with _open_header(path) as img:
            fmt = img.format
            img.verify()
        if fmt == "JPEG" and not _ends_with_jpeg_eoi(path):
            # verify() checks nothing in a JPEG; a cut-off one lacks its end marker. Only
            # those (and files with trailing data) pay for a full decode to be sure.
            with Image.open(path) as img:
                img.load()
    except BadImageError as exc:
        return exc.reason
    except Exception as exc:  # verify() raises many types; all mean "unreadable"
        return f"{type(exc).__name__}: {exc}"
    return None


def _ends_with_jpeg_eoi(path) -> bool:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 64))
        return f.read().rstrip(b"\0\r\n ").endswith(b"\xff\xd9")


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Scale the shorter side to `size`, then crop the centre square: (size, size, 3) uint8.

    Downscaling uses area averaging (no aliasing); images smaller than `size` are upscaled
    bilinearly rather than padded, so every sample fills the frame (a soft but complete image
    is a better training target than a mostly-padding one).
    """
    import cv2  # OpenCV is large: loaded by the functions that resize or filter

    h, w = img.shape[:2]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (new_w, new_h), interpolation=interp)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size])


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    import cv2  # OpenCV is large: loaded by the functions that resize or filter

    if (h, w) == img.shape[:2]:
        return img
    shrink = h < img.shape[0] or w < img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_long_side(img: np.ndarray, size: int) -> np.ndarray:
    """Scale so the longer side is `size`, keeping the aspect ratio (the shorter side is
    rounded, at least 1 px); nothing is cropped. (H,W,C) or (H,W) uint8 in, same out."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    return np.ascontiguousarray(_resize(img, max(1, round(h * scale)), max(1, round(w * scale))))


def fit_inside(img: np.ndarray, h: int, w: int, fill: int = 255) -> np.ndarray:
    """Scale `img` (aspect kept) to the largest size that fits in h x w and centre it on a
    canvas of `fill` (white paper by default): (h, w, C) uint8, nothing cropped."""
    ih, iw = img.shape[:2]
    scale = min(h / ih, w / iw)
    nh, nw = min(h, max(1, round(ih * scale))), min(w, max(1, round(iw * scale)))
    canvas = np.full((h, w) + img.shape[2:], fill, np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top:top + nh, left:left + nw] = _resize(img, nh, nw)
    return canvas


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 -> (3,H,W) float32 in [-1, 1]."""
    if not img.flags.writeable:  # torch warns on wrapping a read-only buffer; copy it instead
        img = img.copy()
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()  # (3,H,W)
    return t / 127.5 - 1.0


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3,H,W) or (1,H,W) float in [-1, 1] -> (H,W,3) or (H,W) uint8."""
    t = t.detach().float().cpu()
    arr = ((t.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()  # (H,W,C)
    return arr[..., 0] if arr.shape[2] == 1 else np.ascontiguousarray(arr)
