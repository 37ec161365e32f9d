"""study.figures: which query cells the attention figure shows."""
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
