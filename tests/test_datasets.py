"""Image loading edge cases and the three datasets (openmoji, folder, edges2shoes)."""
from dataclasses import replace
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.config import DataConfig
from paperlib.data.datasets import build_dataset
from paperlib.data.imageio import BadImageError, load_rgb, resize_center_crop, to_tensor, to_uint8


def _photo(h=40, w=52, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    img[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = rng.integers(0, 255, 3)
    return img


# ------------------------------------------------------------------------------- imageio

def test_truncated_png(tmp_path):
    p = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="cut.png"):
        load_rgb(p)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, not an image")
    with pytest.raises(ValueError, match="notes.jpg"):  # BadImageError is a ValueError
        load_rgb(p)
    with pytest.raises(BadImageError, match="missing.png"):
        load_rgb(tmp_path / "missing.png")


def test_grayscale_rgba_palette_16bit_cmyk(tmp_path):
    g = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (5, 5, 3) and (out == g[..., None]).all()

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 0  # transparent -> white
    rgba[2:, :, 3] = 255  # opaque -> (200, 0, 0)
    rgba[3, 3, 3] = 128  # half -> blend with white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert (out[:2] == 255).all() and (out[2, 0] == (200, 0, 0)).all()
    assert abs(int(out[3, 3, 1]) - 127) <= 1 and abs(int(out[3, 3, 0]) - 227) <= 1

    la = np.stack([np.full((3, 3), 0, np.uint8), np.full((3, 3), 0, np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert (load_rgb(tmp_path / "la.png") == 255).all()  # fully transparent black -> white

    pal = Image.fromarray(_photo()).convert("P", palette=Image.ADAPTIVE, colors=4)
    pal.save(tmp_path / "p.png")
    out = load_rgb(tmp_path / "p.png")
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))

    g16 = np.array([[0, 65535], [32896, 257 * 100]], np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_rgb(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out[..., 0].tolist() == [[0, 255], [128, 100]]

    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "c.jpg")
    out = load_rgb(tmp_path / "c.jpg")
    assert out.shape == (40, 52, 3) and np.abs(out.astype(int) - _photo()).mean() < 20


def test_resize_crop_upscales_tiny_and_tensor_roundtrip():
    tiny = _photo(6, 9)
    out = resize_center_crop(tiny, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    big = resize_center_crop(_photo(100, 60), 32)
    assert big.shape == (32, 32, 3)
    t = to_tensor(big)
    assert t.shape == (3, 32, 32) and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(to_uint8(t), big)


def test_to_tensor_takes_a_read_only_buffer_without_warning():
    """Decoders hand back read-only arrays (np.frombuffer); torch warns when it wraps one."""
    img = np.frombuffer(_photo(8, 8).tobytes(), np.uint8).reshape(8, 8, 3)
    assert not img.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_tensor(img)
    assert np.array_equal(to_uint8(t), img)


# ------------------------------------------------------------------------------- datasets

def _check_item(item, res):
    assert item["image"].shape == (3, res, res) and item["image"].dtype == torch.float32
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    assert item["sketch"].shape == (1, res, res)
    assert set(item["sketch"].unique().tolist()) <= {-1.0, 1.0}
    assert isinstance(item["key"], str)


def test_openmoji_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    cfg = DataConfig(resolution=32, test_fraction=0.3)
    tr = build_dataset(cfg, "train", limit=24)
    te = build_dataset(cfg, "test", limit=24)
    assert len(tr) + len(te) == 24 and not set(tr.keys) & set(te.keys)
    _check_item(tr[0], 32)
    assert (tr[0]["sketch"] == -1).any()


def _make_folder(root, n=12):
    for i in range(n):
        sub = root / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(30 + i, 40, seed=i)).save(sub / f"im{i}.png")


def test_folder_dataset_split_and_items(tmp_path):
    _make_folder(tmp_path)
    cfg = DataConfig(dataset="folder", root=str(tmp_path), resolution=32, test_fraction=0.3)
    tr, te = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert len(tr) + len(te) == 12 and not set(tr.rel_paths) & set(te.rel_paths)
    assert build_dataset(cfg, "train").rel_paths == tr.rel_paths  # deterministic
    item = tr[0]
    _check_item(item, 32)
    assert (item["sketch"] == -1).any()  # XDoG finds the square's edges


def test_folder_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset(DataConfig(dataset="folder", root=str(tmp_path / "nowhere")), "train")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="empty"):
        build_dataset(DataConfig(dataset="folder", root=str(tmp_path / "empty")), "train")


def test_folder_bad_files(tmp_path):
    _make_folder(tmp_path, 6)
    (tmp_path / "a" / "broken.jpg").write_text("not an image")
    cut = tmp_path / "a" / "cut.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:300])
    cfg = DataConfig(dataset="folder", root=str(tmp_path), resolution=32, test_fraction=0.0)
    ds = build_dataset(cfg, "train")
    assert len(ds) == 8
    with pytest.raises(BadImageError, match="broken.jpg"):
        ds[ds.rel_paths.index("a/broken.jpg")]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ok = build_dataset(DataConfig(**{**cfg.__dict__, "skip_bad": True}), "train")
    assert sorted(ok.skipped) == ["a/broken.jpg", "a/cut.png"] and len(ok) == 6
    assert any("skipped 2 unreadable files" in str(x.message) for x in w)
    for i in range(len(ok)):
        _check_item(ok[i], 32)


def test_edges2shoes(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for i in range(3):
            edge = np.full((32, 32, 3), 255, np.uint8)
            edge[8:24, 15:17] = 0
            pair = np.concatenate([edge, _photo(32, 32, seed=i)], axis=1)  # A|B
            Image.fromarray(pair).save(tmp_path / split / f"{i}_AB.jpg", quality=95)
    cfg = DataConfig(dataset="edges2shoes", root=str(tmp_path), resolution=32)
    te = build_dataset(cfg, "test")  # served from val/
    assert len(te) == 3 and len(build_dataset(cfg, "train")) == 3
    item = te[0]
    _check_item(item, 32)
    ink = item["sketch"][0] == -1
    assert ink[8:24, 15:17].float().mean() > 0.9 and ink.float().mean() < 0.05
    assert np.abs(to_uint8(item["image"]).astype(int) - _photo(32, 32, seed=0)).mean() < 8
    with pytest.raises(FileNotFoundError, match="val"):
        build_dataset(DataConfig(dataset="edges2shoes", root=str(tmp_path / "x")), "test")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="imagenet"):
        build_dataset(DataConfig(dataset="imagenet"), "train")


def test_unknown_dataset_lists_faces():
    with pytest.raises(ValueError, match=r"unknown data.dataset 'face'; use 'openmoji', 'faces'"):
        build_dataset(DataConfig(dataset="face"), "train")


def test_a_validation_split_is_held_out_of_the_training_split(tmp_path):
    _make_folder(tmp_path)
    cfg = DataConfig(dataset="folder", root=str(tmp_path), resolution=32, test_fraction=0.3)
    whole = build_dataset(cfg, "train")
    held = replace(cfg, val_holdout=3)
    train, val = build_dataset(held, "train"), build_dataset(held, "val")
    assert len(train) == len(whole) - 3 and len(val) == 3
    keys = [train[i]["key"] for i in range(len(train))] + [val[i]["key"] for i in range(len(val))]
    assert keys == list(whole.rel_paths)  # disjoint, and together the whole training split
    assert len(build_dataset(held, "test")) == len(build_dataset(cfg, "test"))  # untouched
    with pytest.raises(ValueError, match="data.val_holdout > 0"):
        build_dataset(cfg, "val")
    with pytest.raises(ValueError, match=f"data.val_holdout={len(whole)} leaves no training"):
        build_dataset(replace(cfg, val_holdout=len(whole)), "val")
