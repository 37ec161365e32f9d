"""Bad inputs for the `train`, `evaluate` and `colorize` commands, as one table.

Each case is (input class, command, what it is): the command either handles the input
correctly (odd but valid images are converted; `data.skip_bad` skips and counts unreadable
ones) or stops with ONE `error: ...` line naming the file or value, exit status 2, and no
traceback. The classes handled are counted in the "what survives what" summary.
"""
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.__main__ import main
from paperlib.data.imageio import DEFAULT_MAX_PIXELS, BadImageError, load_rgb

# ----------------------------------------------------------------------- the odd files


def drawing(size=32, seed=0):
    from conftest import draw_shapes

    return draw_shapes(np.random.default_rng(seed), size)


def good_png(path, seed=0):
    Image.fromarray(drawing(32, seed)).save(path)
    return path


def truncated_png(path):
    good_png(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def truncated_jpeg(path):
    Image.fromarray(drawing(64)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def text_png(path):
    path.write_text("these are notes, not a picture\n")
    return path


def one_pixel(path):
    Image.new("RGB", (1, 1), (200, 40, 40)).save(path)
    return path


def bomb_png(path, side=20_000):
    """A valid PNG header claiming side x side RGB pixels, a few hundred bytes on disk: the
    guard must refuse it from the header, without decoding (or allocating) anything."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * side) * 4)  # only 4 of the rows: never decoded
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


def cmyk_jpeg(path):
    Image.fromarray(drawing(32)).convert("CMYK").save(path, quality=95)
    return path


def grey16_png(path):
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    Image.fromarray(ramp).save(path)  # mode I;16
    return path


def rgb16_png(path):
    import cv2

    img = drawing(32).astype(np.uint16) * 257  # 8-bit values in 16 bits: exact round trip
    cv2.imwrite(str(path), img[..., ::-1])  # cv2 writes BGR
    return path


def animated_gif(path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def symlink_loops(folder):
    """A folder symlinked to itself and a file symlinked to itself."""
    (folder / "loop").symlink_to(".", target_is_directory=True)
    (folder / "self.png").symlink_to("self.png")
    return folder / "self.png"


# ------------------------------------------------------------------------ the commands
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step smoke run (snapshot) to evaluate and colorize with."""
    from paperlib.config import get_profile, override
    from paperlib.training.loop import train

    base = tmp_path_factory.mktemp("bad_inputs")
    data = base / "data"
    data.mkdir()
    for i in range(4):
        good_png(data / f"g{i}.png", seed=i)
    c = override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(data),
                                        "data.test_fraction": 0.0, "train.max_steps": 2,
                                        "train.batch_size": 2})
    train(c, base / "run", progress=False)
    return base / "run"


def folder_with(tmp, *makers, good=1):
    """A data folder: `good` ordinary drawings plus one file from each maker."""
    root = tmp / "data"
    root.mkdir()
    for i in range(good):
        good_png(root / f"good{i}.png", seed=i)
    names = {truncated_png: "cut.png", truncated_jpeg: "cut.jpg", text_png: "notes.png",
             one_pixel: "dot.png", bomb_png: "bomb.png", cmyk_jpeg: "cmyk.jpg",
             grey16_png: "grey16.png", rgb16_png: "rgb16.png", animated_gif: "anim.gif"}
    for make in makers:
        make(root / names[make])
    return root


def train_args(root, run, n_files, *sets):
    # Batch = all files, so the single step loads every one of them.
    out = ["train", "--profile", "smoke", "--dataset", "folder", "--root", str(root),
           "--run-dir", str(run), "--set", "data.test_fraction=0", "--set", "train.max_steps=1",
           "--set", f"train.batch_size={n_files}"]
    for s in sets:
        out += ["--set", s]
    return out


def eval_args(ckpt, root):
    return ["evaluate", "--checkpoint", str(ckpt), "--dataset", "folder", "--root", str(root),
            "--split", "train"]


def colorize_args(ckpt, sketch, out, reference=None, *extra):
    args = ["colorize", "--checkpoint", str(ckpt), "--sketch", str(sketch), "--out", str(out)]
    return args + (["--reference", str(reference)] if reference else []) + list(extra)


def error(*needles):
    return ("error", needles)


def ok(check=None):
    return ("ok", check)


def skipped(n):
    return ("skipped", n)


def output_size(path, size):
    def check():
        assert Image.open(path).size == size
    return check


# Each case: (class, command, description, build(tmp, snapshot_run) -> (argv, expectation)).
CASES = [
    ("missing path", "train", "--root does not exist",
     lambda t, r: (train_args(t / "nope", t / "run", 2), error("nope", "does not exist"))),
    ("missing path", "evaluate", "--checkpoint does not exist",
     lambda t, r: (eval_args(t / "norun", t), error("norun"))),
    ("missing path", "evaluate", "--root does not exist",
     lambda t, r: (eval_args(r, t / "nope"), error("nope", "does not exist"))),
    ("missing path", "colorize", "--sketch does not exist",
     lambda t, r: (colorize_args(r, t / "nope.png", t / "o.png"), error("nope.png"))),
    ("missing path", "colorize", "--reference does not exist",
     lambda t, r: (colorize_args(r, good_png(t / "s.png"), t / "o.png", t / "noref.png"),
                   error("noref.png"))),
    ("empty folder", "train", "--root holds no images",
     lambda t, r: (train_args(folder_with(t, good=0), t / "run", 2), error("data", "no image files"))),
    ("empty folder", "evaluate", "--root holds no images",
     lambda t, r: (eval_args(r, folder_with(t, good=0)), error("data", "no image files"))),
    ("empty folder", "colorize", "--sketch is an empty folder",
     lambda t, r: (colorize_args(r, folder_with(t, good=0), t / "outs"), error("data", "no image files"))),
    ("truncated PNG", "train", "in the data folder",
     lambda t, r: (train_args(folder_with(t, truncated_png), t / "run", 2), error("cut.png"))),
    ("truncated PNG", "train", "skipped and counted with data.skip_bad",
     lambda t, r: (train_args(folder_with(t, truncated_png, good=2), t / "run", 2,
                              "data.skip_bad=true"), skipped(1))),
    ("truncated PNG", "evaluate", "in the data folder",
     lambda t, r: (eval_args(r, folder_with(t, truncated_png, good=2)), error("cut.png"))),
    ("truncated PNG", "colorize", "as the sketch",
     lambda t, r: (colorize_args(r, truncated_png(t / "cut.png"), t / "o.png"), error("cut.png"))),
    ("truncated JPEG", "train", "in the data folder",
     lambda t, r: (train_args(folder_with(t, truncated_jpeg), t / "run", 2), error("cut.jpg"))),
    ("truncated JPEG", "train", "skipped and counted with data.skip_bad",
     lambda t, r: (train_args(folder_with(t, truncated_jpeg, good=2), t / "run", 2,
                              "data.skip_bad=true"), skipped(1))),
    ("truncated JPEG", "colorize", "as the reference",
     lambda t, r: (colorize_args(r, good_png(t / "s.png"), t / "o.png", truncated_jpeg(t / "cut.jpg")),
                   error("cut.jpg"))),
    ("text file named .png", "train", "in the data folder",
     lambda t, r: (train_args(folder_with(t, text_png), t / "run", 2), error("notes.png"))),
    ("text file named .png", "train", "skipped and counted with data.skip_bad",
     lambda t, r: (train_args(folder_with(t, text_png, good=2), t / "run", 2,
                              "data.skip_bad=true"), skipped(1))),
    ("text file named .png", "evaluate", "in the data folder",
     lambda t, r: (eval_args(r, folder_with(t, text_png, good=2)), error("notes.png"))),
    ("text file named .png", "colorize", "as the sketch",
     lambda t, r: (colorize_args(r, text_png(t / "notes.png"), t / "o.png"), error("notes.png"))),
    ("1x1 image", "train", "upscaled like any small image",
     lambda t, r: (train_args(folder_with(t, one_pixel), t / "run", 2), ok())),
    ("1x1 image", "evaluate", "upscaled like any small image",
     lambda t, r: (eval_args(r / "snapshot-final.pt", folder_with(t, one_pixel, good=2)), ok())),
    ("1x1 image", "colorize", "as sketch and reference: a 1x1 output",
     lambda t, r: (colorize_args(r, one_pixel(t / "dot.png"), t / "o.png", one_pixel(t / "ref.png")),
                   ok(output_size(t / "o.png", (1, 1))))),
    ("20,000 x 20,000 image (decompression bomb)", "train", "in the data folder",
     lambda t, r: (train_args(folder_with(t, bomb_png), t / "run", 2),
                   error("bomb.png", "pixel limit", "decompression-bomb"))),
    ("20,000 x 20,000 image (decompression bomb)", "train", "skipped and counted with data.skip_bad",
     lambda t, r: (train_args(folder_with(t, bomb_png, good=2), t / "run", 2,
                              "data.skip_bad=true"), skipped(1))),
    ("20,000 x 20,000 image (decompression bomb)", "evaluate", "in the data folder",
     lambda t, r: (eval_args(r, folder_with(t, bomb_png, good=2)), error("bomb.png", "pixel limit"))),
    ("20,000 x 20,000 image (decompression bomb)", "colorize", "as the sketch",
     lambda t, r: (colorize_args(r, bomb_png(t / "bomb.png"), t / "o.png"),
                   error("bomb.png", "pixel limit"))),
    ("CMYK JPEG", "train", "converted to RGB",
     lambda t, r: (train_args(folder_with(t, cmyk_jpeg), t / "run", 2), ok())),
    ("CMYK JPEG", "colorize", "as sketch and reference",
     lambda t, r: (colorize_args(r, cmyk_jpeg(t / "c.jpg"), t / "o.png", cmyk_jpeg(t / "r.jpg")),
                   ok(output_size(t / "o.png", (32, 32))))),
    ("16-bit PNG", "train", "grey and RGB, scaled to 8 bits",
     lambda t, r: (train_args(folder_with(t, grey16_png, rgb16_png), t / "run", 3), ok())),
    ("16-bit PNG", "colorize", "16-bit sketch, 16-bit reference",
     lambda t, r: (colorize_args(r, grey16_png(t / "g.png"), t / "o.png", rgb16_png(t / "r.png")),
                   ok(output_size(t / "o.png", (32, 32))))),
    ("animated GIF", "train", "its first frame",
     lambda t, r: (train_args(folder_with(t, animated_gif), t / "run", 2), ok())),
    ("animated GIF", "colorize", "its first frame as the reference",
     lambda t, r: (colorize_args(r, good_png(t / "s.png"), t / "o.png", animated_gif(t / "a.gif")),
                   ok(output_size(t / "o.png", (32, 32))))),
    ("symlink loop in a data folder", "train", "folder loop ignored, file loop named",
     lambda t, r: (train_args(_with_loops(folder_with(t, good=2)), t / "run", 3),
                   error("self.png", "looping symbolic link"))),
    ("symlink loop in a data folder", "train", "skipped and counted with data.skip_bad",
     lambda t, r: (train_args(_with_loops(folder_with(t, good=2)), t / "run", 2,
                              "data.skip_bad=true"), skipped(1))),
    ("symlink loop in a data folder", "colorize", "a sketch folder with both loops",
     lambda t, r: (colorize_args(r, _with_loops(folder_with(t, good=1)), t / "outs"),
                   error("self.png", "looping symbolic link"))),
    ("checkpoint of another profile or width", "train", "run folder of another profile",
     lambda t, r: (train_args(r.parent / "data", r, 2, "model.width=0.5"),
                   error(str(r), "different config", "model.width: 0.25 -> 0.5"))),
    ("checkpoint of another profile or width", "train", "another width's checkpoint-latest.pt",
     lambda t, r: (_foreign_checkpoint(t, r), error("checkpoint-latest.pt", "another config",
                                                   "model.width: 0.25 in the checkpoint, 0.5 in this run"))),
    ("checkpoint of another profile or width", "evaluate", "weights that do not fit their config",
     lambda t, r: (eval_args(_stitched_snapshot(t, r), r.parent / "data"),
                   error("stitched.pt", "do not fit", "model.width=0.5"))),
    ("checkpoint of another profile or width", "colorize", "a training checkpoint as --checkpoint",
     lambda t, r: (colorize_args(r / "checkpoint-latest.pt", good_png(t / "s.png"), t / "o.png"),
                   error("checkpoint-latest.pt", "training checkpoint"))),
    ("--set with an unknown key", "train", "unknown field",
     lambda t, r: (train_args(r.parent / "data", t / "run", 2, "train.max_stepz=3"),
                   error("max_stepz", "unknown field"))),
    ("--set with an unknown key", "train", "unknown section",
     lambda t, r: (train_args(r.parent / "data", t / "run", 2, "optim.lr=3"), error("optim.lr"))),
    ("--set with a wrong type", "train", "text for an integer",
     lambda t, r: (train_args(r.parent / "data", t / "run", 2, "train.max_steps=many"),
                   error("train.max_steps=many", "expected an integer"))),
    ("--set with a wrong type", "train", "not a boolean",
     lambda t, r: (train_args(r.parent / "data", t / "run", 2, "data.skip_bad=perhaps"),
                   error("data.skip_bad=perhaps", "boolean"))),
    ("--set with a wrong type", "train", "a value outside the choices",
     lambda t, r: (train_args(r.parent / "data", t / "run", 2, "model.aggregation=concat"),
                   error("model.aggregation='concat'", "scft"))),
    ("resolution not a multiple of 16", "train", "data.resolution=40",
     lambda t, r: (train_args(r.parent / "data", t / "run", 2, "data.resolution=40"),
                   error("data.resolution=40", "multiple of 16"))),
    ("resolution not a multiple of 16", "colorize", "--size 40",
     lambda t, r: (colorize_args(r, good_png(t / "s.png"), t / "o.png", None, "--size", "40"),
                   error("size 40", "multiple of 16"))),
]


def _with_loops(folder):
    symlink_loops(folder)
    return folder


def _foreign_checkpoint(t, r):
    """A fresh run folder at width 0.5 holding the width-0.25 run's checkpoint-latest.pt."""
    import shutil

    run = t / "run"
    run.mkdir()
    shutil.copy(r / "checkpoint-latest.pt", run / "checkpoint-latest.pt")
    return train_args(r.parent / "data", run, 2, "model.width=0.5")


def _stitched_snapshot(t, r):
    """The run's snapshot with its stored config claiming width 0.5."""
    import torch

    blob = torch.load(r / "snapshot-final.pt", weights_only=False)
    blob["config"]["model"]["width"] = 0.5
    torch.save(blob, t / "stitched.pt")
    return t / "stitched.pt"


@pytest.mark.parametrize("klass,command,what,build", CASES,
                         ids=[f"{c[0]}|{c[1]}|{c[2]}" for c in CASES])
def test_bad_input(klass, command, what, build, trained, tmp_path, capsys, request):
    request.node.user_properties.append(("bad_input_class", klass))
    argv, (kind, detail) = build(tmp_path, trained)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line[line.index("error:"):] for line in err.splitlines() if "error:" in line]
    if kind == "error":
        assert code == 2 and len(errors) == 1, err[-2000:]
        for needle in detail:
            assert needle in errors[0], (needle, errors[0])
        return
    assert code == 0 and not errors, err[-2000:]
    if kind == "skipped":
        notes = [str(w.message) for w in caught if "unreadable files" in str(w.message)]
        assert notes and notes[0].startswith(f"skipped {detail} unreadable files"), notes
    elif detail is not None:
        detail()


# ------------------------------------------------- the conversions, checked pixel by pixel

def test_odd_but_valid_images_convert_correctly(tmp_path):
    rgb = drawing(32)
    cmyk = load_rgb(cmyk_jpeg(tmp_path / "c.jpg")).astype(int)
    assert np.abs(cmyk - rgb).mean() < 6  # JPEG loss only: no channel swap, no inversion
    grey = load_rgb(grey16_png(tmp_path / "g.png"))
    ramp = np.arange(32 * 32).reshape(32, 32) * 64
    assert np.array_equal(grey[..., 0], np.round(ramp * 255 / 65535).astype(np.uint8))
    assert np.array_equal(load_rgb(rgb16_png(tmp_path / "r.png")), rgb)
    first = load_rgb(animated_gif(tmp_path / "a.gif"))
    assert first.shape == (32, 32, 3) and (first[..., 0] > 200).all() and (first[..., 2] < 50).all()
    assert load_rgb(one_pixel(tmp_path / "d.png")).shape == (1, 1, 3)


def test_the_pixel_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(BadImageError, match=r"400,000,000 pixels is over the "
                                            r"67,108,864-pixel limit"):
        load_rgb(bomb)
    # Just over the limit is refused too; PIL's own guard would only warn there.
    side = int(DEFAULT_MAX_PIXELS ** 0.5) + 1
    with pytest.raises(BadImageError, match="pixel limit"):
        load_rgb(bomb_png(tmp_path / "big.png", side))
    monkeypatch.setenv("PAPERLIB_MAX_PIXELS", "100")
    with pytest.raises(BadImageError, match="over the 100-pixel limit"):
        load_rgb(good_png(tmp_path / "small.png"))


# ------------------------------------------------- the faces dataset: one error line each

def _faces_args(command, tmp, *sets, dataset="faces"):
    out = [command, "--profile", "smoke", "--dataset", dataset]
    out += ["--run-dir", str(tmp / "run")] if command == "train" else []
    for s in sets:
        out += ["--set", s]
    return out


def _unwritable_cache(tmp, monkeypatch):
    (tmp / "a-file").write_text("a file where the cache folder should go")
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp / "a-file" / "cache"))


def _no_dicebear(tmp, monkeypatch):
    import sys

    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp / "cache"))
    monkeypatch.setitem(sys.modules, "dicebear", None)  # import dicebear -> ImportError


FACES_CASES = [
    ("unknown dataset name", lambda t: _faces_args("train", t, dataset="face"), None,
     ("data.dataset='face'", "faces")),
    ("unknown style", lambda t: _faces_args("prepare-data", t, "data.faces_styles=adventurer,elves"),
     None, ("'elves'", "unknown DiceBear style")),
    ("test-unseen style also trained on", lambda t: _faces_args(
        "train", t, "data.faces_unseen_style=micah"), None, ("'micah'", "would not be unseen")),
    ("training split smaller than a batch", lambda t: _faces_args(
        "train", t, "data.faces_train_per_style=1"), None,
     ("data.faces_train_per_style=1", "train.batch_size=4")),
    ("render cache cannot be written", lambda t: _faces_args("prepare-data", t),
     _unwritable_cache, ("cannot write the faces render cache", "a-file")),
    ("dicebear not installed", lambda t: _faces_args("prepare-data", t), _no_dicebear,
     ("dicebear-core==10.7.0",)),
]


@pytest.mark.parametrize("what,build,setup,needles", FACES_CASES, ids=[c[0] for c in FACES_CASES])
def test_faces_bad_input(what, build, setup, needles, tmp_path, capsys, monkeypatch):
    if setup is not None:
        setup(tmp_path, monkeypatch)
    capsys.readouterr()
    code = main(build(tmp_path))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line[line.index("error:"):] for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1, err[-2000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert not (tmp_path / "run").exists()  # refused before anything was written
