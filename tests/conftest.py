import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
