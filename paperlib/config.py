"""Frozen configuration for data, model, losses and training, and the named profiles.

Every field cites where its value comes from: [S] the paper's supplementary, [P] the main
paper, [C] the value the public re-implementations agree on (not confirmed by the paper),
[I] our interpretation. Profiles are built with `dataclasses.replace`; configs are never
mutated.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    # "openmoji", "faces" (DiceBear avatars), "folder" (recursive image folder), "edges2shoes"
    dataset: str = "openmoji"
    root: str = ""  # image root for "folder" / "edges2shoes"; unused for openmoji
    resolution: int = 256  # [C] 256x256 training images
    sketch_source: str = "line"  # openmoji only: "line" (artist's line art) or "xdog"
    test_fraction: float = 0.1  # [I] held-out share, split by emoji base code point
    split_seed: int = 0  # [I] seed of the deterministic split
    skip_bad: bool = False  # skip unreadable images (and report the count) instead of failing
    # XDoG sketch extraction [S 6.3] (Winnemoeller et al. 2012); the pre-blur is the paper's.
    pre_blur_sigma: float = 0.7  # [S 6.3] Gaussian blur before XDoG
    xdog_sigma: float = 0.5  # [C] inner Gaussian of the DoG
    xdog_k: float = 4.5  # [C] ratio of the outer to the inner Gaussian
    xdog_tau: float = 0.98  # [I] weight of the outer Gaussian; tuned so photos and emoji give clean lines
    xdog_epsilon: float = -0.02  # [I] threshold on the DoG response (luminance in [0, 1]); tuned as tau
    xdog_phi: float = 200.0  # [C] steepness of the soft threshold
    # Augmented-self reference [P 3.1, S 6.3]
    color_jitter: float = 50.0  # [S 6.3] a(I): one U[-50, 50] offset per RGB channel (0-255 scale)
    tps_grid: int = 3  # [C] TPS control points per side
    tps_scale: float = 0.25  # [C] control-point displacement U(-s, s) of the image size
    # [I] opt-in, not in the paper: a(I) also rotates hue by one U[-h, h] degree angle per image
    # (the a*b* plane in CIELAB, lightness and chroma kept), since per-channel RGB offsets alone
    # hardly change hue; 0 = off, the paper's a() exactly (and the same random stream)
    hue_rotation: float = 0.0
    no_reference_prob: float = 0.0  # [S 6.5] probability of a zero reference (0.1 = the 9:1 ratio)
    num_workers: int = 0  # DataLoader worker processes
    eval_limit: int = 0  # evaluate on at most this many test images (0: the whole split)
    curve_images: int = 48  # [I] images per snapshot in the reference-use curves (no FID: cheap)
    # [P] the side FID's Inception sees: pytorch-fid resizes every image to 299x299. The smoke
    # profile, whose numbers nobody reads, uses 75, the smallest input InceptionV3 takes
    fid_input: int = 299
    # [I] the last N images of the training split become split "val" and are not trained on;
    # the hue study selects its levers there, never on the test split. 0 = no validation split
    # (the profiles' runs train on the whole training split).
    val_holdout: int = 0
    # The faces dataset (data/faces.py): DiceBear avatars whose colours are drawn independently
    # of their shapes. The paper uses no such set; every value is [I].
    faces_styles: tuple = ("adventurer", "micah", "open-peeps")  # [I] train and test styles
    faces_unseen_style: str = "big-smile"  # [I] the test-unseen split's style, never trained on
    faces_train_per_style: int = 2700  # [I] seeds 0..N-1 of each style: 8,100 training faces
    # [I] 450 test faces, as many as OpenMoji's 445 test images. Every evaluation runs
    # Inception over its whole split, and at 900 faces that alone put the faces reproduction
    # over its time budget; the claims' bootstrap intervals carry the smaller split's noise.
    faces_test_per_style: int = 150
    faces_unseen: int = 450  # [I] test-unseen faces, as many as test faces


@dataclass(frozen=True)
class ModelConfig:
    # [S 6.1] "scft" (ours), "add" (a) or "adain" (b); [I] opt-in "sga": stop-gradient
    # attention of Li et al. (ECCV 2022), not in the paper, for comparison (core/model.py)
    aggregation: str = "scft"
    width: float = 1.0  # channel multiplier; 1.0 is Table 2 exactly [S], < 1 for CPU profiles
    encoder_channels: tuple = (16, 16, 32, 32, 64, 64, 128, 128, 256, 256)  # [S Table 2]
    encoder_strides: tuple = (1, 1, 2, 1, 2, 1, 2, 1, 2, 1)  # [S Table 2]
    leaky_slope: float = 0.2  # [S Table 2]
    n_res_blocks: int = 4  # [S 6.3] residual blocks, kernel 3, stride 1, BN, ReLU
    # [I] channels of the residual blocks at width 1 (scaled by `width` as Table 2's are); 0 =
    # all C channels of the aggregated feature (992 at width 1), as the public
    # re-implementations keep them [C]. The paper gives no width for them. A value below C puts
    # a learnt 1x1 projection (conv + BN) from C to it before the blocks, and the decoder starts
    # from it: on the 8x8 grid the blocks at C are 85% of the generator's forward FLOPs.
    res_channels: int = 0
    d_ndf: int = 64  # [C] PatchGAN base width (pix2pix), scaled by `width`
    d_layers: int = 3  # [C] PatchGAN strided layers (70x70 receptive field at 256 px)
    init_std: float = 0.02  # [S 6.3] weights from N(0, 0.02)
    # "normal": every weight N(0, init_std) [S 6.3]. "kaiming": the encoders' convs (no
    # normalisation between them) get std sqrt(2 / ((1 + slope^2) fan_in)) so a signal keeps its
    # scale through ten layers; the rest stays N(0, init_std) [I].
    init: str = "normal"


@dataclass(frozen=True)
class LossConfig:
    lambda_tr: float = 1.0  # [C] Eq. 10, triplet (correspondence) loss
    lambda_adv: float = 1.0  # [C] Eq. 10, LSGAN
    lambda_rec: float = 30.0  # [C] Eq. 10, L1 reconstruction
    lambda_perc: float = 0.01  # [C] Eq. 10, perceptual
    lambda_style: float = 50.0  # [C] Eq. 10, style (Gram)
    margin: float = 12.0  # [S 6.3] gamma of the triplet loss, Eq. 5
    correspondence_loss: str = "triplet"  # [S Fig. 17] "triplet", "l1" ([I] reading) or "none"
    perceptual_net: str = "vgg16-hed"  # "vgg19" is the paper's [C]; "vgg16-hed" the offline default
    # [C]/[I] the paper does not name its VGG layers; relu1_1..relu5_1 exist in VGG16 and VGG19
    perceptual_layers: tuple = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    random_perceptual_weights: bool = False  # benchmarks only: untrained VGG, no weight file
    # [I] opt-in, not in the paper: L1 between the output's and the ground truth's CIELAB
    # (a*, b*), divided by 100, so that a red-green error costs what a yellow-blue one of the same
    # perceived size does (RGB L1 weighs them by how the sRGB primaries happen to lie); 0 = off
    lambda_ab: float = 0.0
    # [I] opt-in, not in the paper: L1 between the output's and the ground truth's mean CIELAB
    # colour (L*, a*, b*, divided by 100) of each closed sketch region, every region counting
    # once, as the region colour error does (pixel L1 weighs a region by its area, so a region
    # of 20 px barely counts beside the background); 0 = off
    lambda_region: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16  # [S 6.3]
    epochs: float = 200.0  # [S 6.3] 100 constant + 100 linear decay
    max_steps: int = 0  # if > 0, overrides epochs (CPU profiles count steps, not epochs)
    lr_g: float = 1e-4  # [S 6.3]
    lr_d: float = 2e-4  # [S 6.3]
    betas: tuple = (0.5, 0.999)  # [S 6.3] Adam
    decay_start: float = 0.5  # [S 6.3] constant for the first half, then linear to zero
    # "fp32", "bf16" (autocast), "fp16" (autocast with a scaler, GPUs), or "auto": bf16 where the
    # device has bf16 units, else fp32 (training.precision decides; config.json holds the result)
    precision: str = "fp32"
    channels_last: bool = True  # NHWC: faster oneDNN convolutions on CPU, tensor cores on GPU
    seed: int = 0
    log_every: int = 10  # steps between stats.jsonl lines
    sample_every: int = 200  # steps between sample grids
    checkpoint_every: int = 100  # steps between resume checkpoints
    snapshot_every: int = 0  # steps between generator-only snapshots (0: only at the end)
    # Snapshots hold an exponential moving average of G's weights with this decay (0: the raw
    # weights, as the paper, which does not mention an EMA). [I] for the CPU profiles.
    ema_decay: float = 0.0
    device: str = "auto"  # "auto", "cpu" or "cuda"


@dataclass(frozen=True)
class Config:
    profile: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------- profiles

def paper() -> Config:
    """The paper's setting: 256 px, batch 16, 200 epochs, Table 2 widths, VGG19. For GPUs."""
    return replace(Config(profile="paper"), loss=replace(LossConfig(), perceptual_net="vgg19"))


def mini() -> Config:
    """The default CPU reproduction on embedded OpenMoji; every run of `make reproduce` uses it.

    64 px (a 4x4 feature grid), width 0.5 (every Table 2 channel count halved), batch 16, bf16
    where the CPU has bf16 units and fp32 elsewhere (precision "auto"; both give the same tables
    within their seed spread: results/fp32/).
    Its recipe departs from the paper's where a measured recipe study on training images
    (`recipe-*` runs, `results/table_recipe.md`, notebook 02) showed the reference is used
    sooner on two cores; each departure is [I]:
    - only the reconstruction and triplet terms (lambda_adv = lambda_perc = lambda_style = 0):
      the frozen VGG and the discriminator are ~60% of a step, and at an equal time budget
      (1,000 steps of L1 + triplet against 400 of all five terms) the reference gain on
      training images grows from 1.9 to 6.6 dE00 (6.9 with the two changes below) and the
      attention hit rate from 0.60 to 0.65 (results/table_recipe.md, one seed each);
    - Kaiming initialisation of the two encoders (model.init): at N(0, 0.02) each of their ten
      unnormalised layers shrinks the signal 5-10x, so the decoder's sketch skips and the deep
      reference features start near zero and Adam needs thousands of steps to grow them;
    - an EMA of the generator's weights (decay 0.99) for snapshots and evaluation: at this
      learning rate single snapshots swing by several dE00 between neighbouring steps;
    - learning rates 5x the paper's (G:D kept at 1:2): at 1e-4 the N(0, 0.02) SCFT queries and
      keys stay near zero and the triplet loss sits at its margin for the whole budget;
    - an L1 term on CIELAB a*b*: without it the model learns one chroma axis (yellow-blue) in
      3,000 steps and red comes out orange. In the hue study (results/gpu/hue-study/, the
      4x4 main model's recipe and steps, 256 held-out training images, two seeds) it alone of four
      levers brought the red-green axis in, at loss.lambda_ab = lambda_rec = 30: a* from a*
      0.08-0.13 -> 0.54-0.58 on OpenMoji and 0.27-0.29 -> 0.64-0.72 on faces, dH* 14.8 -> 7.4-8.1
      and 13.5-14.2 -> 3.8-4.6; stop-gradient attention, a uniform hue rotation in a() and 3x
      the learning rate did not. Its weight is 3x lambda_rec (90): in the arms' hue screen
      (results/hue-arms/, the ablation arms' 1,000 steps, the same held-out images, seeds 0
      and 1) 90 against 30 lowered dH* from 14.4 / 10.9 to 10.2 / 10.2 on OpenMoji and from
      8.2 / 8.9 to 4.9 / 5.8 on faces, and region dE00 on both (19.9 / 18.1 -> 18.3 / 18.5,
      11.5 / 11.4 -> 10.2 / 10.0), at a cost in lightness on OpenMoji (dL* 8.2 / 8.5 -> 12.4 /
      11.0); half the batch for twice the steps, and no learning-rate decay, did less.
    1,000 steps are ~4 epochs of OpenMoji, ~1/50 of the paper's 200 epochs.
    """
    c = paper()
    return replace(
        c,
        profile="mini",
        data=replace(c.data, resolution=64, num_workers=0),
        model=replace(c.model, width=0.5, init="kaiming"),
        loss=replace(c.loss, perceptual_net="vgg16-hed", lambda_adv=0.0, lambda_perc=0.0,
                     lambda_style=0.0, lambda_ab=90.0),
        train=replace(c.train, batch_size=16, max_steps=1000, lr_g=5e-4, lr_d=1e-3,
                      precision="auto", channels_last=True, log_every=10, sample_every=250,
                      checkpoint_every=100, snapshot_every=125, ema_decay=0.99),
    )


def smoke() -> Config:
    """CI: a few steps at tiny size, seconds. Tests that need trained weights do not use it."""
    c = mini()
    return replace(
        c,
        profile="smoke",
        # A tiny faces set (48 train, 90 test, 24 test-unseen) renders in seconds; 90 test
        # faces, so that notebook 08's test-image indices (up to 89) exist on both datasets.
        # 3 evaluation images (one per faces style; KID needs 2 at least), seen by FID's
        # Inception at 75 pixels a side: at 299 its forward was most of a smoke evaluation's
        # time (about 0.2 s an image on one thread of an AMD EPYC with AVX2 only), and
        # `make test` runs some 75 evaluations. 75 is a sixteenth of the work, for the same
        # plumbing (real images' cache, KID, the intervals' stored activations).
        data=replace(c.data, resolution=32, eval_limit=3, curve_images=12, faces_train_per_style=16,
                     faces_test_per_style=30, faces_unseen=24, fid_input=75),
        model=replace(c.model, width=0.25),
        loss=replace(c.loss, random_perceptual_weights=False),
        train=replace(c.train, batch_size=4, max_steps=4, precision="fp32", channels_last=False,
                      # one sample grid, at the end: drawing one took a third of a smoke run's
                      # training on a CPU without AVX-512 (notebook 02 shows the last). A
                      # checkpoint every 4 steps: the registry's runs (8 steps at the main
                      # recipe) still write one mid-run, and each written and fsynced is 12 MB,
                      # a fifth of a smoke run's training; the fault tests set their own.
                      log_every=1, sample_every=4, checkpoint_every=4, snapshot_every=2),
    )


PROFILES = {"paper": paper, "mini": mini, "smoke": smoke}
# The datasets the registry's runs, the notebooks and `make reproduce` cover; each gets its own
# runs/ and results/ folders (paperlib.study.reproduce). "folder" and "edges2shoes" are for
# training on one's own images and are not part of the study.
STUDY_DATASETS = ("openmoji", "faces")


def get_profile(name: str | None = None) -> Config:
    """A profile by name; None reads PAPERLIB_PROFILE (default "mini")."""
    name = name or os.environ.get("PAPERLIB_PROFILE", "mini")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]()


def get_dataset(name: str | None = None) -> str:
    """A study dataset by name; None reads PAPERLIB_DATASET (default "openmoji"). The dataset
    travels as the profile does, so that worker processes and notebooks agree on it."""
    name = name or os.environ.get("PAPERLIB_DATASET") or "openmoji"
    if name not in STUDY_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(STUDY_DATASETS)}")
    return name


# ------------------------------------------------------------------------- overrides and JSON

def _parse_value(text: str, current: Any) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected a boolean (true or false)")
    try:
        if isinstance(current, tuple):
            items = [s for s in text.strip("()[] ").split(",") if s.strip()]
            kind = type(current[0]) if current else str
            return tuple(kind(s.strip()) for s in items)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(type(current), "a comma-separated list")
        raise ValueError(f"expected {kind}") from None
    return text


def override(config: Config, assignments: list[str] | dict[str, Any]) -> Config:
    """Return a new config with dotted assignments applied: ["model.aggregation=add", ...]."""
    pairs = assignments.items() if isinstance(assignments, dict) else (
        _split_assignment(a) for a in assignments)
    for key, value in pairs:
        section, _, name = key.partition(".")
        if not name or section not in {f.name for f in fields(Config)}:
            raise ValueError(f"override key {key!r} must look like section.field with section "
                             f"one of data, model, loss, train")
        sub = getattr(config, section)
        if name not in {f.name for f in fields(sub)}:
            raise ValueError(f"unknown field {name!r} in {section}; known: "
                             f"{sorted(f.name for f in fields(sub))}")
        current = getattr(sub, name)
        try:
            new = _parse_value(value, current) if isinstance(value, str) else value
        except ValueError as e:
            raise ValueError(f"override {key}={value}: {e}, like its current value "
                             f"{current!r}") from None
        config = replace(config, **{section: replace(sub, **{name: new})})
    return config


CHOICES = {
    "data.dataset": ("openmoji", "faces", "folder", "edges2shoes"),
    "data.sketch_source": ("line", "xdog"),
    "model.aggregation": ("scft", "add", "adain", "sga"),
    "model.init": ("normal", "kaiming"),
    "loss.correspondence_loss": ("triplet", "l1", "none"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
}


def total_stride(model: ModelConfig) -> int:
    """The encoders' total stride: input pixels per feature cell per side (16 in Table 2).
    Defined here, at the bottom, because check_config needs it; core.model re-exports it."""
    return math.prod(int(x) for x in model.encoder_strides)


def check_config(config: Config) -> Config:
    """Refuse values that would otherwise fail deep inside the model or the data pipeline,
    with one message naming the field and the value; returns the config unchanged."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise ValueError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    stride = total_stride(config.model)
    res = config.data.resolution
    if not isinstance(res, int) or isinstance(res, bool) or res <= 0 or res % stride:
        lo = max(stride, res // stride * stride) if isinstance(res, int) else stride
        raise ValueError(f"data.resolution={res!r} is not a positive multiple of {stride} (the "
                         f"encoders' total stride); use e.g. {lo} or {lo + stride}")
    for key in ("train.batch_size", "train.log_every", "train.sample_every",
                "train.checkpoint_every"):
        section, name = key.split(".")
        if getattr(getattr(config, section), name) < 1:
            raise ValueError(f"{key}={getattr(getattr(config, section), name)!r} must be at least 1")
    if config.model.width <= 0:
        raise ValueError(f"model.width={config.model.width!r} must be positive")
    fid_input = config.data.fid_input
    if not isinstance(fid_input, int) or isinstance(fid_input, bool) or fid_input < 75:
        raise ValueError(f"data.fid_input={fid_input!r} must be a whole number of pixels, at "
                         f"least 75 (InceptionV3's smallest input); 299 is FID's own")
    if config.model.aggregation == "sga" and config.loss.correspondence_loss == "l1":
        raise ValueError("model.aggregation='sga' with loss.correspondence_loss='l1': the "
                         "stop-gradient attention map is detached, so the L1 loss on it would "
                         "train nothing; use 'triplet' or 'none'")
    hue = config.data.hue_rotation
    if isinstance(hue, bool) or not isinstance(hue, (int, float)) or not 0 <= hue <= 180:
        raise ValueError(f"data.hue_rotation={hue!r} must be a number of degrees in [0, 180] "
                         f"(0 = off; 180 already covers the whole hue circle)")
    held = config.data.val_holdout
    if isinstance(held, bool) or not isinstance(held, int) or held < 0:
        raise ValueError(f"data.val_holdout={held!r} must be a whole number of images, 0 or more")
    for key in ("lambda_ab", "lambda_region"):
        weight = getattr(config.loss, key)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"loss.{key}={weight!r} must be a number, 0 or more")
    if config.data.dataset == "faces":
        _check_faces(config)
    return config


def _check_faces(config: Config) -> None:
    """Counts that leave a split empty or the training split shorter than one batch. The style
    names are checked against the installed dicebear-styles by data.datasets.check_data (train
    calls it next; loading the faces checks them too): config, at the bottom of the package,
    reads nothing installed."""
    d = config.data
    for name in ("faces_train_per_style", "faces_test_per_style", "faces_unseen"):
        value = getattr(d, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"data.{name}={value!r} must be at least 1")
    if not d.faces_styles or len(set(d.faces_styles)) != len(d.faces_styles):
        raise ValueError(f"data.faces_styles={d.faces_styles!r} must name one or more "
                         f"distinct styles")
    n_train = len(d.faces_styles) * d.faces_train_per_style
    if n_train < config.train.batch_size:
        raise ValueError(f"data.faces_train_per_style={d.faces_train_per_style} gives "
                         f"{n_train} training faces ({len(d.faces_styles)} styles), fewer than "
                         f"train.batch_size={config.train.batch_size}")


def _split_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"override {text!r} must be key=value, e.g. model.aggregation=add")
    return key.strip(), value.strip()


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def from_dict(d: dict) -> Config:
    def build(cls, values):
        kwargs = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            v = values[f.name]
            default = getattr(cls(), f.name) if f.name != "profile" else None
            if is_dataclass(default):
                v = build(type(default), v)
            elif isinstance(default, tuple):
                v = tuple(v)
            kwargs[f.name] = v
        return cls(**kwargs)
    return build(Config, d)


def to_json(config: Config) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


# ------------------------------------------------------------------ the command line's config options

def add_config_arguments(sp) -> None:
    """The options that build a config on the command line (`prepare-data`, `train`)."""
    sp.add_argument("--profile", default=None, help="smoke, mini or paper (default: "
                    "$PAPERLIB_PROFILE or mini)")
    sp.add_argument("--dataset", default=None, help="openmoji, faces, folder or edges2shoes")
    sp.add_argument("--root", default=None, help="image root for folder/edges2shoes")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config field, e.g. --set model.aggregation=add")


def config_from_arguments(args) -> Config:
    """The checked config that add_config_arguments' options name."""
    c = get_profile(args.profile)
    assignments = [f"data.dataset={args.dataset}"] if getattr(args, "dataset", None) else []
    if getattr(args, "root", None):
        assignments.append(f"data.root={args.root}")
    return check_config(override(c, assignments + list(getattr(args, "set", None) or [])))
