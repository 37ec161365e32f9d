"""Safe with any file: loading a .pt file runs no code, and colorize never replaces what it reads.

The cases of docs/robustness.md's table "What colorize does with your files" are the functions
in ROWS, keyed by the table's first column; `test_the_table_lists_exactly_the_cases_tested`
keeps the two equal. The snapshot used throughout is tests/data/snapshot-old-format.pt, a
smoke-recipe generator at width 1/32 written by the code before `.pt` files were read with the
weights-only loader, so every colorize case also shows that such a snapshot still loads.
"""
import argparse
import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.__main__ import INTERRUPTED, build_parser, main
from paperlib.data.imageio import load_rgb

ROOT = Path(__file__).resolve().parents[1]
OLD_SNAPSHOT = ROOT / "tests" / "data" / "snapshot-old-format.pt"


def drawing(h=32, w=32, seed=0):
    from conftest import draw_shapes

    img = draw_shapes(np.random.default_rng(seed), max(h, w))
    return np.ascontiguousarray(img[:h, :w])


def png(path, h=32, w=32, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(drawing(h, w, seed)).save(path)
    return path


def colorize(capsys, sketch, out, *extra, checkpoint=OLD_SNAPSHOT):
    """Run `python -m paperlib colorize` in-process: (exit status, its error lines, stderr)."""
    capsys.readouterr()
    code = main(["colorize", "--checkpoint", str(checkpoint), "--sketch", str(sketch),
                 "--out", str(out), *map(str, extra)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()], err


def refused(capsys, sketch, out, *extra, needles=(), checkpoint=OLD_SNAPSHOT):
    code, lines, err = colorize(capsys, sketch, out, *extra, checkpoint=checkpoint)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def snapshot_of(tmp_path, plant):
    """The old snapshot's entries with `plant(blob)` applied, saved as tmp_path/bad.pt."""
    blob = torch.load(OLD_SNAPSHOT, weights_only=True)
    plant(blob)
    torch.save(blob, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


class MakesAFolder:
    """Pickled, this is a call of os.makedirs(path): code that runs when the file is unpickled
    by an unrestricted loader."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.makedirs, (self.path,)


# ------------------------------------------------------------------ the table's cases

def out_is_an_input(tmp_path, capsys, monkeypatch):
    sketch = png(tmp_path / "work" / "mysketch.png")
    ref = png(tmp_path / "ref.png", seed=1)
    before = sketch.read_bytes(), ref.read_bytes()
    refused(capsys, sketch, sketch, needles=[sketch, "overwrite"])
    refused(capsys, sketch, ref, "--reference", ref, needles=[sketch, ref])
    # a snapshot may have any name, an image's included
    model = tmp_path / "model.png"
    model.write_bytes(OLD_SNAPSHOT.read_bytes())
    refused(capsys, sketch, model, checkpoint=model, needles=[model])
    # the same file through a symbolic link
    (tmp_path / "link.png").symlink_to(sketch)
    refused(capsys, sketch, tmp_path / "link.png", needles=[sketch])
    assert (sketch.read_bytes(), ref.read_bytes()) == before
    assert model.read_bytes() == OLD_SNAPSHOT.read_bytes()


def out_inside_a_folder_read(tmp_path, capsys, monkeypatch):
    sketches, refs = tmp_path / "sketches", tmp_path / "refs"
    files = [png(sketches / "a.png"), png(sketches / "sub" / "b.png", seed=1), png(refs / "r.png")]
    before = [f.read_bytes() for f in files]
    refused(capsys, sketches, sketches, needles=[sketches, "inside"])
    refused(capsys, sketches, sketches / "out", needles=[sketches / "out", sketches])
    assert [f.read_bytes() for f in files] == before
    refused(capsys, sketches, refs / "out", "--reference", refs, needles=[refs / "out", refs])
    refused(capsys, files[0], refs / "o.png", "--reference", refs, needles=[refs])
    assert not (sketches / "out").exists() and not (refs / "out").exists()
    assert sorted(p.name for p in sketches.rglob("*.png")) == ["a.png", "b.png"]


def sub_folders(tmp_path, capsys, monkeypatch):
    sketches = tmp_path / "sketches"
    png(sketches / "a.png")
    png(sketches / "sub" / "a.png", seed=1)
    png(sketches / "sub" / "deeper" / "c.jpg", seed=2)
    code, lines, err = colorize(capsys, sketches, tmp_path / "out")
    assert code == 0, err
    got = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert got == ["a.png", "sub/a.png", "sub/deeper/c.png"]
    assert Image.open(tmp_path / "out" / "sub" / "a.png").size == (32, 32)
    # a rerun reads the same three sketches and writes the same three files
    code, lines, err = colorize(capsys, sketches, tmp_path / "out")
    assert code == 0 and len(lines) == 0 and len(list(sketches.rglob("*.*"))) == 3, err
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
                  if p.is_file()) == got


def shared_stems(tmp_path, capsys, monkeypatch):
    sketches = tmp_path / "sketches"
    png(sketches / "a.png")
    Image.fromarray(drawing(seed=1)).save(sketches / "a.jpg")
    png(sketches / "b.png", seed=2)
    code, lines, err = colorize(capsys, sketches, tmp_path / "out")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").glob("*")) == ["a.jpg.png", "a.png.png", "b.png"]
    assert (tmp_path / "out" / "a.jpg.png").read_bytes() != (tmp_path / "out" / "a.png.png").read_bytes()


def remaining_collision(tmp_path, capsys, monkeypatch):
    sketches = tmp_path / "sketches"
    png(sketches / "a.png")
    png(sketches / "a.jpg.png", seed=1)  # its output a.jpg.png is also a.jpg's
    Image.fromarray(drawing(seed=2)).save(sketches / "a.jpg")
    refused(capsys, sketches, tmp_path / "out",
            needles=[sketches / "a.jpg", sketches / "a.jpg.png", tmp_path / "out" / "a.jpg.png"])
    assert not (tmp_path / "out").exists()  # before any work


def existing_output(tmp_path, capsys, monkeypatch):
    sketch = png(tmp_path / "s.png")
    out = tmp_path / "outs" / "o.png"
    assert colorize(capsys, sketch, out)[0] == 0
    earlier = out.read_bytes()
    Image.open(out).verify()

    def full_disk(self, fp, *args, **kwargs):  # half a PNG, then the disk is full
        fp.write(earlier[: len(earlier) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    line = refused(capsys, sketch, out, needles=["disk full", "o.png", out.parent])
    assert out.read_bytes() == earlier and list(out.parent.iterdir()) == [out]

    def not_allowed(self, fp, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Image.Image, "save", not_allowed)
    line = refused(capsys, sketch, out, needles=[f"cannot write {out}", "Permission denied"])
    assert out.read_bytes() == earlier and list(out.parent.iterdir()) == [out], line


def empty_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sketch = png(tmp_path / "s.png")
    png(tmp_path / ".venv" / "lib" / "x.png")  # what an empty --sketch once found
    refused(capsys, "", tmp_path / "out", needles=["--sketch is empty"])
    refused(capsys, sketch, "", needles=["--out is empty"])
    refused(capsys, sketch, tmp_path / "o.png", "--reference", "", needles=["--reference is empty"])
    refused(capsys, sketch, tmp_path / "o.png", checkpoint="", needles=["--checkpoint is empty"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".venv", "s.png"]


def out_not_an_image_or_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sketch = png(tmp_path / "s.png")
    refused(capsys, sketch, "o.xyz", needles=["o.xyz", "'.xyz' is not an image extension"])
    refused(capsys, sketch, "-", needles=["--out -"])
    (tmp_path / "notes").write_text("a file, not a folder")
    refused(capsys, sketch, "notes", needles=["notes", "not a folder"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "s.png"]
    # the three kinds of folder, and an image file of another format
    for out, written in (("o.xyz/", "o.xyz/s.png"), ("plain", "plain/s.png"),
                         ("notes.d/", "notes.d/s.png"), ("o.JPG", "o.JPG")):
        code, lines, err = colorize(capsys, sketch, out)
        assert code == 0 and (tmp_path / written).is_file(), (out, err)
    assert Image.open(tmp_path / "o.JPG").format == "JPEG"


def exif_orientation(tmp_path, capsys, monkeypatch):
    stored = np.full((20, 40, 3), 255, np.uint8)  # stored wide, white with a black left edge
    stored[:, :6] = 0
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": shown tall, the edge on top
    img.save(tmp_path / "s.jpg", exif=exif, quality=95)
    shown = load_rgb(tmp_path / "s.jpg")
    assert shown.shape == (40, 20, 3)
    assert shown[:4].mean() < 40 and shown[10:].mean() > 215
    code, lines, err = colorize(capsys, tmp_path / "s.jpg", tmp_path / "o.png",
                                "--reference", tmp_path / "s.jpg")
    assert code == 0 and Image.open(tmp_path / "o.png").size == (20, 40), err
    # a training folder's images are read upright too
    from dataclasses import replace

    from paperlib.config import get_profile
    from paperlib.data.datasets import FolderDataset

    (tmp_path / "data").mkdir()
    square = Image.fromarray(np.ascontiguousarray(stored[:, :20].repeat(2, axis=0)))  # 40 x 20
    square = square.resize((32, 32))
    square.save(tmp_path / "data" / "t.jpg", exif=exif, quality=95)
    cfg = replace(get_profile("smoke").data, dataset="folder", root=str(tmp_path / "data"),
                  test_fraction=0.0)
    image = FolderDataset(cfg, "train")[0]["image"]  # (3,32,32) in [-1,1]
    assert image[:, :4].mean() < -0.7 and image[:, :, :4].mean() > -0.5


def pickled_object(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "made-by-the-file"
    snap = snapshot_of(tmp_path, lambda b: b.update(generator=MakesAFolder(marker)))
    sketch = png(tmp_path / "s.png")
    refused(capsys, sketch, tmp_path / "o.png", checkpoint=snap,
            needles=[snap, "was not loaded", "makedirs"])
    assert not marker.exists() and not (tmp_path / "o.png").exists()
    # the plant is real: an unrestricted load runs it
    torch.load(snap, weights_only=False)
    assert marker.is_dir()


def malformed_snapshot(tmp_path, capsys, monkeypatch):
    sketch = png(tmp_path / "s.png")
    for plant, needle in ((lambda b: b.update(generator=None), "'generator' entry is NoneType"),
                          (lambda b: b.update(generator={"w": [1, 2]}), "'generator' entry"),
                          (lambda b: b.update(config=None), "stored config"),
                          (lambda b: b["config"].update(model="wide"), "stored config"),
                          (lambda b: b.update(step="7"), "'step' entry"),
                          (lambda b: b.clear(), "missing keys")):
        snap = snapshot_of(tmp_path, plant)
        refused(capsys, sketch, tmp_path / "o.png", checkpoint=snap, needles=[snap, needle])
    (tmp_path / "cut.pt").write_bytes(OLD_SNAPSHOT.read_bytes()[:5000])
    refused(capsys, sketch, tmp_path / "o.png", checkpoint=tmp_path / "cut.pt",
            needles=[tmp_path / "cut.pt", "unreadable"])
    assert not (tmp_path / "o.png").exists()


def earlier_snapshot(tmp_path, capsys, monkeypatch):
    from paperlib.training.snapshot import load_generator

    G, config, step = load_generator(OLD_SNAPSHOT)
    assert step == 7 and config.profile == "smoke" and config.model.width == 0.03125
    # the weights are those written: their sum, and one output, as computed when it was made
    with torch.no_grad():
        total = sum(float(p.double().sum()) for p in G.parameters())
        x = torch.where(torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
                        < 0.1, -1.0, 1.0)
        out = float(G(x, None)[0].double().sum())
    assert total == pytest.approx(272.2038842406375, abs=1e-6)
    assert out == pytest.approx(-0.055906887848911374, abs=1e-4)
    assert OLD_SNAPSHOT.stat().st_size < 1_000_000


def size_too_large(tmp_path, capsys, monkeypatch):
    import paperlib.app.colorize as colorize_module

    def never(*args, **kwargs):
        raise AssertionError("a sketch was coloured")

    monkeypatch.setattr(colorize_module, "colorize_image", never)
    line = refused(capsys, png(tmp_path / "s.png"), tmp_path / "o.png", "--size", 10000,
                   needles=["--size 10000", "2048", "GiB"])
    assert not (tmp_path / "o.png").exists(), line


def ctrl_c(tmp_path, capsys, monkeypatch):
    import paperlib.app.colorize as colorize_module

    sketches = tmp_path / "sketches"
    for i in range(3):
        png(sketches / f"{i}.png", seed=i)
    real, calls = colorize_module.colorize_image, []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(colorize_module, "colorize_image", interrupted_at_the_second)
    code, lines, err = colorize(capsys, sketches, tmp_path / "out")
    assert code == INTERRUPTED and lines == ["interrupted (Ctrl-C)"], err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0.png"]
    Image.open(tmp_path / "out" / "0.png").verify()


ROWS = {
    "`--out` is an input (the sketch, a reference, the snapshot)": out_is_an_input,
    "`--out` is, or is inside, the sketch or reference folder": out_inside_a_folder_read,
    "a sketch folder with sub-folders": sub_folders,
    "sketches sharing a stem in one folder (`a.png`, `a.jpg`)": shared_stems,
    "two sketches that would still get one output name": remaining_collision,
    "an output that exists already": existing_output,
    "an empty `--sketch`, `--out`, `--reference` or `--checkpoint`": empty_paths,
    "`--out` with an extension that is not an image's (`o.xyz`), or `-`": out_not_an_image_or_folder,
    "a sketch or reference with an EXIF orientation tag": exif_orientation,
    "a snapshot holding a pickled object": pickled_object,
    "a snapshot with a malformed entry (`generator` None, a config that builds no generator, ...)":
        malformed_snapshot,
    "a snapshot written by earlier versions": earlier_snapshot,
    "`--size` over 2048": size_too_large,
    "Ctrl-C": ctrl_c,
}


@pytest.mark.parametrize("row", list(ROWS))
def test_what_colorize_does_with_your_files(row, tmp_path, capsys, monkeypatch):
    ROWS[row](tmp_path, capsys, monkeypatch)


def table_rows(text: str, heading: str) -> list[str]:
    """The first cells of the table under `heading` in a Markdown text."""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [x for x in section.splitlines() if x.startswith("|")]
    return [x.split(" | ")[0].lstrip("| ").strip() for x in lines[2:]]


def test_the_table_lists_exactly_the_cases_tested():
    rows = table_rows((ROOT / "docs" / "robustness.md").read_text(),
                      "## What colorize does with your files")
    assert rows == list(ROWS)


def test_table_rows_reads_a_markdown_table():
    text = "## A\n\n| x | y |\n|---|---|\n| `a` b | c |\n| d | e |\n\n## B\n| f | g |\n"
    assert table_rows(text, "## A") == ["`a` b", "d"]


# ------------------------------------------------------------ every other reader of .pt files

def test_a_pickled_object_in_a_checkpoint_or_snapshot_never_runs(tmp_path):
    """The resume path, the evaluation's snapshot list and its metrics cache read .pt files
    too: each refuses the plant with one line naming the file, and the plant never runs."""
    from paperlib.config import get_profile
    from paperlib.evaluation.dynamics import snapshots
    from paperlib.training.checkpoint import CheckpointError, read_checkpoint

    marker = tmp_path / "made-by-the-file"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": MakesAFolder(marker)}, run / "snapshot-final.pt")
    torch.save({"G": MakesAFolder(marker)}, run / "checkpoint-latest.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint-latest\.pt was not loaded") as info:
        read_checkpoint(run / "checkpoint-latest.pt", get_profile("smoke"))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"snapshot-final\.pt was not loaded.*makedirs"):
        snapshots(run)
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_values_and_older_ones_resume(tmp_path):
    """New checkpoints store NumPy's RNG state as a tensor (nothing the weights-only loader
    must be told to allow); older ones, with the NumPy array, load and restore the same state."""
    from paperlib.training.checkpoint import rng_state, set_rng_state
    from paperlib.training.snapshot import load_pt

    np.random.seed(123)
    np.random.normal()  # a cached Gaussian is part of the state too
    state = rng_state({})
    torch.save({"rng": [state]}, tmp_path / "new.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "new.pt") == []
    older = dict(state, numpy=np.random.get_state())  # as checkpoints were written before
    torch.save({"rng": [older]}, tmp_path / "old.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "old.pt") != []
    expected = np.random.random(5)
    for name in ("new.pt", "old.pt"):
        np.random.seed(0)
        set_rng_state(load_pt(tmp_path / name)["rng"][0], {})
        assert np.array_equal(np.random.random(5), expected), name


# ------------------------------------------------------------------------ every command

def commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_option_of_every_command_has_help_text():
    missing = [f"{name} {a.option_strings or a.dest}" for name, sp in commands().items()
               for a in sp._actions if not (a.help or "").strip()]
    assert missing == []


MINIMAL_ARGS = {"train": ["--run-dir", "r"], "evaluate": ["--checkpoint", "r"],
                "colorize": ["--checkpoint", "r", "--sketch", "s.png", "--out", "o.png"],
                "long-run-summary": ["f"], "hue-study-summary": ["w"], "claim-widths": ["--before", "b.csv"]}


@pytest.mark.parametrize("command", list(commands()))
def test_ctrl_c_in_every_command_is_one_line_and_status_130(command, monkeypatch, capsys, tmp_path):
    """Ctrl-C as the command starts (the interrupt raised once its arguments are parsed)."""
    monkeypatch.chdir(tmp_path)
    parse = argparse.ArgumentParser.parse_args

    def parse_then_interrupt(self, *args, **kwargs):
        parsed = parse(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_interrupt)
    capsys.readouterr()
    code = main([command, *MINIMAL_ARGS.get(command, [])])
    err = capsys.readouterr().err
    assert code == INTERRUPTED and err.splitlines() == ["interrupted (Ctrl-C)"], err


def test_a_real_ctrl_c_during_colorize_is_one_line_and_status_130(tmp_path):
    """SIGINT from outside, delivered while the first sketch is being coloured."""
    png(tmp_path / "s.png")
    script = (
        "import os, signal, sys\n"
        # a process started from a background job inherits SIGINT ignored (CI may be one):
        # take it back, as a terminal's foreground process has it
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import paperlib.app.colorize as c\n"
        "def interrupt(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    signal.pause()\n"
        "c.colorize_image = interrupt\n"
        "from paperlib.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", script, "colorize", "--checkpoint",
                           str(OLD_SNAPSHOT), "--sketch", str(tmp_path / "s.png"), "--out",
                           str(tmp_path / "o.png")], capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"}, timeout=300)
    assert proc.returncode == INTERRUPTED, proc.stderr
    assert proc.stderr.strip().splitlines() == ["interrupted (Ctrl-C)"]
    assert not (tmp_path / "o.png").exists()
