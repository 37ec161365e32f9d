"""The named runs behind the paper's tables and figures, as config overrides of one profile.

Ablations are config values, never forked code: every run below is the profile plus a few
overrides. `ensure_trained` trains a run only if it is not complete (resuming otherwise), and
`ensure_evaluated` evaluates it only once per checkpoint, so the notebooks can be rerun freely.
The tables and analyses computed over these runs are in `paperlib.study.tables`.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from ..config import Config, from_dict, get_dataset, get_profile, mini, override, paper
from ..evaluation.evaluate import METRIC_FILTERS, evaluate, read_metrics
from ..training.loop import is_complete, train
from ..training.precision import native_bf16
from .reproduce import runs_dir

# Table 2's encoder strides with the last stride-2 layer (the 9th) at stride 1: total stride 8
GRID8_STRIDES = (1, 1, 2, 1, 2, 1, 2, 1, 1, 1)

# [I] a training step on the 8x8 grid costs 2.3 on the 4x4 grid's (mini, two cores, AMD EPYC:
# results/bench_compare_grid8.txt); its residual blocks and last encoder layers run on 4x the cells
GRID8_STEP_COST = 2.3

# The main recipe, which every arm of the paper's tables trains on: mini on the 8x8 grid, with
# the residual blocks behind a projection to MAIN_RES_CHANNELS, for MAIN_STEPS steps (schedule,
# snapshots and samples stretched alike), a() turning each training image's hue by
# U[-MAIN_HUE_ROTATION, MAIN_HUE_ROTATION] degrees. [I] Chosen on the validation split by the
# step study (results/step-study/, registry STEP_ARMS): the projection makes a step about 2.7x
# cheaper on the 8x8 grid at no cost in region error, hue or gain; the time it frees buys the
# arms three seeds and 2,000 steps; the hue turn keeps the chroma map near the identity at
# every probe angle, where without it unusual colours wash out.
MAIN_RES_CHANNELS = 256
MAIN_STEPS = 2000
MAIN_HUE_ROTATION = 180.0
# Seeds of every arm: the claims' intervals need the spread between training runs.
SEEDS = (0, 1, 2)

# name -> (what it reproduces, overrides)
RUNS: dict[str, tuple[str, dict]] = {
    "scft-triplet": ("the full method and main model: SCFT + triplet loss (Eq. 5), on the main recipe",
                     lambda c: _main_recipe(c)),
    "add": ("aggregation (a) addition [S Fig. 2a]",
            lambda c: {**_main_recipe(c), "model.aggregation": "add", "loss.correspondence_loss": "none"}),
    "adain": ("aggregation (b) AdaIN [S Fig. 2b]",
              lambda c: {**_main_recipe(c), "model.aggregation": "adain",
                         "loss.correspondence_loss": "none"}),
    "sga": ("aggregation (d): stop-gradient attention (Li et al., ECCV 2022), not in the paper; "
            "triplet loss as SCFT", lambda c: {**_main_recipe(c), "model.aggregation": "sga"}),
    "scft-l1": ("SCFT + L1 attention supervision [S Fig. 17], our reading",
                lambda c: {**_main_recipe(c), "loss.correspondence_loss": "l1"}),
    "scft-none": ("SCFT without correspondence supervision [S Fig. 17]",
                  lambda c: {**_main_recipe(c), "loss.correspondence_loss": "none"}),
    "scft-noref": ("SCFT + triplet, zero reference 1 time in 10 [S 6.5]",
                   lambda c: {**_main_recipe(c), "data.no_reference_prob": 0.1}),
    # The recipe study (a study command with committed results, results/table_recipe.md): the
    # profile's departures from the paper undone one group at a time (see config.mini), at a
    # step budget planned to cost `scft-triplet-4x4`'s training time. Selected on training images.
    "recipe-paper-objective": (
        "all five loss terms of Eq. 10, N(0, 0.02) init, no EMA; 2/5 of the steps (a step "
        "costs ~2.5x with the VGG and D)", lambda c: _paper_objective(c)),
    "recipe-l1-triplet": ("only L1 + triplet, N(0, 0.02) init, no EMA",
                          lambda c: {"model.init": paper().model.init, "train.ema_decay": 0.0,
                                     "loss.lambda_ab": paper().loss.lambda_ab}),
    # The earlier recipes, kept for the studies and tables committed on them (results/history.md):
    # the arms' former recipe (mini alone: Table 2's 4x4 grid, 1,000 steps), the former main
    # model before the 8x8 grid (3x the steps), and the former main model on the 8x8 grid
    # without the projection, at the training time of 3x the steps on the 4x4 grid.
    "scft-triplet-4x4": ("the full method on mini alone: Table 2's 4x4 grid, 1,000 steps (the "
                         "arms' former recipe)", {}),
    "scft-triplet-3x": ("the full method, 3x the steps (schedule and snapshots stretched)",
                        lambda c: _three_times(c)),
    "scft-triplet-grid8": ("the former main model: the full method on an 8x8 feature grid (the 9th "
                           "encoder layer at stride 1), for the time of 3x the steps on the 4x4 grid",
                           lambda c: _grid8_model(c)),
    "scft-triplet-grid8-fp32": ("the former main model trained in float32 (results/fp32/)",
                                lambda c: {**_grid8_model(c), "train.precision": "fp32"}),
    # What a CPU without bf16 units reproduces: the main model in float32, which "auto"
    # resolves to there (training.precision). Scored beside the committed bf16 tables.
    "scft-triplet-fp32": ("the main model trained in float32 (what a CPU without bf16 units trains)",
                          lambda c: {**_main_recipe(c), "train.precision": "fp32"}),
    # The generalisation table (notebook 09): the paper trains on XDoG sketches and users bring
    # line art. OpenMoji has both, so this arm is the full method on XDoG sketches of the colour
    # images instead of the artist's line art, on the main recipe; scored on both kinds beside
    # `scft-triplet`. (Faces have XDoG sketches only: there it equals `scft-triplet`.)
    "scft-triplet-xdog": ("the full method trained on XDoG sketches of the colour images [S 6.3], "
                          "not the artist's line art",
                          lambda c: {**_main_recipe(c), "data.sketch_source": "xdog"}),
    # bf16 must not cost quality: a short run in each precision, same seed and data order.
    "short-fp32": ("the main model, first quarter of the steps, float32",
                   lambda c: {**_main_recipe(c), "train.precision": "fp32",
                              "train.max_steps": max(2, _main_steps(c) // 4)}),
    "short-bf16": ("the main model, first quarter of the steps, bf16 autocast",
                   lambda c: {**_main_recipe(c), "train.precision": "bf16",
                              "train.max_steps": max(2, _main_steps(c) // 4)}),
    # The hue study: the main model's recipe and steps, with HUE_VAL training images held out
    # as split "val" (where the levers are compared), and one lever each. All [I].
    "hue-base": ("hue study: the main model's recipe, training images held out for validation",
                 lambda c: _hue_arm(c, {})),
    "hue-sga": ("hue study: stop-gradient attention (Li et al., ECCV 2022) in place of SCFT",
                lambda c: _hue_arm(c, {"model.aggregation": "sga"})),
    "hue-rotation": ("hue study: a() also turns hue by U[-180, 180] degrees in CIELAB",
                     lambda c: _hue_arm(c, {"data.hue_rotation": 180.0})),
    "hue-ab": ("hue study: + L1 on CIELAB a*b* (loss.lambda_ab = lambda_rec)",
               lambda c: _hue_arm(c, {"loss.lambda_ab": c.loss.lambda_rec})),
    "hue-lr": ("hue study: 3x the generator's learning rate",
               lambda c: _hue_arm(c, {"train.lr_g": 3 * c.train.lr_g})),
    # The arms' hue screen: the ablation arms' recipe and steps (`scft-triplet`), HUE_VAL
    # training images held out as split "val", one lever each, every arm seeing the same
    # images. The hue study above chose the CIELAB term at the main model's 3,000 steps; at the
    # arms' 1,000, with the term at lambda_rec, the arms still missed hue (dH* 12.5-16.3 on
    # OpenMoji's test split, commit cbc5e06). All [I].
    "arm-hue-base": ("arms' hue screen: the ablation arms' recipe and steps, training images held "
                     "out for validation", lambda c: _arm_screen(c, {})),
    "arm-hue-ab3": ("arms' hue screen: 3x the CIELAB a*b* term (loss.lambda_ab = 3 lambda_rec)",
                    lambda c: _arm_screen(c, {"loss.lambda_ab": 3 * c.loss.lambda_rec})),
    "arm-hue-batch8": ("arms' hue screen: half the batch for twice the steps (the same images "
                       "seen, twice the updates)", lambda c: _arm_screen(c, _half_batch(c))),
    "arm-hue-flat": ("arms' hue screen: no learning-rate decay (the EMA of the weights averages "
                     "instead)", lambda c: _arm_screen(c, {"train.decay_start": 1.0})),
    # The loss arms' curves: the two Fig. 17 arms that miss hue at their 1,000 steps (SCFT +
    # L1, SCFT without a correspondence loss), on mini's recipe as adopted, at the main model's
    # 3,000 steps and schedule, measured on held-out training images: does their hue come in
    # later, and when? (The budget trade: the arms at the main model's steps.) All [I].
    "arm-curve-l1": ("loss arms' curves: SCFT + L1 attention loss at the main model's steps, "
                     "training images held out for validation",
                     lambda c: _arm_curve(c, "l1")),
    "arm-curve-none": ("loss arms' curves: SCFT without a correspondence loss at the main "
                       "model's steps, training images held out for validation",
                       lambda c: _arm_curve(c, "none")),
    # The region study: the main model misses region dE00 <= 14 on OpenMoji, and its error
    # sits in regions smaller than a feature cell (results/table_region_size.csv). The main
    # model's recipe and steps, HUE_VAL training images held out as split "val", one lever
    # each. All [I].
    "region-base": ("region study: the main model's recipe, training images held out for "
                    "validation", lambda c: _region_arm(c, {})),
    "region-grid8": ("region study: an 8x8 feature grid at 64 px (the last stride-2 encoder "
                     "layer at stride 1: 8 px cells, the paper's 16x16 grid's share of the image "
                     "more nearly)", lambda c: _region_arm(c, {"model.encoder_strides": GRID8_STRIDES})),
    "region-grid8-time": ("region study: the 8x8 grid at the main model's training time (its "
                          "steps divided by GRID8_STEP_COST, schedule and snapshots stretched "
                          "alike)", lambda c: _region_arm(c, {"model.encoder_strides": GRID8_STRIDES,
                                                               **_equal_time(c, GRID8_STEP_COST)})),
    "region-loss": ("region study: + L1 on each sketch region's mean CIELAB colour, every region "
                    "counting once (loss.lambda_region = lambda_rec)",
                    lambda c: _region_arm(c, {"loss.lambda_region": c.loss.lambda_rec})),
    # The step study: a cheaper training step for the main model's recipe, so that every arm
    # can train on it. The main model's recipe (the 8x8 grid at its 1,300 steps), HUE_VAL
    # training images held out as split "val"; its baseline is `region-grid8-time`. All [I].
    "step-res256": ("step study: a 1x1 projection from the aggregated feature to 256 channels "
                    "(128 at width 0.5) before the residual blocks (model.res_channels)",
                    lambda c: _step_arm(c, {"model.res_channels": 256})),
    "step-res256-hue": ("step study: the projection, and a() also turns hue by U[-180, 180] "
                        "degrees in CIELAB (ground truth and reference alike)",
                        lambda c: _step_arm(c, {"model.res_channels": 256, "data.hue_rotation": 180.0})),
    "step-res256-long": ("step study: the projection at 2,000 steps (schedule and snapshots "
                         "stretched alike)",
                         lambda c: _step_arm(c, {"model.res_channels": 256, **_stretched(c, 2000)})),
    "step-res256-long-hue": ("step study: the projection at 2,000 steps, and a() also turns hue "
                             "by U[-180, 180] degrees in CIELAB",
                             lambda c: _step_arm(c, {"model.res_channels": 256, **_stretched(c, 2000),
                                                     "data.hue_rotation": 180.0})),
}
STEP_ARMS = ["step-res256", "step-res256-hue", "step-res256-long", "step-res256-long-hue"]
HUE_VAL = 256  # [I] images of the training split held out as the hue study's validation split
HUE_ARMS = ["hue-base", "hue-sga", "hue-rotation", "hue-ab", "hue-lr"]
ARM_HUE_ARMS = ["arm-hue-base", "arm-hue-ab3", "arm-hue-batch8", "arm-hue-flat"]
ARM_CURVES = ["arm-curve-l1", "arm-curve-none"]
REGION_ARMS = ["region-base", "region-grid8", "region-grid8-time", "region-loss"]


def _grid8_model(c: Config) -> dict:
    return {"model.encoder_strides": GRID8_STRIDES, **_equal_time(c, GRID8_STEP_COST)}


def _main_steps(c: Config) -> int:
    # MAIN_STEPS is mini's count; a profile of other steps (smoke) scales it alike
    return max(1, round(MAIN_STEPS * c.train.max_steps / mini().train.max_steps))


def _main_recipe(c: Config) -> dict:
    return {"model.encoder_strides": GRID8_STRIDES, "model.res_channels": MAIN_RES_CHANNELS,
            **_stretched(c, _main_steps(c)), "data.hue_rotation": MAIN_HUE_ROTATION}


def _three_times(c: Config) -> dict:
    return {"train.max_steps": 3 * c.train.max_steps,
            "train.snapshot_every": 3 * c.train.snapshot_every,
            "train.sample_every": 3 * c.train.sample_every}


def _held_out(c: Config) -> int:
    # a profile that evaluates on fewer images (smoke: tiny sets) holds out as few
    return min(HUE_VAL, c.data.eval_limit or HUE_VAL)


def _hue_arm(c: Config, lever: dict) -> dict:
    held = _held_out(c)
    # the baseline is the recipe the study started from: no CIELAB term (mini adopted it after)
    return {**_three_times(c), "data.val_holdout": held, "loss.lambda_ab": 0.0, **lever}


def _arm_screen(c: Config, lever: dict) -> dict:
    held = _held_out(c)
    # the baseline is the recipe the screen started from: the a*b* term at lambda_rec (mini
    # adopted 3x after)
    return {"data.val_holdout": held, "loss.lambda_ab": c.loss.lambda_rec, **lever}


def _region_arm(c: Config, lever: dict) -> dict:
    return {**_three_times(c), "data.val_holdout": _held_out(c), **lever}


def _equal_time(c: Config, step_cost: float) -> dict:
    """The main model's steps, schedule and snapshots divided by `step_cost` (rounded to 100
    steps): the same training time for a model whose step costs that many of mini's."""
    exact = 3 * c.train.max_steps / step_cost
    steps = round(exact / 100) * 100 if exact >= 100 else max(1, round(exact))
    return _stretched(c, steps)


def _stretched(c: Config, steps: int) -> dict:
    """`steps` steps, with the schedule, snapshots and samples of mini's max_steps stretched alike."""
    return {"train.max_steps": steps,
            "train.snapshot_every": max(1, steps * c.train.snapshot_every // c.train.max_steps),
            "train.sample_every": max(1, steps * c.train.sample_every // c.train.max_steps)}


def _step_arm(c: Config, lever: dict) -> dict:
    return {**_region_arm(c, {"model.encoder_strides": GRID8_STRIDES, **_equal_time(c, GRID8_STEP_COST)}),
            **lever}


def _arm_curve(c: Config, correspondence_loss: str) -> dict:
    return {**_three_times(c), "data.val_holdout": _held_out(c),
            "loss.correspondence_loss": correspondence_loss}


def _half_batch(c: Config) -> dict:
    # steps, snapshots and samples at the same images seen as the full batch's
    return {"train.batch_size": max(1, c.train.batch_size // 2),
            "train.max_steps": 2 * c.train.max_steps,
            "train.snapshot_every": 2 * c.train.snapshot_every,
            "train.sample_every": 2 * c.train.sample_every}


def _paper_objective(c: Config) -> dict:
    p = paper()
    steps = max(2, c.train.max_steps * 2 // 5)
    return {"loss.lambda_adv": p.loss.lambda_adv, "loss.lambda_perc": p.loss.lambda_perc,
            "loss.lambda_style": p.loss.lambda_style, "model.init": p.model.init,
            "train.ema_decay": p.train.ema_decay, "loss.lambda_ab": p.loss.lambda_ab,
            "train.max_steps": steps,
            "train.snapshot_every": max(1, steps // 8), "train.sample_every": max(1, steps // 2)}


# The reproduction's model (figures, attention, try-it): the full method on the main recipe,
# which is also its row in the ablation tables.
MAIN = "scft-triplet"
# The arms compared in the notebooks, with the short labels that figures and the try-it widget
# give them, in the order those show them: the main model, the aggregations of S Fig. 2 (a) to
# (c) and (d), the correspondence losses, the no-reference model. All on the main recipe.
ARM_LABELS = {
    MAIN: "main model: SCFT + triplet",
    "add": "(a) addition",
    "adain": "(b) AdaIN",
    "sga": "(d) SGA, Li et al. 2022",
    "scft-l1": "SCFT + L1 attention loss",
    "scft-none": "SCFT, no correspondence loss",
    "scft-noref": "no-reference model (zero ref. 1 in 10)",
}
ARMS = list(ARM_LABELS)
# The notebook of `make reproduce` that trains (and evaluates) each arm, every seed.
TRAINED_BY = {MAIN: "02", "add": "03", "adain": "03", "sga": "03", "scft-l1": "04",
              "scft-none": "04", "scft-noref": "06"}
# The recipe study's runs (`python -m paperlib recipe-study`; committed: results/table_recipe.md)
RECIPES = ["recipe-paper-objective", "recipe-l1-triplet", "scft-triplet-4x4"]


def study_seeds(profile: str) -> tuple:
    """The seeds every arm trains with in `profile`: SEEDS; the smoke profile, which checks the
    plumbing in CI, two of them (a spread and an interval exist, at two thirds of the runs)."""
    return SEEDS[:2] if profile == "smoke" else SEEDS


PRECISION_RUNS = {"fp32": "short-fp32", "bf16": "short-bf16"}


def precision_runs() -> dict[str, str]:
    """The short runs of notebook 02's precision check, by precision: both where this CPU has
    bf16 units; none where it would emulate bf16 (the short bf16 run would take an hour there,
    and its answer is about hardware this CPU lacks)."""
    return dict(PRECISION_RUNS) if native_bf16("cpu") else {}


def run_overrides(profile: str, name: str, dataset: str | None = None) -> dict:
    """The overrides that make registry run `name` from `profile` (callables evaluated).
    `dataset` None means $PAPERLIB_DATASET, else openmoji (config.get_dataset), here and below."""
    if name not in RUNS:
        raise ValueError(f"unknown run {name!r}; known: {sorted(RUNS)}")
    c = override(get_profile(profile), {"data.dataset": get_dataset(dataset)})
    sets = RUNS[name][1]
    return dict(sets(c) if callable(sets) else sets)


def run_config(profile: str, name: str, seed: int = 0, dataset: str | None = None) -> Config:
    c = override(get_profile(profile), {"data.dataset": get_dataset(dataset)})
    c = override(c, run_overrides(profile, name, dataset))
    return override(c, {"train.seed": seed})


def train_command(profile: str, name: str, seed: int = 0, dataset: str | None = None) -> str:
    """The command line that trains registry run `name` exactly as `run_config` makes it."""
    dataset = get_dataset(dataset)
    sets = ({} if dataset == "openmoji" else {"data.dataset": dataset}) | run_overrides(profile, name, dataset)
    args = "".join(f" --set {shlex.quote(f'{k}={_cli_value(v)}')}" for k, v in sets.items())
    folder = runs_dir(profile, dataset).name
    return (f"python -m paperlib train --profile {profile}{args} --set train.seed={seed} "
            f"--run-dir runs/{folder}/{name}-seed{seed}")


def _cli_value(value) -> str:
    # a tuple as `--set` parses it back (config._parse_value): "1,1,2", not "(1, 1, 2)", whose
    # spaces would split the argument in a shell
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def run_path(profile: str, name: str, seed: int = 0, dataset: str | None = None) -> Path:
    return runs_dir(profile, dataset) / f"{name}-seed{seed}"


def is_trained(profile: str, name: str, seed: int = 0, dataset: str | None = None) -> bool:
    """Whether registry run `name` has finished (its final snapshot exists)."""
    return is_complete(run_path(profile, name, seed, dataset))


def ensure_trained(profile: str, name: str, seed: int = 0, progress: bool = True,
                   dataset: str | None = None) -> Path:
    path = run_path(profile, name, seed, dataset)
    if not is_complete(path):
        train(run_config(profile, name, seed, dataset), path, progress=progress)
    return path


def ensure_evaluated(profile: str, name: str, seed: int = 0, dataset: str | None = None,
                     **kwargs) -> list[dict]:
    """Evaluate a finished run unless its metrics.jsonl already covers its final snapshot.
    `kwargs` go to `evaluate.evaluate`; those that select rows (evaluate.METRIC_FILTERS) also
    decide which earlier rows count."""
    path = run_path(profile, name, seed, dataset)
    rows = read_metrics(path, **{k: v for k, v in kwargs.items() if k in METRIC_FILTERS})
    if rows:
        return rows
    return evaluate(path, **kwargs)


def load_config(run_dir) -> Config:
    return from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
