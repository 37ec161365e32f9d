"""Colorize at any size: padding to the encoders' stride, aspect kept, output at the sketch's size."""
import numpy as np
import pytest
import torch

from paperlib.app.colorize import check_size, colorize_image, colorize_tensors, crop_box, pad_to_multiple
from paperlib.config import get_profile
from paperlib.data.imageio import fit_inside
from paperlib.core.model import Generator


@pytest.fixture(scope="module")
def smoke():
    torch.manual_seed(0)
    c = get_profile("smoke")
    return Generator(c.model).eval(), c


def bordered_drawing(h=40, w=100, border=5):
    """A wide line drawing: a black frame touching all four edges and one stroke inside."""
    img = np.full((h, w, 3), 255, np.uint8)
    img[:border] = img[-border:] = 0
    img[:, :border] = img[:, -border:] = 0
    img[h // 2 - 2:h // 2 + 2, w // 4:3 * w // 4] = 0
    return img


@pytest.mark.parametrize("hw", [(1, 1), (17, 31), (13, 32), (40, 100), (33, 16), (32, 32)])
def test_pad_then_crop_round_trips_for_odd_sizes(hw):
    h, w = hw
    x = torch.randn(2, 3, h, w)
    padded, box = pad_to_multiple(x, 16, value=1.0)
    H, W = padded.shape[-2:]
    assert H % 16 == 0 and W % 16 == 0 and H - h < 16 and W - w < 16
    assert torch.equal(crop_box(padded, box), x)
    mask = torch.ones(H, W, dtype=torch.bool)
    mask[box[0]:box[0] + h, box[1]:box[1] + w] = False
    assert (padded[..., mask] == 1.0).all()  # the padding is white paper
    top, left = box[:2]
    assert abs(top - (H - h - top)) <= 1 and abs(left - (W - w - left)) <= 1  # centred


@pytest.mark.parametrize("bad", [50, 0, -16, 8, 100, 33.0, True])
def test_size_not_a_positive_multiple_of_16_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match=rf"size {bad!r}.*multiple of 16"):
        check_size(bad, 16)


def test_good_sizes_pass():
    assert check_size(48, 16) == 48 and check_size(np.int64(256), 16) == 256


def test_colorize_tensors_at_training_size_equals_plain_generator(smoke):
    G, c = smoke
    res = c.data.resolution
    g = torch.Generator().manual_seed(1)
    s = torch.where(torch.rand(2, 1, res, res, generator=g) < 0.1, -1.0, 1.0)
    r = torch.rand(2, 3, res, res, generator=g) * 2 - 1
    with torch.no_grad():
        for ref in (r, None):
            assert torch.equal(colorize_tensors(G, s, ref), G(s, ref)[0])


@pytest.mark.parametrize("hw", [(40, 100), (37, 53), (20, 16)])
def test_colorize_tensors_any_size_is_the_padded_call_cropped(smoke, hw):
    G, _ = smoke
    g = torch.Generator().manual_seed(2)
    s = torch.where(torch.rand(1, 1, *hw, generator=g) < 0.1, -1.0, 1.0)
    r = torch.rand(1, 3, *hw, generator=g) * 2 - 1
    out = colorize_tensors(G, s, r)
    assert out.shape == (1, 3, *hw)
    sp, box = pad_to_multiple(s, 16)
    rp, _ = pad_to_multiple(r, 16)
    with torch.no_grad():
        assert torch.equal(out, crop_box(G(sp, rp)[0], box))


def test_fit_inside_keeps_aspect_and_pads_with_white():
    tall = np.zeros((100, 40, 3), np.uint8)  # a black tall reference in a wide 13x32 canvas
    out = fit_inside(tall, 13, 32)
    assert out.shape == (13, 32, 3)
    cols = np.where((out < 128).all(axis=(0, 2)))[0]  # fully black columns: the fitted image
    assert len(cols) == 5 and cols[0] > 0 and cols[-1] < 31  # 40/100 * 13 ~ 5 px wide, centred
    assert (out[:, :cols[0]] == 255).all() and (out[:, cols[-1] + 1:] == 255).all()


def test_non_square_sketch_keeps_its_size_and_nothing_is_cut_off(smoke):
    G, c = smoke
    img = bordered_drawing(40, 100)
    ref = np.full((30, 30, 3), 200, np.uint8)
    seen = []
    hook = G.register_forward_pre_hook(lambda m, args: seen.append((args[0].clone(), args[1])))
    try:
        outs = {lines: colorize_image(G, img, ref, data_cfg=c.data, size=c.data.resolution,
                                      lines=lines) for lines in ("keep", "none")}
    finally:
        hook.remove()
    for out in outs.values():
        assert out.shape == (40, 100, 3) and out.dtype == np.uint8
    # The generator saw the whole drawing at 13x32 (longer side 32), padded with paper to 16x32.
    s, r = seen[0]
    assert s.shape == (1, 1, 16, 32) and r.shape == (1, 3, 16, 32)
    ink = s[0, 0] < 0
    rows = torch.where(ink.any(dim=1))[0]
    cols = torch.where(ink.any(dim=0))[0]
    assert cols[0] == 0 and cols[-1] == 31  # the frame's left and right sides are both there
    assert rows[-1] - rows[0] + 1 == 13  # top to bottom side: all 13 working rows
    assert (s[0, 0, :rows[0]] == 1).all() and (s[0, 0, rows[-1] + 1:] == 1).all()  # paper pad
    # lines="keep": the full-resolution frame is drawn at all four edges of the output ...
    keep, none = outs["keep"], outs["none"]
    for edge in (keep[0], keep[-1], keep[:, 0], keep[:, -1]):
        assert (edge == 0).all()
    # ... and differs from lines="none" (plain upsampling) only on the sketch's ink.
    full_ink = img[..., 0] == 0
    assert (keep[full_ink] == 0).all() and np.array_equal(keep[~full_ink], none[~full_ink])
    assert not (none[full_ink] == 0).all()


def test_lines_option_is_validated(smoke):
    G, c = smoke
    with pytest.raises(ValueError, match="lines"):
        colorize_image(G, bordered_drawing(), data_cfg=c.data, size=32, lines="thin")
    with pytest.raises(ValueError, match="size 40"):
        colorize_image(G, bordered_drawing(), data_cfg=c.data, size=40)


def test_a_folder_of_sketches_is_listed_with_the_datasets_image_extensions(smoke, tmp_path):
    """colorize takes from a folder the files the folder dataset would (imageio's one list,
    any case), and nothing else."""
    from PIL import Image

    from paperlib.data.imageio import IMAGE_EXTENSIONS
    from paperlib.app.colorize import colorize_files
    from paperlib.training.snapshot import save_snapshot

    G, c = smoke
    save_snapshot(G, c, 0, tmp_path / "snapshot-final.pt")
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    assert ".ppm" in IMAGE_EXTENSIONS
    for name in ("a.png", "b.PPM", "c.JPG"):
        Image.fromarray(bordered_drawing(32, 32)).save(sketches / name)
    (sketches / "notes.txt").write_text("not a sketch")
    written = colorize_files(tmp_path / "snapshot-final.pt", sketches, tmp_path / "out",
                             progress=False)
    assert sorted(p.name for p in written) == ["a.png", "b.png", "c.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no image files \(.*\.ppm"):
        colorize_files(tmp_path / "snapshot-final.pt", tmp_path / "empty", tmp_path / "x")
