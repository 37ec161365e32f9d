"""The try-it notebook's logic (paperlib.app.demo), driven through its callbacks without a browser."""
import io
from datetime import datetime, timezone
import shlex
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from conftest import draw_shapes
from paperlib.app import demo as demo_mod
from paperlib.study import registry as experiments
from paperlib.app.colorize import colorize_image
from paperlib.config import get_profile, override
from paperlib.app.demo import Demo, SplitImage, arm_status, try_it_figure
from paperlib.core.model import Generator
from paperlib.study.figures import ATTENTION_ALPHA, ATTENTION_CMAP

DATA = get_profile("smoke").data  # 32 px: a 2 x 2 feature grid for the test images


class StandIn(torch.nn.Module):
    """The Generator's call signature: outputs its reference (all colours come from it) and
    attends each sketch cell to the same cell of the reference (identity attention)."""

    def __init__(self, aggregation="scft"):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))  # for next(G.parameters()).device
        self.enc_s = SimpleNamespace(total_stride=16)
        self.cfg = SimpleNamespace(aggregation=aggregation)

    def forward(self, sketch, reference=None, return_attention=False):
        b, _, h, w = sketch.shape
        ref = sketch.new_zeros(b, 3, h, w) if reference is None else reference
        p = (h // 16) * (w // 16)
        aux = {"attention": torch.eye(p).expand(b, p, p)} if return_attention else {}
        return ref.clone(), aux


def sample_images(n=4, size=32):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = draw_shapes(rng, size)
        out.append(SplitImage(f"img{i}", img, img.max(axis=2) < 60))
    return out


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no pixel data: a huge
    image's header without the memory a huge image takes."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def copier():
    return Demo({"scft-triplet": StandIn()}, DATA, sample_images(), reference_index=1)


@pytest.fixture(scope="module")
def smoke_arms():
    """Smoke-sized generators, SCFT and addition (no attention). Untrained, N(0, 0.02) weights
    give a flat grey whatever the input, so every conv gets a Kaiming init (outputs that vary
    in uint8) and SCFT's projections are scaled up (attention far from uniform)."""
    c = get_profile("smoke")
    torch.manual_seed(0)
    arms = {"scft-triplet": Generator(c.model).eval(),
            "add": Generator(override(c, {"model.aggregation": "add"}).model).eval()}
    with torch.no_grad():
        for G in arms.values():
            for m in G.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight)
        for lin in (arms["scft-triplet"].aggregation.w_q, arms["scft-triplet"].aggregation.w_k):
            lin.weight.mul_(40)
    return arms


def test_changing_sketch_reference_and_cell_refreshes_the_arrays(copier):
    first = copier.view()
    assert first.sketch.shape == first.output.shape == first.reference.shape == (32, 32, 3)
    assert first.grid == (2, 2) and first.main == "scft-triplet"
    line = copier.set_sketch(2, "line")
    assert not np.array_equal(line.sketch, first.sketch)
    xdog = copier.set_sketch(2, "xdog")
    assert "XDoG" in xdog.sketch_label and not np.array_equal(xdog.sketch, line.sketch)
    a = copier.set_reference(1).output
    b = copier.set_reference(3).output
    assert not np.array_equal(a, b)  # a generator that uses its reference follows it
    zero = copier.set_reference(None)
    assert (zero.reference == 128).all() and "zero" in zero.reference_label  # 0 in [-1, 1]
    cells = {cell: copier.set_cell(*cell).sketch for cell in [(0, 0), (1, 1)]}
    assert not np.array_equal(cells[(0, 0)], cells[(1, 1)])  # the red outline moved
    assert copier.set_cell(9, -3).cell == (1, 0)  # clamped into the grid


def test_the_last_picked_test_images_and_the_zero_reference_are_public(copier):
    assert (copier.picked_index("sketch"), copier.picked_index("reference")) == (0, 1)
    assert copier.has_reference
    copier.set_sketch(2, "xdog")
    copier.set_reference(None)
    assert copier.picked_index("sketch") == 2 and not copier.has_reference
    copier.set_reference(3)
    assert copier.picked_index("reference") == 3 and copier.has_reference
    fresh = Demo({"scft-triplet": StandIn()}, DATA, sample_images(), reference_index=None)
    assert fresh.picked_index("reference") is None and not fresh.has_reference
    with pytest.raises(ValueError, match="'output'"):
        copier.picked_index("output")


def test_attention_map_is_the_chosen_cells_row_over_the_reference(copier):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap(ATTENTION_CMAP)
    views = {}
    for cell in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        view = copier.set_cell(*cell)
        y0, y1, x0, x1 = copier.cell_box(*cell)
        hot = np.zeros(view.reference.shape[:2], bool)
        hot[y0:y1, x0:x1] = True  # identity attention: all the mass on the same cell
        for mask, level in ((hot, 1.0), (~hot, 0.0)):
            want = ATTENTION_ALPHA * np.array(cmap(level)[:3]) * 255 \
                + (1 - ATTENTION_ALPHA) * view.reference[mask].astype(float)
            assert np.abs(view.attention[mask] - want).max() <= 1
        views[cell] = view.attention
    assert len({v.tobytes() for v in views.values()}) == 4


def test_smoke_generator_follows_reference_and_attention_changes_with_cell(smoke_arms):
    d = Demo(smoke_arms, DATA, sample_images(), reference_index=1)
    assert list(d.view().outputs) == ["scft-triplet", "add"]  # the registry's order: the main model first
    a = d.set_reference(1)
    b = d.set_reference(3)
    for name in smoke_arms:
        assert not np.array_equal(a.outputs[name], b.outputs[name])
    maps = [d.set_cell(*cell).attention for cell in [(0, 0), (1, 1)]]
    assert not np.array_equal(*maps)
    assert d.set_main("add").attention is None and d.view().output is not None


def test_output_is_colorize_at_the_users_size_for_uploads(smoke_arms):
    d = Demo(smoke_arms, DATA, sample_images())
    rng = np.random.default_rng(1)
    colour = draw_shapes(rng, 130)[:50]  # a wide colour image: XDoG
    line = np.full((70, 45, 3), 255, np.uint8)
    line[10:60, 20:24] = 0  # a line drawing: thresholded
    ref = draw_shapes(rng, 90)
    d.upload_reference(png(ref), "ref.png")
    for img, how in ((colour, "XDoG"), (line, "thresholded")):
        view = d.upload_sketch(png(img), "mine.png")
        assert view.message == "" and how in view.sketch_label and "mine.png" in view.sketch_label
        for name, G in smoke_arms.items():
            want = colorize_image(G, img, ref, data_cfg=DATA, size=32)
            assert view.outputs[name].shape == img.shape
            assert np.array_equal(view.outputs[name], want)
    assert d.set_size(64).grid == (4, 3)  # 70 x 45 at a long side of 64 -> 64 x 41, padded 64 x 48
    assert d.set_size(40).message.startswith("size 40")  # refused, the size is kept
    assert d.size == 64


def test_a_click_picks_the_cell_under_the_pointer(copier):
    wide = np.full((40, 100, 3), 255, np.uint8)
    wide[18:22] = 0
    copier.upload_sketch(png(wide), "wide.png")
    assert copier.grid == (1, 2)  # 13 x 32 working, padded to 16 x 32
    copier.set_size(64)
    gh, gw = copier.grid
    assert (gh, gw) == (2, 4)
    for r in range(gh):
        for c in range(gw):
            y0, y1, x0, x1 = copier.cell_box(r, c)
            assert copier.click((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2).cell == (r, c)


def truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = png(noise)
    return data[: len(data) // 2]


@pytest.mark.parametrize("name,data,says", [
    ("cut.png", truncated_png(), "truncated"),
    ("notes.png", b"shopping list: eggs, milk\n" * 20, "not an image file"),
    ("huge.png", png_header(10_000, 10_000), "10000 x 10000 = 100,000,000 pixels is over"),
    ("bomb.png", png_header(20_000, 20_000), "pixel limit"),
])
def test_bad_uploads_give_one_line_and_keep_the_state(copier, name, data, says):
    for upload, before in ((copier.upload_sketch, copier.view().sketch),
                           (copier.upload_reference, copier.view().reference)):
        view = upload(data, name)
        assert says in view.message and name in view.message and "\n" not in view.message
        assert np.array_equal(view.sketch if upload == copier.upload_sketch else view.reference, before)
    good = copier.upload_sketch(png(sample_images()[0].image), "fine.png")  # still works after
    assert good.message == "" and "fine.png" in good.sketch_label


def test_the_size_limit_is_read_from_the_header(copier, monkeypatch):
    opened = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: opened.append(self.size) or real(self))
    copier.upload_sketch(png_header(5000, 4000), "big.png")
    assert "5000 x 4000 = 20,000,000 pixels is over the 16,777,216-pixel limit" in copier.message
    assert not opened  # refused before any decoding


def test_save_writes_the_current_output(copier, tmp_path):
    view = copier.set_reference(2)
    path = copier.save(tmp_path / "out" / "mine.png")
    assert path.is_file() and "saved" in copier.message and "32 x 32" in copier.message
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), view.output)
    rooted = Demo({"scft-triplet": StandIn()}, DATA, sample_images(), root=tmp_path,
                  save_path="results/try.png")
    assert rooted.save() == tmp_path / "results" / "try.png"  # relative to the root, not the cwd
    assert rooted.message == "saved results/try.png (32 x 32)"
    empty = Demo({}, DATA, sample_images())
    assert empty.save(tmp_path / "none.png") is None and "no trained model" in empty.message
    assert empty.view().output is None and empty.view().attention is None


def test_missing_arms_are_listed_with_the_command_that_trains_them(monkeypatch, tmp_path):
    from paperlib.training.snapshot import save_snapshot
    from paperlib.training.snapshot import FINAL

    monkeypatch.setattr(experiments, "run_path",
                        lambda profile, name, seed=0, dataset=None: tmp_path / profile / f"{name}-seed{seed}")
    c = experiments.run_config("smoke", "scft-triplet", 0)
    (tmp_path / "smoke" / "scft-triplet-seed0").mkdir(parents=True)
    save_snapshot(Generator(c.model), c, 4, tmp_path / "smoke" / "scft-triplet-seed0" / FINAL)
    (tmp_path / "smoke" / "add-seed0").mkdir()  # started, not finished
    trained, missing = arm_status("smoke", 0)
    assert list(trained) == ["scft-triplet"]
    assert [m.name for m in missing] == [n for n in experiments.ARMS if n != "scft-triplet"]
    assert [m.label for m in missing][:2] == [experiments.ARM_LABELS[n] for n in experiments.ARMS[1:3]]
    reasons = {m.name: m.reason for m in missing}
    assert "incomplete" in reasons["add"] and reasons["adain"] == "not trained"
    for m in missing:
        args = shlex.split(m.command)
        assert args[:4] == ["python", "-m", "paperlib", "train"]
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        profile = args[args.index("--profile") + 1]
        assert override(get_profile(profile), sets) == experiments.run_config("smoke", m.name, 0)
        assert args[-1] == f"runs/smoke/{m.name}-seed0"
    monkeypatch.setattr(demo_mod, "load_test_images", lambda cfg: sample_images())
    d = Demo.from_runs("smoke", 0, save_path=tmp_path / "out.png")
    assert list(d.arms) == ["scft-triplet"] and d.view().output is not None
    text = d.status_markdown()
    assert all(m.command in text for m in missing) and "reproduce --only 03" in text
    assert not (tmp_path / "smoke" / "adain-seed0").exists()  # listed, never trained


def test_figure_has_a_row_per_reference_and_a_column_per_arm(smoke_arms):
    import matplotlib.pyplot as plt

    d = Demo(smoke_arms, DATA, sample_images(),
             missing=[demo_mod.MissingArm("scft-l1", "SCFT + L1", "not trained", "cmd", "04")])
    fig = try_it_figure(d, 0, [0, 2, None])
    axes = np.array(fig.axes).reshape(3, 4)
    titles = [ax.get_title() for ax in axes[0]]
    assert titles[:2] == ["sketch", "reference"] and titles[2].startswith("main model")
    assert titles[3] == "(a) addition"
    assert "zero reference" in axes[2][1].get_ylabel() and "own colours" in axes[0][1].get_ylabel()
    assert any("not trained" in t.get_text() and "SCFT + L1" in t.get_text() for t in fig.texts)
    plt.close(fig)
    assert d.view().reference_label.startswith("test image 0")  # back to the first reference


def test_widget_is_wired_to_the_demo(tmp_path):
    W = pytest.importorskip("ipywidgets")
    from paperlib.app.widget import build_widget

    d = Demo({"scft-triplet": StandIn()}, DATA, sample_images(), root=tmp_path)
    box = build_widget(d)
    assert isinstance(box, W.VBox)
    stack, found = list(box.children), []
    while stack:
        w = stack.pop()
        stack += list(getattr(w, "children", ()))
        found.append(w)
    images = [w for w in found if isinstance(w, W.Image)]
    assert len(images) == 5 and all(bytes(w.value).startswith(b"\x89PNG") for w in images)
    by_label = {getattr(w, "description", None): w for w in found}
    before = bytes(images[-1].value)
    by_label["cell row"].value = 0
    by_label["cell column"].value = 1
    assert d.cell == (0, 1)
    by_label["reference"].value = "none"
    assert "zero" in d.view().reference_label
    by_label["sketch file"].value = ({"name": "notes.png", "type": "image/png", "size": 5,
                                      "content": memoryview(b"hello"),
                                      "last_modified": datetime.now(timezone.utc)},)
    html = [w.value for w in found if isinstance(w, W.HTML) and "notes.png" in w.value]
    assert html and "not an image file" in html[0] and "Traceback" not in html[0]
    assert by_label["sketch"].value == "line"  # a refused upload does not switch the source
    assert bytes(images[-1].value) != before  # the gallery followed the zero reference
    by_label["save to"].value = "saved/out.png"
    by_label["save output as PNG"].click()
    assert (tmp_path / "saved" / "out.png").is_file()
    # The choices start where the demo stands: here the zero reference and test image 2.
    zero = Demo({"scft-triplet": StandIn()}, DATA, sample_images(), sketch_index=2,
                reference_index=None)
    start = {w.description: w.value for w in build_widget(zero).children[1].children[:2]}
    assert start == {"sketch": "line", "test image": 2}
    start = {w.description: w.value for w in build_widget(zero).children[2].children[:2]}
    assert start == {"reference": "none", "test image": 0}


def test_screenshot_command_names_what_is_missing(capsys):
    from paperlib.__main__ import main

    assert main(["screenshot", "--chromium", "/nonexistent/chromium"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/chromium" in err or "playwright is not installed" in err


def test_an_sga_arm_is_the_default_main_arm_and_shows_its_attention():
    """Without the registry's main arms, an arm with an attention map (SCFT or the opt-in
    stop-gradient attention "sga") is shown, not the first arm."""
    torch.manual_seed(0)
    sga = Generator(override(get_profile("smoke"), {"model.aggregation": "sga"}).model).eval()
    d = Demo({"add": StandIn("add"), "my-sga": sga}, DATA, sample_images(), reference_index=1)
    assert d.main == "my-sga"
    att = d.view().attention
    assert att is not None and att.shape == d.view().reference.shape
