"""The grid files training and the studies write (paperlib.core.grid): every image lands in its
own cell, in its own colours, whatever the image size."""
import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.core.grid import mosaic, save_grid


def flat_columns(n_rows: int, size: int) -> tuple[list[torch.Tensor], np.ndarray]:
    """Columns of flat images, each cell its own colour; the (rows, cols, 3) colours in [0, 1].
    Column 0 is a one-channel sketch (grey)."""
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.1, 0.9, size=(n_rows, 3, 3)).astype(np.float32)
    colours[:, 0] = colours[:, 0, :1]  # the sketch column is grey
    columns = [torch.from_numpy(colours[:, 0, :1] * 2 - 1)[:, :, None, None].expand(-1, 1, size, size)]
    for c in (1, 2):
        columns.append(torch.from_numpy(colours[:, c] * 2 - 1)[:, :, None, None]
                       .expand(-1, 3, size, size))
    return columns, colours


@pytest.mark.parametrize("size", [32, 256])
def test_each_image_has_its_cell_and_the_gaps_are_white(size):
    columns, colours = flat_columns(4, size)
    out = mosaic(columns)
    gap = size // 16
    assert out.shape == (4 * size + 3 * gap, 3 * size + 2 * gap, 3)
    for r in range(4):
        for c in range(3):
            y, x = r * (size + gap), c * (size + gap)
            cell = out[y:y + size, x:x + size]
            assert np.allclose(cell, colours[r, c], atol=1e-6), (r, c)
    assert np.all(out[size:size + gap] == 1) and np.all(out[:, size:size + gap] == 1)


def test_columns_of_another_size_are_named():
    columns, _ = flat_columns(2, 32)
    with pytest.raises(ValueError, match=r"grid column 2 is \(2, 3, 16, 16\)"):
        mosaic(columns[:2] + [torch.zeros(2, 3, 16, 16)])


def test_the_file_has_the_figure_size_and_every_cell_its_colour(tmp_path):
    columns, colours = flat_columns(8, 32)
    path = tmp_path / "sub" / "grid.png"
    save_grid(columns, path, titles=["sketch", "reference", "output"])
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
    # 1.6 inches an image at 100 dpi, and 0.3 inches of titles
    assert img.shape[:2] == (8 * 160 + 30, 3 * 160)
    top = 30
    for r in range(8):
        for c in range(3):
            y, x = top + int((r + 0.5) * 160 * (1 - 0.01)), int((c + 0.5) * 160)
            assert np.allclose(img[y, x], colours[r, c], atol=2 / 255), (r, c)
    assert (img[:top] < 0.5).any()  # the titles are drawn above the images
