"""The fast path's promises that a CPU can check: the step loop reads nothing back, torch.compile changes
no result and its warm-up is recorded apart."""

import math
import shutil
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from common import train
from common.config import Execution, RunConfig
from common.loader import DeviceLoader
from common.train import Loaders, fit

READS = {"item", "tolist", "__int__", "__float__", "__bool__", "__index__", "cpu", "numpy"}  # each one waits on a GPU


def network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 4))


def run(images: int, epochs: int = 1, device="cpu", **options):
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (images, 3, 8, 8), dtype=torch.uint8, generator=gen)
    cfg = RunConfig(dataset="cifar10", mean=(0.5,) * 3, std=(0.5,) * 3, schedule={"name": "constant"},
                    experiment="fast", model="tiny", source="synthetic", num_classes=4, epochs=epochs,
                    batch_size=8, optimizer="sgd", lr=0.1, augment=(), seed=2)
    loader = DeviceLoader(x, torch.randint(0, 4, (images,), generator=gen), 8, (0.5,) * 3, (0.5,) * 3,
                          augment=None, seed=2, device=device)
    return fit(network().to(device), Loaders(loader), cfg, progress=False, execution=Execution(**options))


def reads_from_common(fn) -> int:
    """How many times code in common/ reads a tensor's value back to Python while fn runs."""
    class Count(TorchFunctionMode):
        reads = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in READS and "/common/" in sys._getframe(1).f_code.co_filename:
                Count.reads += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.reads


def test_the_step_loop_reads_no_value_back(monkeypatch):
    monkeypatch.setattr(train, "CHECK_EVERY", 10_000)  # the NaN guard's look, which on a CPU reads at once
    short, long = reads_from_common(lambda: run(16)), reads_from_common(lambda: run(160))
    assert short == long > 0  # 2 steps or 20, the same reads: the epoch's totals, once


@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile needs a C compiler on a CPU")
def test_compiled_training_gives_the_same_run_and_times_its_warmup_apart():
    torch._dynamo.reset()
    eager, compiled = run(24, epochs=2), run(24, epochs=2, compile=True)
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert math.isnan(a["compile_seconds"])
    first, second = (row["compile_seconds"] for row in compiled.history)
    assert first > 0 and second == 0.0  # the first steps compiled; the second epoch reuses them
    assert compiled.history[0]["train_seconds"] < first  # and the warm-up is not in the training time
    for key, value in eager.best_state.items():
        torch.testing.assert_close(compiled.best_state[key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_the_step_loop_never_waits():
    def syncs(images: int) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")  # every synchronising CUDA call warns
            try:
                run(images, device="cuda")
            finally:
                torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in caught)

    run(16, device="cuda")  # first calls (cuDNN autotuning, allocations) out of the count
    assert syncs(16) == syncs(800)  # 2 steps or 100 (two looks of the NaN guard): the same syncs, around the loop
