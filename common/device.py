"""The device and precision policy: which device a run trains on, in which precision and memory layout, and
flush-to-zero on the CPU."""

import os
import warnings

import torch

ALLOW_CPU_ENV = "REPRO_ALLOW_CPU"  # 1: the full profile may train on a CPU; 0 or unset: it may not
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # a precision's autocast dtype


class NoGPU(RuntimeError):
    """A full-profile run was started without a GPU."""


def allow_cpu_from_env() -> bool:
    """$REPRO_ALLOW_CPU as a switch: "1" allows the full profile on a CPU, "0" or unset does not."""
    value = os.environ.get(ALLOW_CPU_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{ALLOW_CPU_ENV}={value!r} is not a switch: set it to 1 to train the full profile on a CPU, "
                         "or to 0 (or unset it) to refuse that.")
    return value == "1"


def pick_device(profile: str, allow_cpu: bool = False) -> torch.device:
    """CUDA when present (this process's GPU under torchrun); the full profile refuses the CPU unless allowed."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if profile == "full" and not allow_cpu:
        raise NoGPU("The full profile needs a GPU and none was found: run on a GPU machine or in Colab "
                    "(Runtime > Change runtime type > GPU), use the smoke profile (PROFILE='smoke'), or set "
                    f"ALLOW_CPU = True ({ALLOW_CPU_ENV}=1) to train on the CPU anyway (hours per run).")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """True where the device computes bf16 in hardware: CUDA compute capability 8.0 or higher (A100, H100, ...;
    torch.cuda.is_bf16_supported also counts emulation, as on a T4), or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return bool(cpu_bf16_kind())


def cpu_bf16_kind() -> str:
    """The CPU's bf16 instructions, "AMX", "AVX512-BF16" or "": its kernels, and so a run's rounding, follow them."""
    probes = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    return next((kind for kind, probe in probes if getattr(getattr(torch, "cpu", None), probe, lambda: False)()), "")


def auto_precision(device: torch.device) -> str:
    """What "auto" trains in: bf16 where the device computes it natively, else fp16 (scaled) on CUDA, fp32 on a CPU."""
    return "bf16" if native_bf16(device) else "fp16" if device.type == "cuda" else "fp32"


def autocast_dtype(cfg, device: torch.device):
    """The autocast dtype of a run (a RunConfig) on `device`, or None for plain fp32."""
    precision = auto_precision(device) if cfg.precision == "auto" else cfg.precision
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a GPU ({cfg.run_id} trains on the CPU): use auto, bf16 or fp32.")
    return AUTOCAST[precision]


def precision_name(amp_dtype) -> str:
    """fp32, bf16 or fp16: what a run's forward pass computed in, as its results row records it."""
    return next(name for name, dtype in AUTOCAST.items() if dtype is amp_dtype)


def use_channels_last(cfg, device: torch.device) -> bool:
    """channels_last unless switched off: the fast conv layout on CUDA, and faster on a CPU too (see the README)."""
    return cfg.channels_last != "off"


def flush_denormals() -> None:
    """Set flush-to-zero and denormals-are-zero on this thread; threads torch creates later inherit them."""
    # weights drifting into denormals once made late CPU epochs several times slower
    torch.set_flush_denormal(True)


def every_thread_flushes() -> bool:
    """True when every intra-op CPU thread flushes denormals: one op spread over all of them on denormal inputs
    gives exact zeros (read as integers, since a float comparison would itself flush)."""
    smallest = torch.ones(torch.get_num_threads() * 65536, dtype=torch.int32).view(torch.float32)  # 1.4e-45
    return not bool((smallest * 1.0).view(torch.int32).any())


def check_flush_denormal() -> None:
    """Warn, in one sentence, when some CPU thread computes with denormals (it was created before the flag)."""
    flush_denormals()
    if not every_thread_flushes():
        warnings.warn("A CPU thread of torch does not flush denormal floats, because torch computed in parallel "
                      "before `common` was imported: import common first (restart the kernel), or CPU epochs can "
                      "slow down several times late in training.", stacklevel=3)
