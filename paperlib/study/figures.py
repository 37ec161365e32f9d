"""Figures: image grids, loss curves, correspondences and attention maps (supplementary Fig. 14),
and the measurements of the study's tables (reference use, region size, spread over seeds, the
hue probe per angle)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import ConnectionPatch, Rectangle
import numpy as np
import torch

# the grids are drawn in core (training saves its samples with them); notebooks use them from here
from ..core.grid import image_grid, save_grid, to_numpy_image  # noqa: F401
from ..evaluation.evaluate import HUE_PROBE_ANGLES
from ..training.stats import read_stats
from .targets import HUE_ANGLE_GOAL, HUE_ANGLE_TARGET, MAP_DIAGONAL, targets_for, thresholds

QUERY_COLORS = ("red", "blue", "yellow", "green")  # the order of Fig. 14's columns (a)-(d)
ATTENTION_CMAP, ATTENTION_ALPHA = "inferno", 0.6  # Fig. 14 style heat over the reference


def loss_curves(runs: dict[str, str | Path], terms=("g_rec", "g_tr", "g_adv", "d_total",
                                                     "g_perc", "g_style")):
    """One panel per loss term, one line per run (label -> run folder)."""
    fig, axes = plt.subplots(2, (len(terms) + 1) // 2, figsize=(4 * ((len(terms) + 1) // 2), 6),
                             squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for label, run in runs.items():
            rows = [r for r in read_stats(run) if term in r]
            if rows:
                ax.plot([r["step"] for r in rows], [r[term] for r in rows], label=label)
        ax.set_title(term), ax.set_xlabel("step")
    if runs:
        axes.flat[0].legend(fontsize=8)
    else:  # e.g. the precision check on a CPU without bf16 units, which trains no short runs
        axes.flat[0].text(0.5, 0.5, "no runs", ha="center", va="center", transform=axes.flat[0].transAxes)
    fig.tight_layout()
    return fig


def _cell_centre(index: int, grid: int, size: int) -> tuple[float, float]:
    cell = size / grid
    r, c = divmod(int(index), grid)
    return (c + 0.5) * cell - 0.5, (r + 0.5) * cell - 0.5


def correspondence_figure(sketch, target, reference, corr, mask, n_lines: int = 24, seed: int = 0):
    """Sketch | a(I) | s(a(I)) with lines joining corresponding feature cells (one sample)."""
    grid = int(round(corr.numel() ** 0.5))
    size = sketch.shape[-1]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, img, title in zip(axes, (sketch, target, reference), ("sketch", "a(I)", "s(a(I))")):
        ax.imshow(to_numpy_image(img)), ax.set_title(title), ax.axis("off")
    valid = torch.nonzero(mask).flatten()
    rng = np.random.default_rng(seed)
    pick = rng.choice(valid.numpy(), size=min(n_lines, len(valid)), replace=False) if len(valid) else []
    cmap = plt.get_cmap("hsv")
    for j, p in enumerate(pick):
        colour = cmap(j / max(1, len(pick)))
        xa, ya = _cell_centre(p, grid, size)
        xb, yb = _cell_centre(corr[p], grid, size)
        axes[1].plot(xa, ya, "o", color=colour, ms=4)
        axes[2].plot(xb, yb, "o", color=colour, ms=4)
        fig.add_artist(ConnectionPatch((xa, ya), (xb, yb), "data", "data", axesA=axes[1],
                                       axesB=axes[2], color=colour, lw=0.8))
    fig.tight_layout()
    return fig


def attention_figure(sketches, references, attentions, queries: list[int]):
    """Fig. 14: per row, the sketch with coloured query squares, then the attention over the
    reference for each query. attentions: (B, P_sketch, P_ref); queries: sketch-grid indices."""
    n = sketches.shape[0]
    fig, axes = plt.subplots(n, 2 + len(queries), figsize=(2 * (2 + len(queries)), 2 * n),
                             squeeze=False)
    size = sketches.shape[-1]
    grid = int(round(attentions.shape[-1] ** 0.5))
    cell = size / grid
    for i in range(n):
        axes[i][0].imshow(to_numpy_image(references[i])), axes[i][0].set_title("reference")
        axes[i][1].imshow(to_numpy_image(sketches[i])), axes[i][1].set_title("sketch + queries")
        for j, q in enumerate(queries):
            colour = QUERY_COLORS[j % len(QUERY_COLORS)]
            r, c = divmod(q, grid)
            axes[i][1].add_patch(Rectangle((c * cell - 0.5, r * cell - 0.5), cell, cell,
                                           fill=False, edgecolor=colour, lw=2))
            att = attentions[i, q].float().reshape(grid, grid).cpu().numpy()
            axes[i][2 + j].imshow(to_numpy_image(references[i]))
            axes[i][2 + j].imshow(np.kron(att / max(att.max(), 1e-12), np.ones((int(cell),) * 2)),
                                  cmap=ATTENTION_CMAP, alpha=ATTENTION_ALPHA, extent=(-0.5, size - 0.5, size - 0.5, -0.5))
            axes[i][2 + j].set_title(f"({'abcd'[j % 4]}) {colour}")
        for ax in axes[i]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def attention_overlay(reference: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The reference (H,W,3) uint8 with an (H,W) attention map drawn over it as in
    `attention_figure`: the map scaled to its maximum, coloured, blended -> (H,W,3) uint8."""
    heat = heat.astype(np.float64)
    rgb = plt.get_cmap(ATTENTION_CMAP)(heat / max(float(heat.max()), 1e-12))[..., :3]
    out = ATTENTION_ALPHA * rgb * 255 + (1 - ATTENTION_ALPHA) * reference.astype(np.float64)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def pick_queries(sketch: torch.Tensor, corr_mask: torch.Tensor, k: int = 4) -> list[int]:
    """k query cells spread over the drawing: valid cells with the most ink, far apart."""
    grid = int(round(corr_mask.numel() ** 0.5))
    ink = (sketch[0] < 0).float()
    cell = sketch.shape[-1] // grid
    density = ink.reshape(grid, cell, grid, cell).mean((1, 3)).flatten()  # (P,)
    density = torch.where(corr_mask, density + 1e-3, torch.full_like(density, -1.0))
    chosen: list[int] = []
    # many cells hold the same ink: stable ranks tied cells by position on every CPU and device
    for idx in torch.argsort(density, descending=True, stable=True).tolist():
        r, c = divmod(idx, grid)
        if density[idx] < 0:
            break
        if all(abs(r - rr) + abs(c - cc) >= max(1, grid // 3)
               for rr, cc in (divmod(q, grid) for q in chosen)):
            chosen.append(idx)
        if len(chosen) == k:
            break
    return chosen


@torch.no_grad()
def reference_grid(G, sketches: torch.Tensor, references: torch.Tensor):
    """Fig. 1 layout: row i is sketch i, column j is reference j; the top row shows references."""
    n, m = sketches.shape[0], references.shape[0]
    fig, axes = plt.subplots(n + 1, m + 1, figsize=(1.5 * (m + 1), 1.5 * (n + 1)), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0][0].axis("off")
    for j in range(m):
        axes[0][j + 1].imshow(to_numpy_image(references[j]))
    for i in range(n):
        axes[i + 1][0].imshow(to_numpy_image(sketches[i]))
        out, _ = G(sketches[i:i + 1].expand(m, -1, -1, -1), references)
        for j in range(m):
            axes[i + 1][j + 1].imshow(to_numpy_image(out[j]))
    fig.tight_layout()
    return fig


def reference_use_curves(long_df, x: str = "step", metrics=None, target_runs=None,
                         dataset: str | None = None):
    """One panel per reference-use metric against training step (or minutes), a line per run,
    and a dashed line at each target (targets.TARGETS) of `target_runs` on that metric, labelled
    with whom it is for. long_df has columns run, step, minutes, metric, value (tables.curves);
    `target_runs` None means the runs plotted (a table whose `run` holds something else, such
    as notebook 09's datasets, names the registry runs it shows); `dataset` picks the targets
    (targets.targets_for: None is $PAPERLIB_DATASET, else openmoji)."""
    import seaborn as sns  # seaborn only for the figures that use it

    metrics = list(metrics or dict.fromkeys(long_df["metric"]))
    runs = list(dict.fromkeys(long_df["run"])) if target_runs is None else list(target_runs)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sub = long_df[long_df["metric"] == m]
        sns.lineplot(data=sub, x=x, y="value", hue="run", marker="o", ax=ax,
                     legend=(ax is axes[0][0]))
        for level, scope in thresholds(m, runs, targets_for(dataset)):
            ax.axhline(level, color="grey", ls="--", lw=1)
            # the main model and the arms have different hue targets: say whose line it is
            ax.annotate(f"{scope} {level:g}", (1, level), xycoords=("axes fraction", "data"),
                        xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                        fontsize=6, color="grey")
        ax.set_title(m, fontsize=9), ax.set_ylabel("")
    if axes[0][0].get_legend():
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def region_size_bars(df):
    """Share of regions, and mean dE00 and |dH*| per region, by region-area bin, a bar per run
    (mean over seeds, the bars' lines the spread between seeds). df: tables.region_size_table."""
    import seaborn as sns  # seaborn only for the figures that use it

    panels = [("share_regions", "share of regions"), ("mean_de", "region dE00"),
              ("mean_dh", "region |dH*| (hue)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.3), squeeze=False)
    order = list(dict.fromkeys(df["bin"]))
    for ax, (col, title) in zip(axes[0], panels):
        sns.barplot(data=df, x="bin", y=col, hue="run", order=order, errorbar="sd", ax=ax,
                    legend=(ax is axes[0][0]))
        ax.set_title(title, fontsize=9), ax.set_xlabel("region area (64 px image)"), ax.set_ylabel("")
        ax.tick_params(axis="x", labelsize=7)
    if axes[0][0].get_legend():
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def spread_points(ax, sub, order: list[str], flat: bool = False) -> None:
    """Every seed of each run in `order` as a point, the mean over seeds with its 95% interval
    (sub: long rows run, value); flat lays the runs along the y axis, for long labels."""
    import seaborn as sns  # seaborn only for the figures that use it

    run, val = ("y", "x") if flat else ("x", "y")
    sns.stripplot(data=sub, **{run: "run", val: "value"}, order=order, color="k",
                  size=4 if flat else 5, ax=ax, jitter=0.05 if flat else 0.08)
    sns.pointplot(data=sub, **{run: "run", val: "value"}, order=order, errorbar=("ci", 95),
                  linestyle="none", color="C3", markers="|" if flat else "_", capsize=0.2, ax=ax)
    ax.set_xlabel(""), ax.set_ylabel("")


def seed_spread(df, metrics: list[str], runs: list[str]):
    """One panel per metric: every seed as a point, the mean over seeds with a 95% interval."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        spread_points(ax, df[(df["metric"] == m) & df["run"].isin(runs)], runs)
        ax.set_title(m, fontsize=9)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    return fig


STRIP_WIDTH = 0.8  # seaborn's width of a category, shared among the hue levels when dodged


def hue_angle_points(df, runs=None):
    """The hue probe's map diagonal at each probe angle, a panel per entry (a*<-a*, b*<-b*):
    every seed a point, the mean over seeds with its 95% interval, a colour per run; a dashed
    line at the target (targets.HUE_ANGLE_TARGET) and a dotted one at the goal beyond it
    (targets.HUE_ANGLE_GOAL). df: tables.hue_angle_table (its pooled rows are not drawn);
    `runs` None means every run in it, in its order."""
    import seaborn as sns  # seaborn only for the figures that use it

    angles = [f"{a:.0f}" for a in HUE_PROBE_ANGLES]
    runs = list(dict.fromkeys(df["run"])) if runs is None else list(runs)
    sub = df[df["run"].isin(runs) & df["angle"].astype(str).isin(angles)].astype({"angle": str})
    # the means sit over their seeds' strip: pointplot's dodge is the span of stripplot's offsets
    span = STRIP_WIDTH * (len(runs) - 1) / len(runs) if len(runs) > 1 else False
    fig, axes = plt.subplots(1, len(MAP_DIAGONAL), figsize=(4.2 * len(MAP_DIAGONAL), 3.3),
                             squeeze=False, sharey=True)
    for ax, (entry, name) in zip(axes[0], MAP_DIAGONAL.items()):
        common = dict(data=sub, x="angle", y=entry, hue="run", order=angles, hue_order=runs, ax=ax)
        sns.pointplot(**common, dodge=span, errorbar=("ci", 95), linestyle="none", markers="_",
                      markersize=14, capsize=0.15, legend=(ax is axes[0][0]))
        # the seeds over the means, outlined: two seeds sit at the ends of their interval
        sns.stripplot(**common, dodge=len(runs) > 1, jitter=0.05, size=5, linewidth=0.6,
                      edgecolor="k", zorder=3, legend=False)
        target = (HUE_ANGLE_TARGET.threshold, f"target ({HUE_ANGLE_TARGET.scope})", "--")
        for level, words, style in (target, (HUE_ANGLE_GOAL, "goal", ":")):
            ax.axhline(level, color="grey", ls=style, lw=1)
            ax.annotate(f"{words} {level:g}", (1, level), xycoords=("axes fraction", "data"),
                        xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                        fontsize=6, color="grey")
        # room above the goal for its label when every point lies under it
        ax.set_ylim(top=max(ax.get_ylim()[1], HUE_ANGLE_GOAL + 0.1))
        ax.set_title(f"{name} per probe angle (1: the reference's hue)", fontsize=9)
        ax.set_xlabel("hue turned by (degrees)"), ax.set_ylabel("")
    if axes[0][0].get_legend():
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def memory_bars(df, run: str):
    """Region dE00 and hue error dH* of `run`'s outputs against the reference's colours a(I) and
    against the unjittered image I, a bar per dataset (mean over seeds, the spread between
    seeds as the line). df: generalisation.memory_by_dataset."""
    import seaborn as sns  # seaborn only for the figures that use it

    sub = df[(df["run"] == run) & ~df["compared"].str.startswith("a(I)")]
    panels = [("region_de", "region dE00"), ("region_dh", "region |dH*| (hue)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 2.8), squeeze=False)
    for ax, (col, title) in zip(axes[0], panels):
        sns.barplot(data=sub, y="compared", x=col, hue="dataset", errorbar=("pi", 100), ax=ax,
                    legend=(ax is axes[0][0]))
        ax.set_title(title, fontsize=9), ax.set_xlabel(""), ax.set_ylabel("")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def case_spread(df, metrics: list[str], cases: list[str]):
    """seed_spread on its side, for long row labels: one panel per metric, a row per case (the
    labels on the first panel), every seed a point, the mean over seeds with its 95% interval."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 2.6, 0.42 * len(cases) + 1.0),
                             squeeze=False, sharey=True)
    for ax, m in zip(axes[0], metrics):
        spread_points(ax, df[(df["metric"] == m) & df["run"].isin(cases)], cases, flat=True)
        ax.set_title(m, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", color="0.9")
    fig.tight_layout()
    return fig


# The README's picture: each dataset's Fig. 1 grid (notebook 07's fig_reference_grid.png) under
# its name, side by side, small enough for a page read on GitHub
README_WIDTH = 1200  # px, the whole picture
README_COLOURS = 256  # a palette PNG: 2/5 the bytes of RGB (196 KB against 497 KB at 1200 px)
DATASET_TITLES = {"openmoji": "OpenMoji", "faces": "DiceBear faces"}


def side_by_side(panels: dict[str, Path], out: Path, width: int = README_WIDTH,
                 colours: int = README_COLOURS) -> Path | None:
    """Compose the images of `panels` (title -> PNG) in one row, each scaled to the same width
    under its title, into the PNG `out` at `width` px; `out`, or None when any input is missing
    (then nothing is written: a picture of one dataset would pass for both)."""
    from PIL import Image, ImageDraw, ImageFont
    from matplotlib import font_manager

    if not panels or any(not Path(p).is_file() for p in panels.values()):
        return None
    margin, gap, title_px = 10, 20, 26
    n = len(panels)
    cell = (width - 2 * margin - (n - 1) * gap) // n
    images = []
    for path in panels.values():
        with Image.open(path) as im:
            rgb = im.convert("RGBA")
        flat = Image.new("RGB", rgb.size, "white")  # a transparent pixel reads as the page
        flat.paste(rgb, mask=rgb.getchannel("A"))
        height = max(1, round(cell * flat.height / flat.width))
        images.append(flat.resize((cell, height), Image.LANCZOS))
    band = title_px + 14
    canvas = Image.new("RGB", (width, 2 * margin + band + max(i.height for i in images)), "white")
    draw = ImageDraw.Draw(canvas)
    # matplotlib's own sans font: the picture looks the same on every machine that can draw figures
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), title_px)
    for k, (title, image) in enumerate(zip(panels, images)):
        left = margin + k * (cell + gap)
        draw.text((left + cell // 2, margin + title_px // 2), title, fill="black", font=font,
                  anchor="mm")
        canvas.paste(image, (left, margin + band))
    if colours:
        canvas = palette_image(canvas, colours)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    return out


def palette_image(image, colours: int = README_COLOURS):
    """`image` (RGB) as a dithered palette image of `colours` colours, its white and black
    pixels exactly white and black. The palette covers the colours by area (maximum coverage:
    a median cut left a small pink lock of hair grey), the dithering keeps each patch's mean
    colour (a palette alone bands soft gradients into patches the model did not paint), and
    Pillow maps a colour to the palette by boxes of colours, not exactly: left alone, the white
    page comes out off-white."""
    from PIL import Image

    pal = image.quantize(colours, method=Image.Quantize.MAXCOVERAGE)
    entries = np.array(pal.getpalette()).reshape(-1, 3)
    index = np.asarray(image.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG)).copy()
    rgb = np.asarray(image)
    taken = []
    for exact in ((255, 255, 255), (0, 0, 0)):
        distance = np.abs(entries - exact).sum(1)
        distance[taken] = np.iinfo(distance.dtype).max  # white and black keep an entry each
        nearest = int(distance.argmin())
        taken.append(nearest)
        entries[nearest] = exact
        index[(rgb == exact).all(-1)] = nearest
    out = Image.fromarray(index.astype(np.uint8)).convert("P")  # "L" to "P": indices kept
    out.putpalette(entries.astype(np.uint8).flatten().tolist())
    return out


def readme_figure(grids: dict[str, Path], out: Path) -> Path | None:
    """results/fig_readme.png: the datasets' reference grids (dataset -> fig_reference_grid.png)
    side by side under their names (DATASET_TITLES); None, writing nothing, until every dataset's
    grid exists."""
    return side_by_side({DATASET_TITLES.get(d, d): p for d, p in grids.items()}, out)
