"""Datasets: item -> dict(image=(3,H,W) [-1,1], sketch=(1,H,W) +/-1, key=str).

"openmoji": embedded, in memory as uint8 (see openmoji.py).
"faces": DiceBear avatar faces, colours drawn independently of the shapes; in memory as uint8;
  sketch = XDoG of the image [S 6.3]; splits train, test and test-unseen (see faces.py).
"folder": any recursive image folder (CelebA img_align_celeba, ImageNet class folders,
  Danbooru crops, webtoon frames); sketch = XDoG of the image [S 6.3].
"edges2shoes": pix2pix layout, each file is A|B side by side: left the edge map (the given
  sketch, binarised), right the photo; files under root/train and root/test (or root/val).
The augmented-self reference is built later, batched, by augment.augmented_self.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import replace
from pathlib import Path

from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from ..config import DataConfig
from ..core.sketch import sketch_tensor, to_gray01, xdog
from . import faces, openmoji
from .imageio import (IMAGE_EXTENSIONS, BadImageError, check_image_header, load_rgb,
                      resize_center_crop, to_tensor)


def _hash_fraction(key: str, seed: int) -> float:
    digest = hashlib.sha1(f"{key}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def list_images(root) -> list[str]:
    """Sorted relative paths (posix) of all image files under `root`, hidden folders skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (set data.root)")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                out.append(Path(dirpath, name).relative_to(root).as_posix())
    if not out:
        raise ValueError(f"image folder {root} holds no image files "
                         f"(looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
    return sorted(out)


def _validate(root: Path, rel_paths: list[str]) -> tuple[list[str], list[str]]:
    """Split into (readable, unreadable) by a header check, once, with a progress bar."""
    good, bad = [], []
    for rel in tqdm(rel_paths, desc=f"checking images in {root.name}"):
        (bad if check_image_header(root / rel) else good).append(rel)
    return good, bad


class RenderedDataset(Dataset):
    """Rendered colour images and their sketch masks held in memory: subclasses set
    `images` (N,H,W,3 uint8), `inks` (N,H,W bool) and `keys`."""

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        return {"image": to_tensor(self.images[i]), "sketch": sketch_tensor(self.inks[i]),
                "key": self.keys[i]}


class OpenMojiDataset(RenderedDataset):
    def __init__(self, cfg: DataConfig, split: str, limit: int | None = None):
        data = openmoji.load_openmoji(cfg, limit=limit)
        idx = openmoji.split_indices(data.codes, cfg, split)
        if len(idx) == 0:
            raise ValueError(f"OpenMoji split {split!r} is empty (test_fraction="
                             f"{cfg.test_fraction}, {len(data.codes)} emoji)")
        self.images = data.images[idx]  # (N,H,W,3) uint8
        self.inks = openmoji.sketch_masks(data, cfg)[idx]  # (N,H,W) bool
        self.keys = [data.codes[i] for i in idx]
        self.skipped = list(data.skipped)


class FacesDataset(RenderedDataset):
    """DiceBear faces of one split, held in memory; items as OpenMojiDataset's."""

    def __init__(self, cfg: DataConfig, split: str, limit: int | None = None):
        data = faces.load_faces(cfg, split, limit=limit)
        self.images = data.images  # (N,H,W,3) uint8
        self.inks = faces.sketch_masks(data, cfg)  # (N,H,W) bool
        self.keys = data.keys  # "style/seed"
        self.skipped: list[str] = []  # every face renders; kept for the datasets' common surface


class FolderDataset(Dataset):
    def __init__(self, cfg: DataConfig, split: str):
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
        self.cfg = cfg
        self.root = Path(cfg.root)
        rel = list_images(self.root)
        want = split == "test"
        rel = [r for r in rel if (_hash_fraction(r, cfg.split_seed) < cfg.test_fraction) == want]
        self.skipped: list[str] = []
        if cfg.skip_bad:
            rel, self.skipped = _validate(self.root, rel)
            if self.skipped:
                warnings.warn(f"skipped {len(self.skipped)} unreadable files in {self.root}: "
                              f"{self.skipped[:5]}{' ...' if len(self.skipped) > 5 else ''}")
        if not rel:
            raise ValueError(f"split {split!r} of image folder {self.root} is empty")
        self.rel_paths = rel

    def __len__(self):
        return len(self.rel_paths)

    def _load(self, i):
        return load_rgb(self.root / self.rel_paths[i])

    def _load_or_none(self, i):
        """The decoded image; None when it passed the header check but fails to decode and
        skip_bad is set (the caller then takes the next file, deterministically)."""
        try:
            return self._load(i)
        except BadImageError:
            if not self.cfg.skip_bad:
                raise
            warnings.warn(f"unreadable image {self.root / self.rel_paths[i]} replaced by the next")
            return None

    def __getitem__(self, i):
        img = self._load_or_none(i)
        if img is None:
            return self[(i + 1) % len(self)]
        img = resize_center_crop(img, self.cfg.resolution)
        return {"image": to_tensor(img), "sketch": sketch_tensor(xdog(img, self.cfg)),
                "key": self.rel_paths[i]}


class Edges2ShoesDataset(FolderDataset):
    """Paired A|B files; the given edge map is the sketch (thresholded, no XDoG)."""

    def __init__(self, cfg: DataConfig, split: str):
        base = Path(cfg.root)
        names = ["train"] if split == "train" else ["test", "val"]
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
        folder = next((base / n for n in names if (base / n).is_dir()), None)
        if folder is None:
            raise FileNotFoundError(f"edges2shoes: none of {[str(base / n) for n in names]} exists")

        # All files of the folder belong to the split: the folder is the split.
        super().__init__(replace(cfg, root=str(folder), test_fraction=0.0), "train")
        self.cfg = cfg

    def __getitem__(self, i):
        path = self.root / self.rel_paths[i]
        img = self._load_or_none(i)
        if img is None:
            return self[(i + 1) % len(self)]
        h, w = img.shape[:2]
        if w < 2 or w % 2:
            raise BadImageError(path, f"width {w} is not two side-by-side halves (A|B)")
        edge, photo = img[:, : w // 2], img[:, w // 2:]
        res = self.cfg.resolution
        photo = resize_center_crop(photo, res)
        ink = to_gray01(resize_center_crop(edge, res)) < 0.5  # (H,W) bool; dark lines on white
        return {"image": to_tensor(photo), "sketch": sketch_tensor(ink), "key": self.rel_paths[i]}


def check_data(cfg: DataConfig) -> None:
    """What config.check_config cannot tell from the config alone: that the faces styles it
    names are installed (dicebear-styles), and that the unseen style is not trained on."""
    if cfg.dataset == "faces":
        faces.check_styles(cfg)


def build_dataset(cfg: DataConfig, split: str, limit: int | None = None) -> Dataset:
    """The dataset named by cfg.dataset; `limit` renders just the first N OpenMoji SVGs, or at
    most N faces per style of the faces split (tiny sets for tests).

    With cfg.val_holdout = N > 0, split "val" is the last N images of the training split and
    "train" the rest, so nothing selected on "val" has been trained on."""
    if split == "val" or (split == "train" and cfg.val_holdout):
        return holdout_split(cfg, split, limit)
    return dataset_split(cfg, split, limit)


def holdout_split(cfg: DataConfig, split: str, limit: int | None = None) -> Dataset:
    """Split "train" or "val" of a training split cut in two by cfg.val_holdout."""
    held = cfg.val_holdout
    if not held:
        raise ValueError(f"split 'val' needs data.val_holdout > 0 (images held out of the "
                         f"training split of {cfg.dataset!r}); it is {held}")
    full = dataset_split(cfg, "train", limit)
    if held >= len(full):
        raise ValueError(f"data.val_holdout={held} leaves no training images: the training split "
                         f"of {cfg.dataset!r} has {len(full)}")
    keep = len(full) - held
    return Subset(full, range(keep) if split == "train" else range(keep, len(full)))


def dataset_split(cfg: DataConfig, split: str, limit: int | None = None) -> Dataset:
    """One split of the dataset named by cfg.dataset, as its module defines the splits."""
    if cfg.dataset == "openmoji":
        return OpenMojiDataset(cfg, split, limit=limit)
    if cfg.dataset == "faces":
        return FacesDataset(cfg, split, limit=limit)
    if cfg.dataset == "folder":
        return FolderDataset(cfg, split)
    if cfg.dataset == "edges2shoes":
        return Edges2ShoesDataset(cfg, split)
    raise ValueError(f"unknown data.dataset {cfg.dataset!r}; use 'openmoji', 'faces', 'folder' "
                     f"or 'edges2shoes'")
