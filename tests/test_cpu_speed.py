"""The device policy (common.device): flush-to-zero on every CPU thread, precision "auto", REPRO_ALLOW_CPU."""

import subprocess
import sys

import pytest
import torch

from common import device
from common.recipes import level_e

PROBE = "from common.device import every_thread_flushes; print(every_thread_flushes())"


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "2", "PATH": ""},
                         cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_every_worker_thread_flushes_denormals_once_common_is_imported():
    assert run_python("import common, torch\n"
                      "x = torch.randn(1 << 20); (x * x).sum()\n" + PROBE) == "True"


def test_the_probe_sees_a_worker_started_before_common_was_imported():
    # torch's worker threads started before the flag was set keep computing with denormals
    assert run_python("import torch; torch.set_num_threads(2); x = torch.randn(1 << 20); (x * x).sum()\n"
                      "import common, torch; torch.set_flush_denormal(True)\n" + PROBE) == "False"


def test_fit_warns_when_a_cpu_thread_keeps_denormals():
    out = run_python("import torch; torch.set_num_threads(2); x = torch.randn(1 << 20); (x * x).sum()\n"
                     "import warnings; warnings.simplefilter('error')\n"
                     "from common.device import check_flush_denormal\n"
                     "try:\n    check_flush_denormal()\nexcept UserWarning as w:\n    print(w)")
    assert "import common first" in out and "\n" not in out


@pytest.mark.parametrize("precision,native,expected", [
    ("auto", True, torch.bfloat16), ("auto", False, None), ("fp32", True, None), ("bf16", False, torch.bfloat16)])
def test_cpu_precision_auto_is_bf16_only_where_the_cpu_computes_it_natively(precision, native, expected, monkeypatch):
    monkeypatch.setattr(device, "native_bf16", lambda device: native)
    cfg = level_e("basic", profile="smoke").replace(precision=precision)
    assert device.autocast_dtype(cfg, torch.device("cpu")) is expected
    assert device.precision_name(expected) == {None: "fp32", torch.bfloat16: "bf16"}[expected]


def test_fp16_on_a_cpu_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="needs a GPU"):
        device.autocast_dtype(level_e("basic", profile="smoke").replace(precision="fp16"), torch.device("cpu"))


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_precision_auto_on_a_gpu_is_bf16_only_where_it_is_native_else_fp16(native, expected, monkeypatch):
    monkeypatch.setattr(device, "native_bf16", lambda device: native)  # compute capability >= 8.0
    cfg = level_e("basic", profile="smoke")
    assert device.autocast_dtype(cfg, torch.device("cuda")) is expected
    assert device.precision_name(expected) == device.auto_precision(torch.device("cuda"))


@pytest.mark.parametrize("value, allowed", [("1", True), ("0", False), ("", False), (None, False)])
def test_repro_allow_cpu_is_1_or_0(value, allowed, monkeypatch):
    if value is None:
        monkeypatch.delenv(device.ALLOW_CPU_ENV, raising=False)
    else:
        monkeypatch.setenv(device.ALLOW_CPU_ENV, value)
    assert device.allow_cpu_from_env() is allowed


@pytest.mark.parametrize("value", ["no", "yes", "true", "01"])
def test_any_other_repro_allow_cpu_is_refused_with_the_fix(value, monkeypatch):
    monkeypatch.setenv(device.ALLOW_CPU_ENV, value)
    with pytest.raises(ValueError, match=f"REPRO_ALLOW_CPU={value!r} is not a switch: set it to 1 .* or to 0"):
        device.allow_cpu_from_env()
