"""The faces dataset: determinism, the splits, colours drawn independently of the shapes,
the XDoG sketch, the items' format, and its bad inputs."""
import collections
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from paperlib.config import DataConfig, check_config, get_profile, override
from paperlib.data import faces
from paperlib.data.datasets import build_dataset, check_data

RES = 64
TINY = DataConfig(dataset="faces", resolution=RES, faces_train_per_style=12,
                  faces_test_per_style=6, faces_unseen=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A temporary render cache for the module: the tiny set renders once, in about a second."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("faces-cache")
    mp.setenv("PAPERLIB_CACHE", str(path))
    mp.setenv("TQDM_DISABLE", "1")
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def tiny(cache):
    return {split: build_dataset(TINY, split) for split in faces.SPLITS}


def _rgb(hex_colour: str) -> np.ndarray:
    h = hex_colour.lstrip("#")
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)])


def _share(img: np.ndarray, hex_colour: str) -> float:
    """Share of pixels within 8 levels (each channel) of a colour."""
    return float((np.abs(img.astype(int) - _rgb(hex_colour)).max(axis=2) <= 8).mean())


# ------------------------------------------------------------------------------ determinism

def test_same_seed_same_pixels(tiny, cache, tmp_path, monkeypatch):
    a = faces.render_face("micah", 7, RES)
    assert np.array_equal(a, faces.render_face("micah", 7, RES))
    assert not np.array_equal(a, faces.render_face("micah", 8, RES))
    # A fresh cache elsewhere renders the same pixels and seeds again.
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    again = faces.load_faces(TINY, "test")
    assert np.array_equal(again.images, tiny["test"].images)
    assert again.keys == tiny["test"].keys
    # And the module's cache is read back, not re-rendered.
    monkeypatch.setenv("PAPERLIB_CACHE", str(cache))
    monkeypatch.setattr(faces, "render_faces", lambda *a, **k: pytest.fail("re-rendered"))
    assert np.array_equal(faces.load_faces(TINY, "train").images, tiny["train"].images)


# ------------------------------------------------------------------------------ the splits

def test_split_sizes_and_disjoint_seeds(tiny):
    assert [len(tiny[s]) for s in faces.SPLITS] == [3 * 12, 3 * 6, 8]
    styles = {s: collections.Counter(k.split("/")[0] for k in tiny[s].keys) for s in faces.SPLITS}
    assert styles["train"] == {"adventurer": 12, "micah": 12, "open-peeps": 12}
    assert styles["test"] == {"adventurer": 6, "micah": 6, "open-peeps": 6}
    assert styles["test-unseen"] == {"big-smile": 8}
    keys = [set(tiny[s].keys) for s in faces.SPLITS]
    assert sum(map(len, keys)) == len(set.union(*keys))  # no face key in two splits

    # The full-size splits: 8,100 / 450 / 450, seed ranges that never meet.
    cfg = DataConfig(dataset="faces")
    assert faces.split_counts(cfg) == {"train": 2700, "test": 150, "test-unseen": 450}
    train = faces.split_seeds(cfg, "train", "adventurer")
    unseen = faces.split_seeds(cfg, "test-unseen", "big-smile")
    assert train == list(range(2700)) and len(unseen) == 450
    assert max(train) < faces.TEST_SEED0 and min(unseen) >= faces.UNSEEN_SEED0
    assert faces.split_styles(cfg, "test-unseen") == ("big-smile",)
    assert "big-smile" not in faces.split_styles(cfg, "train")


def test_test_faces_never_repeat_a_training_face():
    # Open Peeps draws few enough distinct faces that some held-out seeds repeat a training
    # face; those are skipped, so the test split still holds 150 faces, all new.
    cfg = DataConfig(dataset="faces")
    test = faces.split_seeds(cfg, "test", "open-peeps")
    assert len(test) == 150 == len(set(test)) and min(test) >= faces.TEST_SEED0
    sig = lambda s: repr(sorted(faces.face_options("open-peeps", s).items()))  # noqa: E731
    train = {sig(s) for s in range(2700)}
    assert not train & {sig(s) for s in test}
    skipped = set(range(faces.TEST_SEED0, max(test) + 1)) - set(test)
    assert skipped and all(sig(s) in train for s in skipped)
    assert max(test) < faces.UNSEEN_SEED0


# ------------------------------------------------------------------------------ colours

def test_colours_vary_independently_of_shape(cache):
    # Faces with the same hair shape but other hair colours exist, and the colour shows up in
    # the pixels: each image holds much of its own hair colour and none of the other's.
    cfg = replace(TINY, faces_styles=("adventurer",), faces_train_per_style=60)
    ds = build_dataset(cfg, "train")
    opts = {s: faces.face_options("adventurer", s) for s in range(60)}
    dark = lambda c: _rgb(c) @ np.array([0.299, 0.587, 0.114]) < 200  # noqa: E731 (not paper-white)

    def colours(o):
        return {v[0] for k, v in o.items() if k.endswith("Color") and v}

    pairs = [(a, b) for a in opts for b in opts if a < b
             and opts[a].get("hairVariant") and opts[a].get("hairVariant") == opts[b].get("hairVariant")
             and opts[a]["hairColor"][0] not in colours(opts[b])
             and opts[b]["hairColor"][0] not in colours(opts[a])
             and np.abs(_rgb(opts[a]["hairColor"][0]) - _rgb(opts[b]["hairColor"][0])).sum() > 150
             and dark(opts[a]["hairColor"][0]) and dark(opts[b]["hairColor"][0])]
    assert len(pairs) >= 3
    for a, b in pairs[:3]:
        ca, cb = opts[a]["hairColor"][0], opts[b]["hairColor"][0]
        img_a, img_b = ds.images[ds.keys.index(f"adventurer/{a}")], ds.images[ds.keys.index(f"adventurer/{b}")]
        assert _share(img_a, ca) > 0.03 and _share(img_b, cb) > 0.03, (a, b)
        assert _share(img_a, cb) < 0.005 and _share(img_b, ca) < 0.005, (a, b)

    # Across a style, each part's colour takes many values within one shape.
    by_variant = collections.defaultdict(set)
    for o in opts.values():
        by_variant[o.get("hairVariant")].add(o["hairColor"][0] if o.get("hairColor") else None)
    assert max(len(c) for c in by_variant.values()) >= 4
    for style, keys in (("micah", ("hairColor", "baseColor", "shirtColor")),
                        ("open-peeps", ("skinColor", "clothingColor")),
                        ("adventurer", ("hairColor", "skinColor"))):
        seen = [faces.face_options(style, s) for s in range(100)]
        for key in keys:
            assert len({o[key][0] for o in seen if o.get(key)}) >= 3, (style, key)


# ------------------------------------------------------------------------------ the sketch

def test_sketch_is_a_line_drawing_of_the_face(tiny):
    import cv2

    for split in faces.SPLITS:
        ink = tiny[split].inks
        share = ink.mean(axis=(1, 2))
        assert (share > 0.03).all() and (share < 0.45).all(), (split, share.round(3))
        assert 0.08 < share.mean() < 0.35
    # Ink sits on the image's edges: the colour render's gradient is much larger under ink.
    ds = tiny["train"]
    grads = []
    for img, ink in zip(ds.images, ds.inks):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
        grads.append(mag[ink].mean() / (mag[~ink].mean() + 1e-6))
    assert np.median(grads) > 3
    assert not np.array_equal(ds.inks[0], ds.inks[1])


def test_transparent_background_is_white_paper():
    import io

    import resvg_py
    from PIL import Image

    for style in ("adventurer", "micah", "open-peeps", "big-smile"):
        svg = faces.face_svg(style, 3)
        png = resvg_py.svg_to_bytes(svg_string=svg, width=RES, height=RES, skip_system_fonts=True)
        alpha = np.asarray(Image.open(io.BytesIO(bytes(png))).convert("RGBA"))[..., 3]
        img = faces.render_face(style, 3, RES)
        assert (alpha == 0).mean() > 0.1, style  # DiceBear leaves the background transparent
        assert (img[alpha == 0] == 255).all(), style
        assert (img[alpha == 255] < 250).any(axis=1).mean() > 0.5, style  # the face is drawn


# ------------------------------------------------------------------------------ items

def test_items_match_openmojis(tiny, cache):
    om = build_dataset(DataConfig(resolution=RES), "train", limit=24)
    want = om[0]
    for split in faces.SPLITS:
        item = tiny[split][0]
        assert set(item) == set(want)
        for k in ("image", "sketch"):
            assert item[k].shape == want[k].shape and item[k].dtype == want[k].dtype
        assert isinstance(item["key"], str) and item["key"].count("/") == 1
        assert item["image"].min() >= -1 and item["image"].max() <= 1
        assert set(torch.unique(item["sketch"]).tolist()) == {-1.0, 1.0}
    assert tiny["train"].images.dtype == np.uint8 and tiny["train"].inks.dtype == np.bool_


def test_limit_builds_a_tiny_set(cache):
    cfg = DataConfig(dataset="faces", resolution=32)  # full-size counts, capped by the limit
    ds = build_dataset(cfg, "train", limit=2)
    # Styles interleaved: any prefix (an evaluation's eval_limit) holds them in equal shares.
    assert ds.keys == ["adventurer/0", "micah/0", "open-peeps/0",
                       "adventurer/1", "micah/1", "open-peeps/1"]
    assert len(build_dataset(cfg, "test-unseen", limit=3)) == 3


def test_smoke_profile_uses_a_tiny_set():
    c = check_config(override(get_profile("smoke"), {"data.dataset": "faces"}))
    n = faces.split_counts(c.data)
    assert 3 * n["train"] >= c.train.batch_size and 3 * n["train"] <= 64
    # 90 test faces: notebook 08 picks test images up to index 89 on either dataset; the
    # evaluations read only the first data.eval_limit of them
    assert n["test"] * 3 == 90 and c.data.eval_limit <= 24 and n["test-unseen"] <= 32


# ------------------------------------------------------------------------------ bad input

def test_unknown_split_and_style(cache):
    with pytest.raises(ValueError, match="'val'"):
        faces.load_faces(TINY, "val")
    with pytest.raises(ValueError, match="unknown DiceBear style 'elves'"):
        faces.load_faces(replace(TINY, faces_styles=("adventurer", "elves")), "train")
    with pytest.raises(ValueError, match="'micah' is also in data.faces_styles"):
        faces.check_styles(replace(TINY, faces_unseen_style="micah"))


def test_split_too_small_for_its_batch():
    c = override(get_profile("smoke"), {"data.dataset": "faces", "data.faces_train_per_style": 1})
    with pytest.raises(ValueError, match=r"data.faces_train_per_style=1 gives 3 training faces.*"
                                         r"train.batch_size=4"):
        check_config(c)
    with pytest.raises(ValueError, match="data.faces_unseen=0"):
        check_config(override(get_profile("smoke"), {"data.dataset": "faces",
                                                     "data.faces_unseen": 0}))


def test_cache_that_cannot_be_built(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PAPERLIB_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(faces, "render_faces", lambda *a, **k: pytest.fail("rendered first"))
    with pytest.raises(OSError, match="cannot write the faces render cache in .*a-file"):
        faces.load_faces(TINY, "train")


def test_dicebear_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "dicebear", None)  # import dicebear -> ImportError
    with pytest.raises(faces.FacesUnavailableError, match="needs dicebear-core==10.7.0"):
        faces.load_faces(TINY, "train")
    with pytest.raises(RuntimeError, match="dicebear-styles==10.6.0"):
        check_data(check_config(override(get_profile("smoke"), {"data.dataset": "faces"})).data)
