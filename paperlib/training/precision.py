"""Which arithmetic a run computes in, decided once from what the hardware does natively.

bf16 autocast pays where a device has bf16 matrix units: Intel AMX tiles, AVX-512 BF16, a
GPU from Ampere on. Elsewhere oneDNN emulates bf16 in software, and the same work runs an order
of magnitude slower than in float32 (the mini step 15x, a 3x3 convolution 73x, on a 2-core AMD
EPYC with AVX2 only: docs/performance.md). float32 gives the same science (results/fp32/), so
`train.precision = "auto"` means bf16 where it is native and float32 elsewhere.

`decide` is the one place that makes the choice, from a `Capabilities` record; `probe` fills
that record from the machine. Everything that runs in bf16 (training, samples, the bench, the
precision check of notebook 02) asks `resolve` or `native_bf16`, never the config alone.
"""
from __future__ import annotations

import contextlib
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What emulated bf16 costs, for the messages: the mini training step on the 4x4 grid, two
# threads, 50 img/s in fp32 against 3.4 in bf16 (AMD EPYC, AVX2 only; docs/performance.md).
EMULATION_SLOWDOWN = 15
# Set to 0 or 1 to override what `probe` finds (0 stands in for a CPU without bf16 units).
ENV_OVERRIDE = "PAPERLIB_BF16_UNITS"


@dataclass(frozen=True)
class Capabilities:
    """What a device offers for bf16. On a CPU: the instruction sets cpuinfo reports and
    whether oneDNN will use bf16 kernels (False when ONEDNN_MAX_CPU_ISA caps it, or on an
    AVX2-only CPU); on a GPU, whether it has bf16 tensor cores."""
    device_type: str  # "cpu" or "cuda"
    name: str  # the CPU's model name or the GPU's
    amx_bf16: bool = False
    avx512_bf16: bool = False
    arm_bf16: bool = False
    onednn_bf16: bool = False
    cuda_bf16: bool = False
    forced: bool | None = None  # PAPERLIB_BF16_UNITS, when set


@dataclass(frozen=True)
class Decision:
    precision: str  # "fp32", "bf16" or "fp16": what the run computes in
    requested: str  # what the config asked for ("auto" or one of the above)
    native_bf16: bool
    reason: str  # one sentence: why this precision on this device
    device_name: str
    warning: str = ""  # set when an explicit request runs slowly here

    def line(self) -> str:
        """The one line a run prints at start."""
        return f"precision: {self.precision} ({self.reason})"


def native(cap: Capabilities) -> tuple[bool, str]:
    """Whether `cap`'s device computes bf16 in hardware, and the units that do (or what lacks)."""
    if cap.forced is not None:
        return cap.forced, f"bf16 units {'assumed' if cap.forced else 'ruled out'} by {ENV_OVERRIDE}"
    if cap.device_type == "cuda":
        return (True, "bf16 tensor cores") if cap.cuda_bf16 else (False, "no bf16 tensor cores")
    if cap.device_type != "cpu":
        return False, f"no bf16 units known on a {cap.device_type} device"
    units = [u for u, has in (("AMX", cap.amx_bf16), ("AVX-512 BF16", cap.avx512_bf16),
                              ("Arm BF16", cap.arm_bf16)) if has]
    if not units:
        return False, "no bf16 units (no AMX, no AVX-512 BF16)"
    if not cap.onednn_bf16:
        return False, (f"{' and '.join(units)}, which oneDNN is kept from using "
                       f"(ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})")
    return True, f"bf16 on {' and '.join(units)}"


def decide(requested: str, cap: Capabilities, recorded: str | None = None) -> Decision:
    """The precision a run computes in. `recorded` is the precision an existing run folder was
    started with: "auto" keeps it, so a run resumes in the arithmetic it began in."""
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    has, units = native(cap)
    name = cap.name
    slow = (f"train.precision=bf16 on {name} ({units}): bf16 is emulated in software and runs about "
            f"{EMULATION_SLOWDOWN}x slower than fp32 (docs/performance.md); train.precision=auto "
            f"or fp32 avoids it") if not has else ""
    if requested == "fp16" and cap.device_type != "cuda":
        raise ValueError("train.precision=fp16 needs a GPU; use auto, bf16 or fp32 on a CPU")
    if requested == "auto" and recorded in ("fp32", "bf16", "fp16"):
        return Decision(recorded, requested, has, f"auto: the run was started in {recorded}",
                        name, slow if recorded == "bf16" else "")
    if requested == "auto":
        if has:
            return Decision("bf16", requested, has, f"auto: {name}: {units}", name)
        return Decision("fp32", requested, has,
                        f"auto: {name}: {units}, so bf16 would be emulated, about "
                        f"{EMULATION_SLOWDOWN}x slower", name)
    return Decision(requested, requested, has, f"as set, on {name}", name,
                    slow if requested == "bf16" else "")


def cpu_name() -> str:
    """The CPU's model name as lscpu gives it ("AMD EPYC ...", "Intel(R) Xeon(R) ...")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_flag(name: str) -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(name in line.split(":", 1)[1].split()
               for line in text.splitlines() if line.startswith(("flags", "Features")))


def _torch_cpu_check(attr: str) -> bool:
    # private helpers of torch.cpu (cpuinfo underneath); absent in some builds
    fn = getattr(torch.cpu, attr, None)
    try:
        return bool(fn()) if fn else False
    except RuntimeError:
        return False


def probe(device: torch.device | str = "cpu") -> Capabilities:
    """This machine's `Capabilities` for `device`."""
    device = torch.device(device)
    forced = os.environ.get(ENV_OVERRIDE, "").strip()
    if forced not in ("", "0", "1"):
        raise ValueError(f"{ENV_OVERRIDE}={forced!r} must be 0 or 1 (or unset)")
    forced_value = None if forced == "" else forced == "1"
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return Capabilities("cuda", torch.cuda.get_device_name(index),
                            cuda_bf16=torch.cuda.is_bf16_supported(including_emulation=False),
                            forced=forced_value)
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    return Capabilities("cpu", cpu_name(),
                        amx_bf16=_torch_cpu_check("_is_amx_tile_supported") and _cpu_flag("amx_bf16"),
                        avx512_bf16=_torch_cpu_check("_is_avx512_bf16_supported"),
                        arm_bf16=platform.machine() in ("aarch64", "arm64") and _cpu_flag("bf16"),
                        onednn_bf16=onednn, forced=forced_value)


def resolve(requested: str, device: torch.device | str = "cpu", *, recorded: str | None = None,
            warn: bool = True) -> Decision:
    """`decide` on this machine; an explicit bf16 that would be emulated warns (once per call)."""
    decision = decide(requested, probe(device), recorded)
    if warn and decision.warning:
        warnings.warn(decision.warning, RuntimeWarning, stacklevel=2)
    return decision


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether this machine computes bf16 natively on `device`."""
    return native(probe(device))[0]


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision: bf16 or fp16 autocast, or none for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("train.precision=fp16 needs a GPU; use bf16 or fp32 on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"autocast takes a resolved precision (fp32, bf16 or fp16), not {precision!r}; "
                     f"resolve 'auto' first (training.precision.resolve)")
