"""training.precision: one function decides the precision from the device's capabilities."""
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from paperlib.config import get_profile, override
from paperlib.training import precision
from paperlib.training.precision import Capabilities, decide

AMX = Capabilities("cpu", "Intel Xeon", amx_bf16=True, avx512_bf16=True, onednn_bf16=True)
AVX512_BF16 = Capabilities("cpu", "AMD EPYC 9004", avx512_bf16=True, onednn_bf16=True)
AVX2 = Capabilities("cpu", "AMD EPYC 7003")
# AVX-512 without its BF16 extension: oneDNN runs bf16 there, by conversion, not natively
AVX512_ONLY = Capabilities("cpu", "Intel Xeon Skylake", onednn_bf16=True)
CAPPED = Capabilities("cpu", "Intel Xeon", amx_bf16=True, avx512_bf16=True, onednn_bf16=False)
ARM = Capabilities("cpu", "Neoverse-V1", arm_bf16=True, onednn_bf16=True)
AMPERE = Capabilities("cuda", "NVIDIA A100", cuda_bf16=True)
VOLTA = Capabilities("cuda", "Tesla V100", cuda_bf16=False)


@pytest.mark.parametrize("cap, expected", [
    (AMX, "bf16"), (AVX512_BF16, "bf16"), (ARM, "bf16"), (AMPERE, "bf16"),
    (AVX2, "fp32"), (AVX512_ONLY, "fp32"), (CAPPED, "fp32"), (VOLTA, "fp32"),
])
def test_auto_is_bf16_exactly_where_the_device_has_bf16_units(cap, expected):
    d = decide("auto", cap)
    assert d.precision == expected
    assert d.native_bf16 == (expected == "bf16")
    assert cap.name in d.reason and not d.warning
    if expected == "fp32":
        assert "emulated" in d.reason


def test_the_reason_names_the_units_or_what_keeps_them_unused():
    assert "AMX" in decide("auto", AMX).reason
    assert "no AMX, no AVX-512 BF16" in decide("auto", AVX2).reason
    assert "ONEDNN_MAX_CPU_ISA" in decide("auto", CAPPED).reason
    assert decide("auto", AVX2).line().startswith("precision: fp32 (auto: AMD EPYC 7003")


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_an_explicit_precision_is_kept(requested):
    for cap in (AMX, AVX2):
        assert decide(requested, cap).precision == requested


def test_explicit_bf16_without_units_warns_with_the_slowdown():
    d = decide("bf16", AVX2)
    assert d.precision == "bf16"
    assert f"{precision.EMULATION_SLOWDOWN}x slower" in d.warning and "AMD EPYC 7003" in d.warning
    assert not decide("bf16", AMX).warning
    assert not decide("fp32", AVX2).warning


def test_resolve_raises_the_warning(monkeypatch):
    monkeypatch.setattr(precision, "probe", lambda device="cpu": AVX2)
    with pytest.warns(RuntimeWarning, match="emulated in software"):
        assert precision.resolve("bf16").precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve("auto").precision == "fp32"
        assert precision.resolve("bf16", warn=False).precision == "bf16"


def test_auto_keeps_the_precision_a_run_was_started_in():
    d = decide("auto", AVX2, recorded="bf16")
    assert d.precision == "bf16" and "started in bf16" in d.reason and d.warning
    assert decide("auto", AMX, recorded="fp32").precision == "fp32"
    # an explicit request is not overridden by what the folder holds
    assert decide("fp32", AMX, recorded="bf16").precision == "fp32"


def test_fp16_needs_a_gpu_and_unknown_values_are_refused():
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        decide("fp16", AMX)
    assert decide("fp16", AMPERE).precision == "fp16"
    with pytest.raises(ValueError, match="'half'"):
        decide("half", AMX)


def test_the_override_variable_rules_the_units_in_or_out(monkeypatch):
    monkeypatch.setenv(precision.ENV_OVERRIDE, "0")
    cap = precision.probe("cpu")
    assert cap.forced is False and not precision.native(cap)[0]
    assert precision.decide("auto", cap).precision == "fp32"
    monkeypatch.setenv(precision.ENV_OVERRIDE, "1")
    assert precision.native(precision.probe("cpu"))[0]
    monkeypatch.setenv(precision.ENV_OVERRIDE, "yes")
    with pytest.raises(ValueError, match="PAPERLIB_BF16_UNITS='yes' must be 0 or 1"):
        precision.probe("cpu")


def test_onednn_capped_at_avx2_reads_as_no_bf16_units():
    # the stand-in for an AVX2-only CPU: oneDNN kept below its bf16 kernels on any x86 CPU
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    env.pop(precision.ENV_OVERRIDE, None)
    code = ("from paperlib.training import precision as p; d = p.resolve('auto'); "
            "print(d.precision, p.native_bf16())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["fp32", "False"]


def test_autocast_takes_only_a_resolved_precision():
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        precision.autocast("auto", torch.device("cpu"))
    with precision.autocast("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")


@pytest.mark.slow
def test_a_run_records_the_resolved_precision_and_the_machine(tmp_path, monkeypatch, capfd):
    from paperlib.training.loop import train

    monkeypatch.setenv(precision.ENV_OVERRIDE, "0")
    config = override(get_profile("smoke"), {"train.precision": "auto", "train.max_steps": 2})
    run = tmp_path / "run"
    train(config, run, progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["precision"] == "fp32"
    assert saved["machine"]["precision_requested"] == "auto"
    assert saved["machine"]["device"] == precision.cpu_name()
    assert "precision: fp32 (auto:" in capfd.readouterr().err
    # resumed where bf16 units are present, "auto" keeps the run's fp32 and does not refuse it
    monkeypatch.setenv(precision.ENV_OVERRIDE, "1")
    train(override(config, {"train.max_steps": 2}), run, progress=False)
    assert "started in fp32" in capfd.readouterr().err


def test_the_mini_profile_asks_for_auto():
    assert get_profile("mini").train.precision == "auto"
    assert get_profile("smoke").train.precision == "fp32"
