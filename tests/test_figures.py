"""study.figures: which query cells the attention figure shows, and the README picture."""
import torch

from paperlib.study.figures import pick_queries


def test_cells_with_equal_ink_are_picked_in_raster_order():
    """An 8x8 grid of 8-pixel cells, all with the same ink: every cell ties, and the picks are
    the first cells in raster order that keep a Manhattan distance of 8 // 3 = 2 from the
    earlier ones, whatever order the sort of the CPU or device returns ties in."""
    sketch = torch.full((1, 64, 64), -1.0)  # ink (< 0) everywhere
    mask = torch.ones(64, dtype=torch.bool)
    assert pick_queries(sketch, mask, 4) == [0, 2, 4, 6]
    # cells outside the mask are never picked; the tie among the rest is still settled by position
    mask[:8] = False
    assert pick_queries(sketch, mask, 4) == [8, 10, 12, 14]


def test_the_most_inked_cells_come_first():
    sketch = torch.ones(1, 64, 64)  # blank paper
    sketch[0, 40:48, 16:24] = -1.0  # cell (5, 2) = 42 fully inked
    sketch[0, 8:12, 48:56] = -1.0  # cell (1, 6) = 14 half inked
    picks = pick_queries(sketch, torch.ones(64, dtype=torch.bool), 4)
    # then the blank cells, tied, in raster order: 0 is far enough from both, 1 is next to 0
    assert picks == [42, 14, 0, 2]


def fake_grid(path, size, colour):
    """A stand-in for notebook 07's fig_reference_grid.png: coloured squares on a white page."""
    import numpy as np
    from PIL import Image

    img = np.full((size, size, 4), 255, np.uint8)
    img[size // 8: size // 2, size // 8: size // 2, :3] = colour
    img[size // 2:, size // 2:, 3] = 0  # transparent, as matplotlib may leave the page
    Image.fromarray(img).save(path)
    return path


def test_the_readme_figure_puts_both_grids_side_by_side(tmp_path):
    from PIL import Image

    from paperlib.study.figures import README_WIDTH, readme_figure

    grids = {"openmoji": fake_grid(tmp_path / "a.png", 300, (200, 30, 30)),
             "faces": fake_grid(tmp_path / "b.png", 200, (30, 30, 200))}
    out = readme_figure(grids, tmp_path / "out" / "fig_readme.png")
    assert out == tmp_path / "out" / "fig_readme.png"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width == README_WIDTH
        # two square grids side by side under a title band: about half as tall as wide
        assert README_WIDTH // 2 < im.height < README_WIDTH // 2 + 80
        rgb = im.convert("RGB")
        # the middle of each grid's coloured square (5/16 across and down a half-width panel)
        x, y = README_WIDTH * 5 // 32, README_WIDTH * 5 // 32 + 50
        left, right = rgb.getpixel((x, y)), rgb.getpixel((README_WIDTH // 2 + x, y))
        assert left[0] > 150 > left[2] and right[2] > 150 > right[0]  # each grid on its side
        assert rgb.getpixel((2, 2)) == (255, 255, 255)  # the page stays white after the palette
        # a transparent corner of a grid reads as the page
        assert rgb.getpixel((README_WIDTH // 2 - 30, im.height - 15)) == (255, 255, 255)
    assert out.stat().st_size < 400_000


def test_the_readme_figure_needs_every_grid(tmp_path):
    from paperlib.study.figures import readme_figure

    grids = {"openmoji": fake_grid(tmp_path / "a.png", 120, (200, 30, 30)),
             "faces": tmp_path / "missing.png"}
    assert readme_figure(grids, tmp_path / "fig_readme.png") is None
    assert not (tmp_path / "fig_readme.png").exists()
