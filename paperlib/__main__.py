"""Command line: python -m paperlib {prepare-data,train,bench,evaluate,colorize,reproduce,screenshot,
long-run,long-run-summary,hue-study,hue-study-summary,recipe-study,try,fp32-check,
claim-widths}."""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

# name: (module, unit, help). The module defines the command beside its code:
# add_<unit>_arguments(subparser) and <unit>_main(args), which returns the exit status (None: 0).
COMMANDS = {
    "prepare-data": ("study.reproduce", "prepare",
                     "render/cache the dataset and convert FID weights"),
    "train": ("training.loop", "train", "train or resume a run"),
    "bench": ("tools.bench", "bench", "throughput of inference and of a training step"),
    "evaluate": ("evaluation.evaluate", "evaluate", "FID, KID, SSIM, PSNR and faithfulness of a run"),
    "colorize": ("app.colorize", "colorize", "colour a sketch (or a folder of them)"),
    "reproduce": ("study.reproduce", "reproduce", "run every notebook in order through papermill"),
    "screenshot": ("app.screenshot", "screenshot", "screenshot notebook 08's widget in JupyterLab "
                   "(headless Chromium through playwright, the 'screenshot' extra)"),
    "long-run": ("study.long_run", "long_run", "one recipe for many more steps, seeds side by "
                 "side, its reference use measured at every snapshot (for a GPU)"),
    "long-run-summary": ("study.long_run_summary", "summary",
                         "table and plot of a long-run output folder"),
    "hue-study": ("study.hue_study", "hue_study", "the hue study: the registry's hue arms on each "
                  "dataset side by side, every snapshot measured on the validation split"),
    "hue-study-summary": ("study.hue_study", "summary",
                          "hue_study.{csv,md,png} of a hue-study folder"),
    "recipe-study": ("study.recipe_study", "recipe_study", "the recipe study (mini's departures "
                     "from the paper, on training images): table_recipe and fig_recipe_curves"),
    "try": ("study.try_it", "try", "train only the main model of one dataset, one seed: a "
            "first colouring within minutes, its time said up front"),
    "fp32-check": ("study.fp32_check", "fp32_check", "the main model trained in float32 (what a "
                   "CPU without bf16 units trains) beside the committed bf16 tables: "
                   "results/fp32/main_<dataset>.{csv,md}"),
    "claim-widths": ("study.claim_widths", "claim_widths", "the claims' interval widths in two "
                     "claims.csv files side by side: results/claim-widths/"),
}

# The exit status of a process stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def command_module(name: str):
    return importlib.import_module("." + COMMANDS[name][0], __package__)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line: one sub-command each, every option with its help text. With `only`,
    just that command's module is imported and its options added (the others are listed by
    name and help), so a command loads what it uses and no more."""
    p = argparse.ArgumentParser(prog="python -m paperlib", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (_, unit, text) in COMMANDS.items():
        sp = sub.add_parser(name, help=text)
        if only is None or name == only:
            getattr(command_module(name), f"add_{unit}_arguments")(sp)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the top-level parser has no options but -h: the first other word names the command
    named = next((a for a in argv if not a.startswith("-")), "")
    args = None
    try:
        args = build_parser(named if named in COMMANDS else "").parse_args(argv)
        return getattr(command_module(args.cmd), f"{COMMANDS[args.cmd][1]}_main")(args) or 0
    except KeyboardInterrupt:
        # One line, not the traceback of wherever the interrupt landed. Files are written
        # through temp files and renames (paths.atomic_write), so none is left half written.
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        if args is not None and args.cmd == "train" and type(e).__name__ == "NonFiniteLossError":
            return 3
        return 2


def one_line(e: BaseException) -> str:
    """The message of an expected failure, without tracebacks: a DataLoader worker's error
    arrives with the worker's traceback in its text; only its last line is the message."""
    text = str(e).strip()
    if "Traceback (most recent call last)" in text:
        text = text.splitlines()[-1]
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.errno in (errno.ENOSPC, errno.EDQUOT) \
            and "disk full" not in text:
        text = f"disk full: {text}"
    return text


if __name__ == "__main__":
    sys.exit(main())
