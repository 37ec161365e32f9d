"""training.loop: the schedule, smoke runs, resume, EMA, the device augmentation and the
errors a run can stop with."""
import json
import os
import subprocess
import sys

import pytest
import torch

from paperlib.config import get_profile, override
from paperlib.training.loop import NonFiniteLossError, lr_lambda, train
from paperlib.training.snapshot import FINAL


def folder_config(root, **sets):
    c = override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(root),
                                        "data.test_fraction": 0.0})
    return override(c, sets)


def test_lr_schedule_constant_then_linear_to_zero():
    f = lr_lambda(100, 0.5)
    assert f(0) == 1.0 and f(49) == 1.0
    assert f(75) == pytest.approx(0.5)
    assert f(100) == 0.0


def test_smoke_run_writes_the_run_folder(image_folder, tmp_path):
    run = tmp_path / "run"
    summary = train(folder_config(image_folder), run)
    assert summary["done"] and summary["step"] == 4
    assert json.loads((run / "config.json").read_text())["loss"]["perceptual_net"] == "vgg16-hed"
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    for key in ("g_rec", "g_adv", "g_perc", "g_style", "g_tr", "d_total", "lr_g", "lr_d",
                "images_per_sec"):
        assert all(torch.isfinite(torch.tensor(x[key])) for x in lines), key
    assert (run / "checkpoint-latest.pt").exists() and (run / FINAL).exists()
    assert list((run / "samples").glob("step-*.png"))
    # the checkpoint's keys are a file format: runs written by earlier code must still resume
    blob = torch.load(run / "checkpoint-latest.pt", weights_only=False)
    assert set(blob) == {"G", "D", "opt_g", "opt_d", "sched_g", "sched_d", "scaler", "rng", "step",
                         "config", "G_ema"}


def test_smoke_run_with_the_opt_in_sga_and_hue_rotation(image_folder, tmp_path):
    """The stop-gradient attention trains with the triplet loss, on hue-rotated references."""
    run = tmp_path / "run"
    summary = train(folder_config(image_folder, **{"model.aggregation": "sga",
                                                   "data.hue_rotation": 30.0}), run)
    assert summary["done"] and summary["step"] == 4
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert all(x["g_tr"] > 0 and torch.isfinite(torch.tensor(x["g_total"])) for x in lines)
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["aggregation"] == "sga" and saved["data"]["hue_rotation"] == 30.0


def test_augmenting_on_the_device_takes_the_same_draws():
    """prepare_batch(augment_on_device=True) only moves the images first: on the CPU the batch
    is the same, and the generator is left at the same state."""
    from paperlib.training.loop import prepare_batch

    config = get_profile("smoke")
    g = torch.Generator().manual_seed(0)
    raw = {"image": torch.rand(4, 3, 32, 32, generator=g) * 2 - 1,
           "sketch": torch.rand(4, 1, 32, 32, generator=g) * 2 - 1}
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)]
    a = prepare_batch(raw, config, gens[0], torch.device("cpu"))
    b = prepare_batch(raw, config, gens[1], torch.device("cpu"), augment_on_device=True)
    assert a.keys() == b.keys() and {"sketch", "reference", "target"} <= a.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(gens[0].get_state(), gens[1].get_state())


def test_resume_gives_exactly_the_uninterrupted_weights(image_folder, tmp_path):
    config = folder_config(image_folder, **{"train.max_steps": 6, "train.checkpoint_every": 100})
    train(config, tmp_path / "straight")
    train(config, tmp_path / "resumed", stop_at_step=3)
    assert not (tmp_path / "resumed" / FINAL).exists()
    train(config, tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "checkpoint-latest.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint-latest.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for net in ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"


def test_reconstruction_loss_falls_on_a_fixed_batch(tmp_path):
    # 16 images and batch 16: every step sees the same images (with fresh augmentations).
    # lr is 10x the paper's so that 30 steps are enough to see learning at this tiny size.
    import numpy as np
    from PIL import Image

    from conftest import draw_shapes

    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    for i in range(16):
        Image.fromarray(draw_shapes(rng, 48)).save(tmp_path / "img" / f"{i}.png")
    config = folder_config(tmp_path / "img", **{
        "train.max_steps": 30, "train.batch_size": 16, "train.log_every": 1,
        "train.sample_every": 1000, "train.checkpoint_every": 1000, "loss.lambda_adv": 0.0,
        "train.lr_g": 1e-3, "train.lr_d": 2e-3})
    train(config, tmp_path / "fit")
    rec = [json.loads(x)["g_rec"] for x in (tmp_path / "fit" / "stats.jsonl").read_text().splitlines()]
    assert len(rec) == 30 and all(np.isfinite(rec))
    assert sum(rec[-5:]) / 5 < 0.8 * sum(rec[:5]) / 5


def test_non_finite_loss_stops_with_the_term_and_step(image_folder, tmp_path):
    config = folder_config(image_folder, **{"loss.lambda_rec": float("inf")})
    with pytest.raises(NonFiniteLossError, match=r"g_total.*step 1"):
        train(config, tmp_path / "nan")


def test_rerun_with_a_different_config_is_refused(image_folder, tmp_path):
    train(folder_config(image_folder), tmp_path / "r")
    with pytest.raises(ValueError, match="different config.*model.aggregation"):
        train(folder_config(image_folder, **{"model.aggregation": "add"}), tmp_path / "r")


def test_a_run_from_before_a_config_field_was_added_still_resumes(image_folder, tmp_path):
    """A run written by code whose config lacked a field (its config.json and checkpoint do
    not name it) resumes from its checkpoint; a field it did set differently is still refused."""
    cut = folder_config(image_folder, **{"train.max_steps": 2})
    run = tmp_path / "old"
    train(cut, run)
    # as an older version of the code wrote them: no faces fields anywhere
    config = json.loads((run / "config.json").read_text())
    dropped = [k for k in config["data"] if k.startswith("faces_")]
    assert dropped, "the test needs a field to drop"
    for k in dropped:
        del config["data"][k]
    config["train"]["max_steps"] = folder_config(image_folder).train.max_steps
    (run / "config.json").write_text(json.dumps(config))
    from paperlib.training.checkpoint import CHECKPOINT
    blob = torch.load(run / CHECKPOINT, weights_only=False)
    blob["config"] = config
    torch.save(blob, run / CHECKPOINT)
    (run / FINAL).unlink()
    train(folder_config(image_folder), run)
    steps = [json.loads(x)["step"] for x in (run / "stats.jsonl").read_text().splitlines()]
    assert (run / FINAL).exists() and steps[-1] == folder_config(image_folder).train.max_steps
    config["data"]["resolution"] = 48
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="different config.*data.resolution"):
        train(folder_config(image_folder), run)


def test_paper_profile_without_vgg19_says_where_to_put_it(tmp_path, monkeypatch, image_folder):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("PAPERLIB_VGG19", raising=False)
    c = override(get_profile("paper"), {"data.dataset": "folder", "data.root": str(image_folder),
                                        "data.resolution": 32, "train.max_steps": 1})
    with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth"):
        train(c, tmp_path / "paper")


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights(image_folder, tmp_path):
    run = tmp_path / "ddp"
    script = tmp_path / "worker.py"
    script.write_text(
        "from paperlib.config import get_profile, override\n"
        "from paperlib.training.loop import train\n"
        "c = override(get_profile('smoke'), {'data.dataset': 'folder', 'data.root': %r,\n"
        "    'data.test_fraction': 0.0, 'train.max_steps': 3, 'train.batch_size': 2})\n"
        "s = train(c, %r, progress=False)\n"
        # a file per rank: the two ranks share one stdout pipe, where their lines can interleave
        "import os, pathlib\n"
        "pathlib.Path(%r, 'digest-' + os.environ['RANK']).write_text(s['weights_sha1'])\n"
        % (str(image_folder), str(run), str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29517", str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    digests = [(tmp_path / f"digest-{rank}").read_text() for rank in (0, 1)]
    assert len(digests) == 2 and digests[0] == digests[1], digests
    assert (run / "checkpoint-latest.pt").exists()


def test_ema_snapshot_is_the_average_and_resumes_bit_exactly(image_folder, tmp_path):
    config = folder_config(image_folder, **{"train.max_steps": 6, "train.checkpoint_every": 100,
                                            "train.ema_decay": 0.5})
    train(config, tmp_path / "straight")
    train(config, tmp_path / "resumed", stop_at_step=3)
    train(config, tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "checkpoint-latest.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint-latest.pt", weights_only=False)
    for k in a["G_ema"]:
        assert torch.equal(a["G_ema"][k], b["G_ema"][k]), f"G_ema.{k} differs after resume"
    snap = torch.load(tmp_path / "straight" / FINAL, weights_only=False)["generator"]
    w = "enc_r.convs.0.weight"
    assert torch.equal(snap[w], a["G_ema"][w])
    assert not torch.equal(snap[w], a["G"][w])  # the average lags the raw weights


def test_update_ema_is_the_convex_combination():
    from paperlib.training.loop import update_ema

    ema, model = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = ema.weight.detach().clone()
    update_ema(ema, model, 0.9)
    assert torch.allclose(ema.weight, 0.9 * before + 0.1 * model.weight)


def test_without_the_adversarial_term_d_is_left_untouched(image_folder, tmp_path):
    config = folder_config(image_folder, **{"loss.lambda_adv": 0.0, "train.max_steps": 3,
                                            "train.checkpoint_every": 100})
    train(config, tmp_path / "noadv")
    blob = torch.load(tmp_path / "noadv" / "checkpoint-latest.pt", weights_only=False)
    torch.manual_seed(config.train.seed)
    from paperlib.core.model import Discriminator, Generator

    Generator(config.model)  # same draw order as build_nets: G first, then D
    d0 = Discriminator(config.model).state_dict()
    assert all(torch.equal(d0[k], blob["D"][k]) for k in d0 if k.endswith("weight"))
    lines = [json.loads(x) for x in (tmp_path / "noadv" / "stats.jsonl").read_text().splitlines()]
    assert all(x["g_adv"] == 0.0 and x["d_total"] == 0.0 for x in lines)
