"""Command line: python -m paperlib {prepare-data,train,bench,evaluate,colorize,reproduce,screenshot,
long-run,long-run-summary,hue-study,hue-study-summary,fp32-check}."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from .config import check_config, get_profile, override
from .paths import atomic_write


def _config(args):
    c = get_profile(args.profile)
    assignments = [f"data.dataset={args.dataset}"] if getattr(args, "dataset", None) else []
    if getattr(args, "root", None):
        assignments.append(f"data.root={args.root}")
    return check_config(override(c, assignments + list(getattr(args, "set", None) or [])))


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command each, every option with its help text."""
    p = argparse.ArgumentParser(prog="python -m paperlib", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, dataset=True):
        sp.add_argument("--profile", default=None, help="smoke, mini or paper (default: "
                        "$PAPERLIB_PROFILE or mini)")
        if dataset:
            sp.add_argument("--dataset", default=None, help="openmoji, faces, folder or edges2shoes")
            sp.add_argument("--root", default=None, help="image root for folder/edges2shoes")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config field, e.g. --set model.aggregation=add")

    sp = sub.add_parser("prepare-data", help="render/cache the dataset and convert FID weights")
    common(sp)
    sp = sub.add_parser("train", help="train or resume a run")
    common(sp)
    sp.add_argument("--run-dir", required=True, help="the run folder: created for a new run, "
                    "resumed where it stopped for an existing one")
    sp = sub.add_parser("bench", help="throughput of inference and of a training step")
    sp.add_argument("--resolution", type=int, default=256, help="image side in pixels (default 256)")
    sp.add_argument("--batch", type=int, default=4, help="images per batch (default 4)")
    sp.add_argument("--width", type=float, default=1.0,
                    help="channel width multiplier of the networks (default 1.0)")
    sp.add_argument("--aggregation", default="scft", help="how the reference is merged "
                    "(model.aggregation; default scft)")
    sp.add_argument("--precision", default="auto",
                    help="fp32, bf16 or both (fp32,bf16); auto (default): fp32, and bf16 too "
                         "where the CPU has bf16 units")
    sp.add_argument("--repeats", type=int, default=5, help="timed repeats of each row (default 5)")
    sp.add_argument("--no-train", action="store_true", help="time inference only")
    sp.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last")
    sp.add_argument("--fid", action="store_true",
                    help="time the FID Inception features, channels-last against NCHW")
    sp.add_argument("--data", action="store_true",
                    help="time the data pipeline (OpenMoji, 128 and 256 px) instead of the networks")
    sp.add_argument("--compare", metavar="REV", default=None,
                    help="time the training step of --profile now and at commit REV, in "
                         "alternating processes, and print the speed-up")
    sp.add_argument("--profile", default="mini", help="with --compare: the profile to time")
    sp.add_argument("--workers", type=int, default=1,
                    help="with --compare: processes stepping at once on the working tree's side, "
                         "each on its share of the cores (as make reproduce trains runs)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --compare: override a config field on both sides")
    sp.add_argument("--rev-set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --compare: override a field on REV's side only")
    sp.add_argument("--now-set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --compare: override a field on the working tree's side only")
    sp.add_argument("--rounds", type=int, default=None,
                    help="alternating rounds of --compare (default 5) or --loop (default 2)")
    sp.add_argument("--loop", action="store_true",
                    help="images/s of the bare step, of `train` and of `train` under papermill")
    sp.add_argument("--breakdown", action="store_true",
                    help="where a training step of --profile goes: phases, generator parts, "
                         "data and I/O")
    sp.add_argument("--taps", action="store_true",
                    help="time the residual convolution dense against tap by tap, per channel "
                         "count, map size and --precision")
    sp.add_argument("--json", default=None, help="also write the rows to this JSON file")
    sp = sub.add_parser("evaluate", help="FID, KID, SSIM, PSNR and faithfulness of a run")
    sp.add_argument("--checkpoint", required=True, help="run folder or snapshot file")
    sp.add_argument("--dataset", default=None, help="the dataset to evaluate on (default: the run's)")
    sp.add_argument("--root", default=None, help="image root for folder/edges2shoes")
    sp.add_argument("--sketch-source", default=None, choices=["line", "xdog"],
                    help="OpenMoji's sketches: the artist's line art or XDoG (default: the run's)")
    sp.add_argument("--split", default="test", help="test (default), train or val")
    sp.add_argument("--limit", type=int, default=0, help="evaluate at most this many images")
    sp.add_argument("--no-reference", action="store_true", help="feed zero references")
    sp = sub.add_parser("colorize", help="colour a sketch (or a folder of them)",
                        description="Colour a sketch; the output has the sketch's own size and "
                        "aspect ratio (nothing is cropped).")
    sp.add_argument("--checkpoint", required=True, help="a run folder (its final snapshot, else "
                    "its newest) or a snapshot-*.pt file; read without running any code it holds")
    sp.add_argument("--sketch", required=True,
                    help="a sketch image, or a folder of them (searched recursively); a line "
                    "drawing is thresholded, a colour image made into a sketch with XDoG")
    sp.add_argument("--reference", default=None,
                    help="reference image or folder; fitted inside the sketch's working canvas "
                    "(aspect kept, white around it)")
    sp.add_argument("--out", required=True,
                    help="an image file (.png, .jpg, ...) for one sketch, or a folder (an existing "
                    "one, a name without a suffix, or a path ending in '/'), where each output "
                    "keeps its sketch's path below the sketch folder; never an input or a folder "
                    "inside one that is read (docs/robustness.md)")
    sp.add_argument("--device", default="cpu", help="where the generator runs: cpu (default), "
                    "cuda, cuda:1, ...")
    sp.add_argument("--size", type=int, default=None,
                    help="working size: the sketch's longer side is resized to this, aspect kept, "
                    "and padded with white to a multiple of 16 for the generator; a positive "
                    "multiple of 16, at most 2048 (default: the model's training resolution)")
    sp.add_argument("--lines", choices=("keep", "none"), default="keep",
                    help="how the colours get back to the sketch's size: 'keep' (default) "
                    "upsamples them bilinearly and draws the sketch's own full-resolution line "
                    "art in black on top; 'none' is the plain bilinear upsampling")
    sp = sub.add_parser("reproduce", help="run every notebook in order through papermill")
    sp.add_argument("--profile", default=None, help="smoke, mini or paper (default: "
                    "$PAPERLIB_PROFILE or mini)")
    sp.add_argument("--only", default=None, help="run only notebooks whose name contains this")
    sp.add_argument("--dataset", default=None, help="openmoji or faces (default: "
                    "$PAPERLIB_DATASET, else openmoji); faces writes results/faces/")
    sp.add_argument("--plan", action="store_true",
                    help="only say what the notebooks would train and how long that takes on "
                         "this CPU (a few steps of each kind of run are timed), then stop")
    sp = sub.add_parser("screenshot", help="screenshot notebook 08's widget in JupyterLab "
                        "(headless Chromium through playwright, the 'screenshot' extra)")
    sp.add_argument("--profile", default="mini", help="whose runs the notebook shows (default mini)")
    sp.add_argument("--out", default=None, help="PNG path (default results/fig_try_it_screenshot.png)")
    sp.add_argument("--chromium", default="/usr/bin/chromium", help="the browser executable")

    sp = sub.add_parser("long-run", help="one recipe for many more steps, seeds side by side, "
                        "its reference use measured at every snapshot (for a GPU)",
                        description="Train --profile with its schedule stretched to --steps (or "
                        "to what fits --budget), seeds side by side, and measure every snapshot "
                        "with evaluate.reference_use while it trains; see results/gpu/README.md.")
    sp.add_argument("--work", default=None,
                    help="folder for the run folders (checkpoints, snapshots; default "
                         "runs/<profile>/long-run)")
    sp.add_argument("--out", default=None, help="folder for the curves, logs, samples and "
                    "meta.json (default: the --work folder)")
    sp.add_argument("--profile", default="mini", help="the recipe (default mini)")
    sp.add_argument("--seeds", type=int, nargs="+", default=[0, 1], metavar="SEED",
                    help="one run per seed, side by side (default 0 1)")
    steps = sp.add_mutually_exclusive_group()
    steps.add_argument("--steps", type=int, default=None,
                       help="training steps of each run (default 8800, as in results/gpu)")
    steps.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                       help="instead of --steps: time each seed's step on this device, then "
                            "train as many steps as fit this many seconds")
    sp.add_argument("--round", type=int, default=800, help="with --budget: the step count is a "
                    "multiple of this")
    sp.add_argument("--snapshots", type=int, default=8, help="snapshots over each run")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sp.add_argument("--augment-on-device", action="store_true",
                    help="build the augmented-self pair on the training device (for GPUs: the "
                         "same random draws, not bit-identical arithmetic)")
    sp.add_argument("--test-n", type=int, default=0,
                    help="test images each snapshot is measured on (0: the whole split)")
    sp.add_argument("--train-n", type=int, default=48,
                    help="training images each snapshot is also measured on (0: none)")
    sp.add_argument("--workers", type=int, default=0,
                    help="worker processes (default two per seed: one trains, one measures)")
    sp.add_argument("--no-samples", dest="samples", action="store_false",
                    help="draw no sample grid")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the recipe, e.g. --set train.ema_decay=0.999")
    sp.add_argument("--run", default="", help="start from this run of the experiment registry "
                    "(its overrides of --profile; --set comes after them)")
    sp.add_argument("--split", default="test", help="the split each snapshot is measured on "
                    "(--test-n images of it; 'val' needs data.val_holdout > 0)")
    sp.add_argument("--hue", action="store_true", help="also measure the hue probe "
                    "(evaluate.hue_transfer: the 2x2 chroma map) at every snapshot")
    sp = sub.add_parser("long-run-summary", help="table and plot of a long-run output folder")
    sp.add_argument("folder", help="the --out folder of long-run")
    sp.add_argument("--out-dir", default=None, help="where long_run_summary.{md,png} go "
                    "(default the folder itself)")
    sp.add_argument("--runs-root", default=None, help="where the repository's runs of the "
                    "recipe are, for comparison (default runs/<profile>)")

    sp = sub.add_parser("hue-study", help="the hue study: the registry's hue arms on each "
                        "dataset side by side, every snapshot measured on the validation split",
                        description="Train the hue arms of the experiment registry (or --arms) on "
                        "each --datasets side by side and measure every snapshot on split 'val' "
                        "(reference use and the hue probe's 2x2 chroma map); see "
                        "paperlib/study/hue_study.py.")
    sp.add_argument("--work", default=None, help="folder of the study (default "
                    "runs/<profile>/hue-study)")
    sp.add_argument("--profile", default="mini", help="the recipe the arms change (default mini)")
    sp.add_argument("--arms", nargs="+", default=[], help="registry runs (default the hue arms)")
    sp.add_argument("--datasets", nargs="+", default=["openmoji", "faces"],
                    help="datasets each arm trains on (default openmoji faces)")
    sp.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                    help="seeds of each arm (default 0)")
    sp.add_argument("--steps", type=int, default=0, help="steps of each run (default: the arm's own)")
    sp.add_argument("--snapshots", type=int, default=6, help="snapshots over each run (default 6)")
    sp.add_argument("--val-n", type=int, default=256,
                    help="validation images each snapshot is measured on (0: all held out)")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sp.add_argument("--augment-on-device", action="store_true",
                    help="build the augmented-self pairs on the training device (GPUs)")
    sp.add_argument("--workers", type=int, default=0, help="processes at a time (default: "
                    "every job at once on a GPU, one per core on a CPU)")
    sp = sub.add_parser("hue-study-summary", help="hue_study.{csv,md,png} of a hue-study folder")
    sp.add_argument("work", help="the --work folder of hue-study")
    sp.add_argument("--out-dir", default=None, help="where they go (default the folder itself)")
    sp.add_argument("--best", type=int, default=0, metavar="K", help="print only the K levers "
                    "that bring both chroma axes in soonest (hue_study.best_arms), one line")
    sp = sub.add_parser("fp32-check", help="the main model trained in float32 (what a CPU "
                        "without bf16 units trains) beside the committed bf16 tables: "
                        "results/fp32/main_<dataset>.{csv,md}")
    sp.add_argument("--profile", default="mini", help="whose committed tables (default mini)")
    sp.add_argument("--dataset", default="openmoji", help="openmoji or faces (default openmoji)")
    sp.add_argument("--no-train", action="store_true",
                    help="only score runs already trained and evaluated")

    return p


# The exit status of a process stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def main(argv=None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except KeyboardInterrupt:
        # One line, not the traceback of wherever the interrupt landed. Files are written
        # through temp files and renames (paths.atomic_write), so none is left half written.
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        if args is not None and args.cmd == "train" and type(e).__name__ == "NonFiniteLossError":
            return 3
        return 2


def _one_line(e: BaseException) -> str:
    """The message of an expected failure, without tracebacks: a DataLoader worker's error
    arrives with the worker's traceback in its text; only its last line is the message."""
    text = str(e).strip()
    if "Traceback (most recent call last)" in text:
        text = text.splitlines()[-1]
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.errno in (errno.ENOSPC, errno.EDQUOT) \
            and "disk full" not in text:
        text = f"disk full: {text}"
    return text


def write_json(path: str, obj) -> None:
    """A result file, written all at once: an interrupted write leaves the earlier file."""
    text = json.dumps(obj, indent=2)
    atomic_write(path, lambda f: f.write(text.encode()))


def _report(result, text: str, json_path: str | None) -> int:
    """Print a bench result's text, and write the result as JSON when asked."""
    print(text)
    if json_path:
        write_json(json_path, result)
    return 0


def _dispatch(args) -> int:
    if args.cmd == "prepare-data":
        from .study.reproduce import prepare
        print(json.dumps(prepare(_config(args)), indent=2))
    elif args.cmd == "train":
        from .training.loop import train
        summary = train(_config(args), args.run_dir)
        print(json.dumps(summary))
    elif args.cmd == "bench":
        from .tools import bench
        for flag, value, modes in (("--rev-set", args.rev_set, ["--compare"]),
                                   ("--now-set", args.now_set, ["--compare"]),
                                   ("--set", args.set, ["--compare", "--breakdown", "--loop"])):
            if value and not any(getattr(args, m[2:]) for m in modes):
                raise SystemExit(f"error: {flag} applies only with {' or '.join(modes)}; "
                                 f"this bench would ignore {' '.join(value)}")
        if args.breakdown or args.loop:
            result = (bench.breakdown(args.profile, args.set) if args.breakdown
                      else bench.loop(args.profile, args.set, rounds=args.rounds or 2))
            return _report(result, bench.format_breakdown(result) if args.breakdown
                           else bench.format_loop(result), args.json)
        if args.compare:
            result = bench.compare(args.compare, args.profile, args.set, args.rev_set,
                                   args.now_set, rounds=args.rounds or 5, workers=args.workers)
            return _report(result, bench.format_compare(result), args.json)
        if args.taps:
            rows = bench.tap_rows(precisions=bench.bench_precisions(args.precision))
            return _report(rows, bench.format_taps(rows), args.json)
        if args.fid:
            rows = bench.fid_rows()
            text = "\n".join(f"{r['what']:48s} {r['images_per_sec']:6.1f} images/s ({r['cpu']})"
                             for r in rows)
            return _report(rows, text + f"\nlargest feature difference between the two: "
                                        f"{rows[0]['max_feature_difference']:.1e}", args.json)
        if args.data:
            rows = bench.data_rows()
            for r in rows:
                print(f"sample pipeline {r['resolution']:4d} px, {r['workers']} workers: "
                      f"{r['images_per_sec']:8.1f} images/s (median of {r['repeats']})")
            if args.json:
                write_json(args.json, rows)
            return 0
        rows = bench.run(args.resolution, args.batch, args.width, args.aggregation,
                         bench.bench_precisions(args.precision), args.repeats, train=not args.no_train,
                         channels_last=not args.contiguous)
        print(bench.format_rows(rows))
        if args.json:
            write_json(args.json, rows)
    elif args.cmd == "evaluate":
        from .evaluation.evaluate import evaluate, format_table
        rows = evaluate(args.checkpoint, dataset=args.dataset, root=args.root,
                        sketch_source=args.sketch_source, split=args.split,
                        limit=args.limit, no_reference=args.no_reference)
        print(format_table(rows))
    elif args.cmd == "colorize":
        from .app.colorize import colorize_files
        for path in colorize_files(args.checkpoint, args.sketch, args.out, args.reference,
                                   device=args.device, size=args.size, lines=args.lines):
            print(path)
    elif args.cmd == "screenshot":
        from .app.screenshot import take
        print(take(args.out, profile=args.profile, chromium=args.chromium))
    elif args.cmd == "long-run":
        from .study.reproduce import runs_dir
        from .study.long_run import LongRun, run
        length = ({"steps": 0, "budget_seconds": args.budget} if args.budget is not None
                  else {} if args.steps is None else {"steps": args.steps})
        work = args.work or str(runs_dir(args.profile) / "long-run")
        run(LongRun(out=args.out or work, work=work, profile=args.profile,
                    seeds=tuple(args.seeds), **length,
                    round_to=args.round, snapshots=args.snapshots, device=args.device,
                    augment_on_device=args.augment_on_device, sets=tuple(args.set),
                    test_n=args.test_n, train_n=args.train_n, workers=args.workers,
                    samples=args.samples, run=args.run, split=args.split, hue=args.hue))
    elif args.cmd == "long-run-summary":
        from .study.long_run_summary import summarise
        text, md, png = summarise(args.folder, args.out_dir, args.runs_root)
        print(text)
        print(f"wrote {md} and {png}")
    elif args.cmd == "hue-study":
        from .study.reproduce import runs_dir
        from .study.hue_study import HueStudy, run as run_study
        work = args.work or str(runs_dir(args.profile) / "hue-study")
        run_study(HueStudy(work=work, arms=tuple(args.arms), datasets=tuple(args.datasets),
                           seeds=tuple(args.seeds), profile=args.profile, steps=args.steps,
                           snapshots=args.snapshots, val_n=args.val_n, device=args.device,
                           augment_on_device=args.augment_on_device, workers=args.workers))
        print(f"wrote {work}")
    elif args.cmd == "hue-study-summary":
        from .study.hue_study import arm_table, best_arms, curve_rows, summarise
        if args.best:
            print(" ".join(best_arms(arm_table(curve_rows(args.work)), args.best)))
        else:
            for path in summarise(args.work, args.out_dir):
                print(f"wrote {path}")
    elif args.cmd == "fp32-check":
        from .config import get_dataset
        from .study.fp32_check import run
        print(f"wrote {run(args.profile, get_dataset(args.dataset), train=not args.no_train)}")
    elif args.cmd == "reproduce":
        from .config import get_dataset
        from .study.estimate import plan
        from .study.reproduce import notebooks, run_notebooks
        if args.plan:
            profile = args.profile or os.environ.get("PAPERLIB_PROFILE", "mini")
            names = [nb.name for nb in notebooks(args.only)]
            print(plan(profile, get_dataset(args.dataset), names).summary())
            return 0
        run_notebooks(profile=args.profile, only=args.only, dataset=args.dataset, planner=plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
