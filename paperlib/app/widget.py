"""The ipywidgets front end of notebook 08: `build_widget` wires widgets to a
`paperlib.app.demo.Demo`, which holds every choice and does all the work. ipywidgets (and
ipyevents, for clicks on the sketch) are imported only when a widget is built, so the demo logic
and its tests need neither.
"""
from __future__ import annotations

import html
import io

import numpy as np
from PIL import Image

from ..study.registry import ARM_LABELS
from .demo import Demo, MissingArm, View, one_line


def png_bytes(img: np.ndarray, display: int = 256) -> bytes:
    """PNG of `img` for display: small images enlarged by whole pixels (crisp), large ones
    shrunk to `display` on the longer side (the full size is what `save` writes)."""
    import cv2  # OpenCV is large: loaded by the functions that resize or filter

    H, W = img.shape[:2]
    if max(H, W) < display:
        k = max(1, display // max(H, W))
        img = np.repeat(np.repeat(img, k, axis=0), k, axis=1)
    elif max(H, W) > display:
        s = display / max(H, W)
        img = cv2.resize(img, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


CAPTION = "<div style='line-height:1.35'>"  # the widget's HTML is double-spaced by default
LABEL = "<div style='font-size:11px;line-height:1.25;height:2.6em'>"  # two lines for every arm


def build_widget(demo: Demo):
    """The ipywidgets box for `demo`: choices on top, then sketch | reference | attention |
    output, the two cell sliders (or a click on the sketch, with ipyevents), every trained arm,
    the arms not trained, and a save button. All logic stays in `demo`."""
    # the notebook's widget libraries: only the notebook needs them (tests/test_imports.py)
    import ipywidgets as W

    blank = np.full((8, 8, 3), 255, np.uint8)
    img_layout = dict(width="256px", height="auto", object_fit="contain", border="1px solid #ccc")
    tests = [(f"{i}: {t.key}", i) for i, t in enumerate(demo.test_images)]
    sk_kind = W.Dropdown(options=[("test image: line art", "line"),
                                  ("test image: XDoG of its colours", "xdog"),
                                  ("your file", "upload")], value="line", description="sketch")
    sketch_index = demo.picked_index("sketch")
    sk_pick = W.Dropdown(options=tests, value=sketch_index if sketch_index is not None else 0,
                         description="test image")
    sk_up = W.FileUpload(accept="image/*", multiple=False, description="sketch file")
    ref_index = demo.picked_index("reference")
    rf_kind = W.Dropdown(options=[("test image", "test"), ("your file", "upload"),
                                  ("none (zero reference)", "none")],
                         value="test" if demo.has_reference else "none", description="reference")
    rf_pick = W.Dropdown(options=tests, value=ref_index if ref_index is not None else 0,
                         description="test image")
    rf_up = W.FileUpload(accept="image/*", multiple=False, description="reference file")
    main = W.Dropdown(options=[(ARM_LABELS.get(n, n), n) for n in demo.arms], value=demo.main,
                      description="model", layout=W.Layout(width="380px"))
    base = demo.data_cfg.resolution
    size = W.Dropdown(options=sorted({base, demo.size, 2 * base, 4 * base}), value=demo.size,
                      description="working size", style={"description_width": "initial"})
    row = W.IntSlider(description="cell row", min=0, max=0)
    col = W.IntSlider(description="cell column", min=0, max=0)
    images = {k: W.Image(format="png", layout=W.Layout(**img_layout))
              for k in ("sketch", "reference", "attention", "output")}
    captions = {k: W.HTML() for k in images}
    arms = {n: W.Image(format="png", layout=W.Layout(width="150px", height="auto")) for n in demo.arms}
    message = W.HTML()
    save_to = W.Text(value=str(demo.save_path), description="save to", layout=W.Layout(width="460px"))
    save = W.Button(description="save output as PNG", icon="download", layout=W.Layout(width="200px"))
    save_hint = W.HTML(f"<i>a relative path starts at {html.escape(demo.root_label)}</i>")
    busy = {"on": False}  # programmatic widget updates must not fire the callbacks again

    def show(view: View):
        busy["on"] = True
        try:
            gh, gw = view.grid
            row.max, col.max = gh - 1, gw - 1
            row.value, col.value = view.cell
            images["sketch"].value = png_bytes(view.sketch)
            images["reference"].value = png_bytes(view.reference)
            images["attention"].value = png_bytes(
                view.attention if view.attention is not None else view.reference)
            images["output"].value = png_bytes(view.output if view.output is not None else blank)
            att_of = html.escape(ARM_LABELS.get(view.main, view.main or "no trained model"))
            texts = {
                "sketch": f"<b>sketch</b>: {html.escape(view.sketch_label)}; feature grid {gh} x {gw}",
                "reference": f"<b>reference</b>: {html.escape(view.reference_label)}",
                "attention": (f"<b>attention</b> of cell ({view.cell[0]}, {view.cell[1]}), {att_of}"
                              if view.attention is not None else
                              f"<b>no attention map</b>: {att_of} has no SCFT"),
                "output": (f"<b>output</b>: {att_of}" if view.output is not None
                           else "<b>no output</b>: no arm is trained"),
            }
            for k, text in texts.items():
                captions[k].value = f"{CAPTION}{text}</div>"
            for n, w in arms.items():
                w.value = png_bytes(view.outputs[n], 150)
            colour = "#b00020" if view.message and not view.message.startswith("saved") else "#333"
            message.value = f"<span style='color:{colour}'>{html.escape(view.message)}</span>"
        finally:
            busy["on"] = False

    def guarded(fn):
        def handler(*args):
            if busy["on"]:
                return
            try:
                result = fn(*args)
                show(result if isinstance(result, View) else demo.view())
            except Exception as e:  # the kernel keeps working; the user sees one line
                demo.message = one_line(f"{type(e).__name__}: {e}")
                show(demo.view())
        return handler

    def on_upload(widget, upload, kind_widget):
        def handler(change):
            files = change["new"]
            if not files:
                return None
            f = files[-1]
            view = upload(bytes(f["content"]), f["name"])
            if not view.message:
                busy["on"] = True
                kind_widget.value = "upload"
                busy["on"] = False
            return view
        widget.observe(guarded(handler), names="value")

    sk_kind.observe(guarded(lambda ch: demo.set_sketch(sk_pick.value, ch["new"])), names="value")
    sk_pick.observe(guarded(lambda ch: demo.set_sketch(
        ch["new"], sk_kind.value if sk_kind.value != "upload" else "line")), names="value")
    on_upload(sk_up, demo.upload_sketch, sk_kind)
    references = {"test": lambda: demo.set_reference(rf_pick.value),
                  "none": lambda: demo.set_reference(None), "upload": demo.use_uploaded_reference}
    rf_kind.observe(guarded(lambda ch: references[ch["new"]]()), names="value")
    rf_pick.observe(guarded(lambda ch: demo.set_reference(ch["new"])), names="value")
    on_upload(rf_up, demo.upload_reference, rf_kind)
    if demo.arms:
        main.observe(guarded(lambda ch: demo.set_main(ch["new"])), names="value")
    size.observe(guarded(lambda ch: demo.set_size(ch["new"])), names="value")
    row.observe(guarded(lambda ch: demo.set_cell(ch["new"], col.value)), names="value")
    col.observe(guarded(lambda ch: demo.set_cell(row.value, ch["new"])), names="value")
    save.on_click(guarded(lambda _: demo.save(save_to.value)))

    click_hint = "move the sliders to pick a cell of the sketch's feature grid"
    try:  # clicks on the sketch need ipyevents; the sliders work without it
        # the notebook's widget libraries: only the notebook needs them (tests/test_imports.py)
        from ipyevents import Event

        ev = Event(source=images["sketch"], watched_events=["click"])

        def on_click(e):  # the event's position is in displayed pixels; the sketch has its own
            h, w = demo.sketch_shape
            return demo.click(e["relativeX"] / max(e["boundingRectWidth"], 1) * w,
                              e["relativeY"] / max(e["boundingRectHeight"], 1) * h)

        ev.on_dom_event(guarded(on_click))
        click_hint = "click the sketch, or move the sliders, to pick a cell of its feature grid"
    except ImportError:
        pass

    show(demo.view())
    panel = lambda k: W.VBox([images[k], captions[k]], layout=W.Layout(width="270px"))  # noqa: E731
    gallery = W.HBox([W.VBox([W.HTML(f"{LABEL}{html.escape(ARM_LABELS.get(n, n))}</div>"), w],
                             layout=W.Layout(width="160px")) for n, w in arms.items()])
    missing = W.HTML(_missing_html(demo.missing))
    return W.VBox([
        W.HTML("<h3>Try it: colour a sketch with every trained model</h3>"),
        W.HBox([sk_kind, sk_pick, sk_up]), W.HBox([rf_kind, rf_pick, rf_up]), W.HBox([main, size]),
        W.HBox([panel(k) for k in images]),
        W.HBox([row, col, W.HTML(f"<i>{click_hint}</i>")]),
        W.HTML("<b>every trained arm on this sketch and reference</b>"), gallery, missing,
        W.HBox([save, save_to, save_hint]), message,
    ])


def _missing_html(missing: list[MissingArm]) -> str:
    if not missing:
        return ""
    items = "".join(f"<li>{html.escape(m.label)} ({m.name}): {html.escape(m.reason)}; "
                    f"<code>{html.escape(m.command)}</code>"
                    + (f" or notebook {m.notebook}" if m.notebook else "") + "</li>" for m in missing)
    return f"<b>not trained</b> (nothing is trained from here):<ul>{items}</ul>"
