"""`python -m paperlib evaluate`: the paper's metrics, and measurements in place of its user study.

Two test settings, both deterministic (fixed seed):
- augmented-self: reference = s(a(I)) of the test image, ground truth a(I) is known, so SSIM,
  PSNR and the per-region colour error (faithfulness, part by part) are defined;
- cross-reference: sketch of test image i with the reference of test image j != i (a fixed
  derangement), as the paper pairs them at inference; FID/KID against the real test images, and
  the palette distance between output and reference.
Whether the reference is used at all: the augmented-self output is also made with another test
image's augmented reference (self_wrong, the same derangement), and the dE00 the right reference
saves is reported (ref_gain_de_self); cross outputs are compared with their own reference and
with a third image's reference (palette_follow_cross, below 1 when outputs follow their
reference). `reference_use` gives these numbers without FID, for learning curves and probes.
With `no_reference` every reference is the zero-filled image [S 6.5].
Each metric is one JSON line in the run's metrics.jsonl with its provenance.
"""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import from_dict, override
from ..core import augment
from ..core.color import rotate_hue
from ..core.perceptual import perceptual_name
from ..data.datasets import build_dataset
from ..paths import append_atomic
from ..training import faults
from ..training.snapshot import load_generator, load_pt, resolve_snapshot
from . import fid, metrics
from .per_image import save_activations, save_values, values_from_errors


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10)
        # only the package decides the numbers; notebooks and results change during a reproduction
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "paperlib"],
                               capture_output=True, text=True, cwd=Path(__file__).parent,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def derangement(n: int, seed: int) -> torch.Tensor:
    """A random permutation with no fixed point: reference j != sketch i. It is one n-cycle
    (perm[k] -> perm[k-1]), so applying it twice is again fixed-point free for n >= 3 and
    differs from it everywhere (see other_reference_index)."""
    if n < 2:
        raise ValueError("cross-reference evaluation needs at least 2 test images")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return torch.roll(perm, 1)[torch.argsort(perm)]  # tie-safe: a permutation has no ties


def other_reference_index(cross: torch.Tensor) -> torch.Tensor:
    """For cross output i (sketch i, reference cross[i]), the index of a third test image whose
    reference it is compared with in palette_follow_cross: cross[cross[i]]. Since derangement
    is one n-cycle this is neither cross[i] nor, for n >= 3, i itself (whose colours the sketch
    might hint at); with n = 2 no third image exists and it is i."""
    return cross[cross]  # (N,)


def encoder_stride(G) -> int:
    """Input pixels per feature cell of G's encoders (the correspondence's grid); 16, Table 2's,
    for a stand-in without encoders."""
    enc = getattr(G, "enc_s", None)
    return int(enc.total_stride) if enc is not None else 16


@torch.no_grad()
def generate(G, dataset, *, batch_size: int = 32, seed: int = 0, no_reference: bool = False,
             data_cfg=None, progress: bool = True, attention: bool = False) -> dict:
    """Run the generator over a dataset in the settings of the module docstring; returns CPU
    tensors: self, self_wrong (sketch i with the augmented reference of cross[i]) and cross
    outputs, with the inputs and cross_index (N,). With attention=True also
    attention_hit_rate on the augmented-self batch (nan when G returns no attention)."""
    n = len(dataset)
    items = [dataset[i] for i in range(n)]
    image = torch.stack([it["image"] for it in items])  # (N,3,H,W)
    sketch = torch.stack([it["sketch"] for it in items])  # (N,1,H,W)
    cfg = augment.scoring_config(data_cfg)
    aug = augment.augmented_self(image, cfg, torch.Generator().manual_seed(seed),
                                 stride=encoder_stride(G))
    cross = derangement(n, seed)
    device = next(G.parameters()).device
    self_out, wrong_out, cross_out = [], [], []
    hits, valid, has_attention = 0.0, 0, True
    for s in tqdm(range(0, n, batch_size), desc="generate",
                  **({} if progress else {"disable": True})):
        sl = slice(s, s + batch_size)
        sk = sketch[sl].to(device)
        ref_self = None if no_reference else aug["reference"][sl].to(device)
        ref_wrong = None if no_reference else aug["reference"][cross[sl]].to(device)
        ref_cross = None if no_reference else image[cross[sl]].to(device)
        rgb, aux = G(sk, ref_self, return_attention=attention)
        self_out.append(rgb.float().cpu())
        # Without references both inputs are the same: the gain is 0 by construction.
        wrong_out.append(self_out[-1] if no_reference else G(sk, ref_wrong)[0].float().cpu())
        cross_out.append(self_out[-1] if no_reference else G(sk, ref_cross)[0].float().cpu())
        if attention and "attention" in aux:
            mask = aug["corr_mask"][sl]  # (b,P)
            # Rates weighted by their valid positions add up to the rate over the whole set.
            hits += metrics.attention_hit_rate(aux["attention"].cpu(), aug["corr"][sl], mask) \
                * int(mask.sum())
            valid += int(mask.sum())
        has_attention = has_attention and "attention" in aux
    out = {"image": image, "sketch": sketch, "target": aug["target"],
           "reference": aug["reference"], "cross_reference": image[cross], "cross_index": cross,
           "self": torch.cat(self_out), "self_wrong": torch.cat(wrong_out),
           "cross": torch.cat(cross_out)}
    if attention:
        out["attention_hit_rate"] = hits / max(valid, 1) if has_attention else math.nan
    return out


def colour_errors(out: dict) -> dict:
    """The colour comparisons behind reference_values, per region and per image, computed once
    for it and for the per-image values of evaluation.intervals: region_color_error of the
    augmented-self output (`region`) and of the output with another image's reference
    (`wrong`), and each cross output's palette distance to its own reference and to a third
    image's (`palette_own`, `palette_other`, (N,))."""
    other_ref = out["image"][other_reference_index(out["cross_index"])]  # (N,3,H,W)
    return {"region": metrics.region_color_error(out["self"], out["target"], out["sketch"]),
            "wrong": metrics.region_color_error(out["self_wrong"], out["target"], out["sketch"]),
            "palette_own": metrics.palette_distance(out["cross"], out["cross_reference"]),
            "palette_other": metrics.palette_distance(out["cross"], other_ref)}


def reference_values(out: dict, errors: dict | None = None) -> dict[str, float]:
    """The metrics of generate's output that need no FID network: region colour error of the
    augmented-self output (dE00, its lightness / chroma / hue split, share below the JND),
    ref_gain_de_self, palette_cross and palette_follow_cross. `errors`: colour_errors(out),
    computed here when not given."""
    errors = errors or colour_errors(out)
    region, wrong = errors["region"], errors["wrong"]
    own, other = errors["palette_own"], errors["palette_other"]
    return {"region_de_self": float(region["mean_de"]),
            "region_jnd_share_self": float(region["share_below_jnd"]),
            "region_dl_self": region["mean_dl"], "region_dc_self": region["mean_dc"],
            "region_dh_self": region["mean_dh"],
            "ref_gain_de_self": metrics.reference_gain(wrong["region_de"], region["region_de"]),
            "palette_cross": float(np.nanmean(own)),
            "palette_follow_cross": metrics.palette_follow_ratio(own, other)}


def first_n(dataset, n: int):
    """The first n items of a dataset (all of it when n is 0 or exceeds its size)."""
    if n and n < len(dataset):
        return torch.utils.data.Subset(dataset, range(n))
    return dataset


@torch.no_grad()
def generate_in_eval_mode(G, data_cfg, n: int, seed: int, split: str, batch_size: int,
                          attention: bool) -> dict:
    """generate on the first n images of a split with G in eval mode (its mode restored)."""
    ds = first_n(build_dataset(data_cfg, split), n)
    was_training = G.training
    G.eval()
    try:
        return generate(G, ds, batch_size=batch_size, seed=seed, data_cfg=data_cfg,
                        progress=False, attention=attention)
    finally:
        G.train(was_training)


# [I] Regions under one feature cell of mini's 4x4 grid (16 x 16 px at 64 px): at that size a
# grid of reference colours cannot tell a region from its neighbours, and most of the main
# model's OpenMoji region error sits there (results/table_region_size.csv).
SMALL_REGION_PX = 256


def reference_use(G, data_cfg, *, n: int = 48, seed: int = 0, split: str = "test",
                  batch_size: int = 48) -> dict[str, float]:
    """How much the generator uses its reference, on the first n images of a split, without
    FID (cheap enough for every training snapshot): reference_values plus
    attention_hit_rate (nan for models without attention), and the region error split at
    SMALL_REGION_PX: region_de_small_self over the regions smaller than that, region_de_large_self
    over the rest (nan where none is). G runs in eval mode; its mode is restored afterwards."""
    out = generate_in_eval_mode(G, data_cfg, n, seed, split, batch_size, attention=True)
    errors = colour_errors(out)
    region = errors["region"]
    small, large = metrics.region_error_by_size(region["region_de"], region["region_lch"],
                                                region["region_area"],
                                                edges=(0, SMALL_REGION_PX, math.inf))
    return {**reference_values(out, errors), "attention_hit_rate": float(out["attention_hit_rate"]),
            "region_de_small_self": small["mean_de"], "region_de_large_self": large["mean_de"]}


# [I] The hue probe turns each image's colours (ground truth and reference alike) by one of
# these angles in the CIELAB a*b* plane, in turn, so that no colour can be painted from memory.
HUE_PROBE_ANGLES = (0.0, 90.0, 180.0, 270.0)


def map_keys(suffix: str = "") -> tuple[str, ...]:
    """The names of the 2x2 chroma map's entries (a* from a*, a* from b*, b* from a*, b* from b*),
    with `suffix` appended ("_90": the map at one probe angle)."""
    return tuple(f"transfer_{k}{suffix}" for k in ("aa", "ab", "ba", "bb"))


def fitted_map(out: torch.Tensor, target: torch.Tensor, suffix: str = "") -> dict[str, float]:
    """metrics.chroma_transfer_batch's 2x2 map from target's (a*, b*) to out's, by map_keys
    (NaN when too few pixels are coloured)."""
    try:
        m = metrics.chroma_transfer_batch(out, target)["matrix"]  # (2, 2)
    except ValueError:
        m = np.full((2, 2), np.nan)
    return dict(zip(map_keys(suffix), (float(v) for v in m.reshape(-1))))


@torch.no_grad()
def hue_transfer(G, data_cfg, *, n: int = 48, seed: int = 0, split: str = "test",
                 batch_size: int = 48) -> dict[str, float]:
    """Whether the generator carries its reference's hue over, along both chroma axes.

    Pooled: the augmented-self pairs of the first n images of a split have their a(I) and
    s(a(I)) turned in hue together (image k by HUE_PROBE_ANGLES[k % 4], core.color.rotate_hue),
    so a colour learnt from the sketch is as often wrong as right. Returned: the 2x2 map
    metrics.chroma_transfer_batch fits from the turned ground truth's (a*, b*) to the output's,
    as transfer_aa (a* from a*), transfer_ab (a* from b*), transfer_ba, transfer_bb (the
    identity when hue follows the reference; NaN when too few pixels are coloured), and the
    region colour error against the turned ground truth (region_de_rot, region_dh_rot).

    Per angle: every one of the n pairs turned by one probe angle A, the same map fitted on
    those alone, as transfer_aa_A ... transfer_bb_A (A = 0, 90, 180, 270). A colour far from
    those the data taught (180 degrees turns a yellow into a blue) shows here as a diagonal
    that shrinks toward zero: the output's chroma collapses toward the colours of the training
    set. G runs in eval mode; its mode is restored."""
    ds = first_n(build_dataset(data_cfg, split), n)
    items = [ds[i] for i in range(len(ds))]
    image = torch.stack([it["image"] for it in items])  # (N,3,H,W)
    sketch = torch.stack([it["sketch"] for it in items])  # (N,1,H,W)
    aug = augment.augmented_self(image, augment.scoring_config(data_cfg),
                                 torch.Generator().manual_seed(seed), stride=encoder_stride(G))
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()

    def colour(reference: torch.Tensor) -> torch.Tensor:
        return torch.cat([G(sketch[s:s + batch_size].to(device),
                            reference[s:s + batch_size].to(device))[0].float().cpu()
                          for s in range(0, len(items), batch_size)])  # (N,3,H,W)

    try:
        angles = torch.tensor([HUE_PROBE_ANGLES[k % len(HUE_PROBE_ANGLES)] for k in range(len(items))])
        target = rotate_hue(aug["target"], angles)
        out = colour(rotate_hue(aug["reference"], angles))
        result = fitted_map(out, target)
        region = metrics.region_color_error(out, target, sketch)
        result.update(region_de_rot=float(region["mean_de"]), region_dh_rot=float(region["mean_dh"]))
        for angle in HUE_PROBE_ANGLES:
            turn = torch.full((len(items),), angle)  # (N,)
            result.update(fitted_map(colour(rotate_hue(aug["reference"], turn)),
                                     rotate_hue(aug["target"], turn), f"_{angle:.0f}"))
    finally:
        G.train(was_training)
    return result


def region_size_bins(G, data_cfg, *, n: int = 0, seed: int = 0, split: str = "test",
                     batch_size: int = 48) -> list[dict]:
    """metrics.region_error_by_size of the augmented-self outputs on the first n images of a
    split (all with n = 0): where, by region size, the colour error lies."""
    out = generate_in_eval_mode(G, data_cfg, n, seed, split, batch_size, attention=False)
    r = metrics.region_color_error(out["self"], out["target"], out["sketch"])
    return metrics.region_error_by_size(r["region_de"], r["region_lch"], r["region_area"])


# What region_color_error compares in reference_or_memory: (label, output key, colours key).
MEMORY_PAIRS = (("a(I) against I: what the colour jitter moves", "target", "image"),
                ("output against a(I): the reference's colours", "self", "target"),
                ("output against I: the unjittered colours", "self", "image"))


def reference_or_memory(G, data_cfg, *, n: int = 0, seed: int = 0, split: str = "test",
                        batch_size: int = 48) -> list[dict]:
    """Where the augmented-self output's colours come from. Its reference carries a(I), the
    image with one random offset per RGB channel, and the metrics score the output against
    a(I); a generator that partly paints an image's colours from memory (learnt from the
    sketch) lands closer to the unjittered I than the reference allows. One row per
    MEMORY_PAIRS entry: the region colour error (dE00 and its dL*, dC*, dH* split) on the
    first n images of a split (all with n = 0)."""
    out = generate_in_eval_mode(G, data_cfg, n, seed, split, batch_size, attention=False)
    rows = []
    for label, a, b in MEMORY_PAIRS:
        r = metrics.region_color_error(out[a], out[b], out["sketch"])
        rows.append({"compared": label, "region_de": float(r["mean_de"]), "region_dl": r["mean_dl"],
                     "region_dc": r["mean_dc"], "region_dh": r["mean_dh"]})
    return rows


def real_stats_key(data_cfg, split: str, n: int) -> dict:
    """What the cached Inception statistics of the real images depend on."""
    key = {"dataset": data_cfg.dataset, "root": data_cfg.root, "split": split,
           "resolution": data_cfg.resolution, "n": n, "sketch_source": data_cfg.sketch_source}
    if data_cfg.fid_input != fid.FID_SIZE:  # FID's own size keeps the key it always had
        key["fid_input"] = data_cfg.fid_input
    if data_cfg.dataset == "faces":
        # which faces a split holds depends on the styles and counts; other datasets keep the
        # key they always had, so their cached statistics stay valid
        key.update({k: getattr(data_cfg, k) for k in (
            "faces_styles", "faces_unseen_style", "faces_train_per_style", "faces_test_per_style",
            "faces_unseen")})
    return key


# Rows of an evaluation on data other than the run's own (another dataset, root or sketch
# source: the generalisation table) go to this file beside metrics.jsonl, so that the run's own
# tables, which read metrics.jsonl, never pick them up.
TRANSFER_FILE = "metrics_transfer.jsonl"


def data_identity(data_cfg) -> tuple:
    """What makes two evaluations' test data the same: the dataset, its root, and for OpenMoji
    the sketch source (faces and folders always use XDoG; the field is ignored there)."""
    sketch = data_cfg.sketch_source if data_cfg.dataset == "openmoji" else ""
    return data_cfg.dataset, data_cfg.root, sketch


def sketch_label(data_cfg) -> str:
    """The kind of sketch a data config gives, as evaluation rows name it."""
    if data_cfg.dataset == "openmoji":
        return data_cfg.sketch_source
    return "edges" if data_cfg.dataset == "edges2shoes" else "xdog"


def evaluation_data(config, *, dataset: str | None = None, root: str | None = None,
                    sketch_source: str | None = None):
    """The run's data config with the evaluation's overrides (None keeps the run's own)."""
    sets = {k: v for k, v in (("dataset", dataset), ("root", root),
                              ("sketch_source", sketch_source)) if v}
    return override(config, {f"data.{k}": v for k, v in sets.items()}).data


def evaluate(run_or_file, *, dataset: str | None = None, root: str | None = None,
             sketch_source: str | None = None, split: str = "test", limit: int = 0,
             no_reference: bool = False, seed: int = 0, batch_size: int = 32,
             device: str = "cpu", progress: bool = True) -> list[dict]:
    G, config, step = load_generator(run_or_file, device)
    data_cfg = evaluation_data(config, dataset=dataset, root=root, sketch_source=sketch_source)
    transfer = data_identity(data_cfg) != data_identity(config.data)
    ds = build_dataset(data_cfg, split)
    ds = first_n(ds, limit or data_cfg.eval_limit)
    out = generate(G, ds, batch_size=batch_size, seed=seed, no_reference=no_reference,
                   data_cfg=data_cfg, progress=progress)
    n = out["image"].shape[0]
    faults.point("evaluate")

    size = data_cfg.fid_input
    net = fid.shared_inception(device, size)
    real_key = real_stats_key(data_cfg, split, n)
    real_acts = fid.reference_activations(
        real_key, lambda: fid.activations(out["image"], net, device=device, progress=progress,
                                          size=size))
    values: dict[str, float] = {}
    for setting in ("cross", "self"):
        if setting == "self" and no_reference:
            # Without a reference both settings colour the sketch alone: the same outputs, so
            # the same features (the Inception pass is most of an evaluation's time).
            acts = cross_acts
        else:
            acts = fid.activations(out[setting], net, device=device, progress=progress, size=size)
        values[f"fid_{setting}"] = fid.fid_from_activations(acts, real_acts)
        kid_mean, kid_std = fid.kid(acts, real_acts, subset_size=fid.kid_subset_size(n))
        values[f"kid_{setting}"], values[f"kid_{setting}_sd"] = kid_mean, kid_std
        if setting == "cross":
            cross_acts = acts
    values["ssim_self"] = float(np.mean(metrics.ssim(out["self"], out["target"])))
    values["psnr_self"] = float(np.mean(metrics.psnr(out["self"], out["target"])))
    errors = colour_errors(out)
    values.update(reference_values(out, errors))

    prov = {"n": n, "dataset": data_cfg.dataset, "split": split,
            "sketch_source": sketch_label(data_cfg),
            "trained_on": "/".join(x for x in data_identity(config.data) if x),
            "resolution": data_cfg.resolution, "step": step, "profile": config.profile,
            "aggregation": config.model.aggregation,
            "correspondence_loss": config.loss.correspondence_loss,
            "seed": config.train.seed, "eval_seed": seed, "precision": config.train.precision,
            "reference": "zero" if no_reference else "image",
            "fid_network": fid.network_name(size=size),
            "perceptual_network": perceptual_name(config.loss),
            "git_commit": git_commit(), "checkpoint": str(resolve_snapshot(run_or_file).name)}
    rows = [{"metric": k, "value": v, **prov} for k, v in values.items()]
    path = Path(run_or_file)
    if path.is_dir():
        if not (transfer or no_reference or limit not in (0, data_cfg.eval_limit)):
            # the claims' intervals resample these (on the evaluation's own images, never a
            # shorter check's); stored now, they cost nothing later
            meta = {"step": int(step), "split": split, "eval_seed": seed,
                    "limit": limit or data_cfg.eval_limit}
            save_values(path, values_from_errors(errors), meta)
            # KID's interval needs the activations themselves; the real images' are cached
            # under real_key by fid.reference_activations, so only the outputs' are kept
            save_activations(path, cross_acts, {**meta, "real_key": real_key})
        # All rows of one evaluation at once: a kill leaves all of them or none, never a
        # partial set that read_metrics would take for a finished evaluation.
        name = TRANSFER_FILE if transfer else "metrics.jsonl"
        append_atomic(path / name, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


# The keywords of `read_metrics` that select rows (each also an `evaluate` keyword).
METRIC_FILTERS = ("split", "no_reference", "dataset", "sketch_source")


def read_metrics(run_dir, *, split: str = "test", no_reference: bool = False,
                 dataset: str | None = None, sketch_source: str | None = None,
                 **unknown) -> list[dict]:
    """The newest evaluation rows of a run for its current snapshot step (empty if none),
    selected by METRIC_FILTERS. Any other keyword is a ValueError: a misspelt filter would
    otherwise be dropped unnoticed, returning the rows it was meant to exclude. A `dataset` or
    `sketch_source` other than the run's own reads its TRANSFER_FILE (the run's config says
    which is its own); None means the run's own. The sketch source selects rows only where the
    data have more than one (OpenMoji): on OpenMoji from another dataset, the run's nominal
    data.sketch_source stands for None, as evaluate takes it. A run folder without config.json
    (an old or hand-made one) reads metrics.jsonl filtered by the dataset alone."""
    if unknown:
        raise ValueError(f"read_metrics has no filter {', '.join(map(repr, unknown))}; "
                         f"filters: {', '.join(METRIC_FILTERS)}")
    run_dir = Path(run_dir)
    name, sketch, own_sketch = "metrics.jsonl", None, None
    if (dataset or sketch_source) and (run_dir / "config.json").exists():
        own = from_dict(json.loads((run_dir / "config.json").read_text()))
        wanted = evaluation_data(own, dataset=dataset, sketch_source=sketch_source)
        if data_identity(wanted) != data_identity(own.data):
            name, dataset = TRANSFER_FILE, wanted.dataset
        # rows written before rows named their sketches were all on the run's own data
        sketch, own_sketch = data_identity(wanted)[2] or None, sketch_label(own.data)
    path = run_dir / name
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ref = "zero" if no_reference else "image"
    rows = [r for r in rows if r["split"] == split and r["reference"] == ref
            and (dataset is None or r["dataset"] == dataset)
            and (sketch is None or r.get("sketch_source", own_sketch) == sketch)]
    if not rows:
        return []
    try:
        step = load_pt(resolve_snapshot(run_dir))["step"]
    except FileNotFoundError:
        return []
    rows = [r for r in rows if r["step"] == step]
    latest: dict[str, dict] = {}
    for r in rows:
        latest[r["metric"]] = r
    return list(latest.values())


# Decimals shown per metric, by name prefix (longest prefix wins). A re-execution on the same
# runs reads the same metrics.jsonl and reproduces every digit; a second reproduction on the
# same kind of CPU moved FID in its 4th decimal (107.3687 against 107.3686: float summation
# order in the Inception features), which 2 decimals hide while still showing differences
# far below the spread between seeds (0.1 to 2 FID). The other metrics are shown at the
# resolution their analysis uses: colour errors in dE00 to 0.01 (one JND is about 1), ratios
# and hit rates to 0.001, KID (about 0.03) to 1e-4, PSNR to 0.01 dB.
PRECISION: dict[str, int] = {
    "fid": 2, "kid": 4, "ssim": 3, "psnr": 2, "region_jnd": 3, "region": 2, "ref_gain": 2,
    "palette_follow": 3, "palette": 2, "attention": 3, "mean_d": 2, "share": 3,
}
DEFAULT_DECIMALS = 4


def decimals(column: str) -> int:
    """Decimals shown for a metric column (a `_sd` spread takes its metric's)."""
    name = column[:-3] if column.endswith("_sd") else column
    best = max((p for p in PRECISION if name.startswith(p)), key=len, default=None)
    return PRECISION[best] if best is not None else DEFAULT_DECIMALS


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no metrics)"
    r0 = rows[0]
    head = (f"{r0['profile']} | {r0['dataset']}/{r0['split']} @ {r0['resolution']} px | "
            f"n={r0['n']} | step {r0['step']} | reference: {r0['reference']} | "
            f"FID net: {r0['fid_network']} | perceptual: {r0['perceptual_network']} | "
            f"commit {r0['git_commit']}")
    lines = [head] + [f"  {r['metric']:24s} {r['value']:.{decimals(r['metric'])}f}" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def add_evaluate_arguments(sp) -> None:
    sp.add_argument("--checkpoint", required=True, help="run folder or snapshot file")
    sp.add_argument("--dataset", default=None, help="the dataset to evaluate on (default: the run's)")
    sp.add_argument("--root", default=None, help="image root for folder/edges2shoes")
    sp.add_argument("--sketch-source", default=None, choices=["line", "xdog"],
                    help="OpenMoji's sketches: the artist's line art or XDoG (default: the run's)")
    sp.add_argument("--split", default="test", help="test (default), train or val")
    sp.add_argument("--limit", type=int, default=0, help="evaluate at most this many images")
    sp.add_argument("--no-reference", action="store_true", help="feed zero references")


def evaluate_main(args) -> None:
    rows = evaluate(args.checkpoint, dataset=args.dataset, root=args.root,
                    sketch_source=args.sketch_source, split=args.split,
                    limit=args.limit, no_reference=args.no_reference)
    print(format_table(rows))
