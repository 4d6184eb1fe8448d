"""Faults a long run meets: a SIGKILL at any moment, a truncated checkpoint. The run must resume from the last
complete epoch (or start afresh) and end exactly where an uninterrupted run ends.

Every run here trains on the CPU, even on a GPU host: only there is resume bit-identical (cuDNN picks its
kernels anew in every process)."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from common import recipes, train
from common.checkpoints import saved_epoch
from common.experiment import run_experiment

from helpers import fit_until

EPOCHS = 8
METRICS = ["best_epoch", "val_acc_best", "test_acc_best", "test_loss_best", "test_acc_final", "test_loss_final"]


def small_run():
    return recipes.level_e("basic", profile="smoke").replace(synthetic_sizes=(192, 64), val_size=32, epochs=EPOCHS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, one torch thread (as in the faulty runs, so the floats match exactly)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("reference")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("REPRO_ROOT", str(root))
            patch.setattr(torch.cuda, "is_available", lambda: False)
            return run_experiment(small_run(), "faults", progress=False, allow_cpu=True).row
    finally:
        torch.set_num_threads(threads)


def rerun(root: Path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(root))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU, as the reference
    torch.set_num_threads(1)
    results = root / "smoke" / "results" / "faults.csv"
    results.unlink(missing_ok=True)  # the crash came before the run was recorded
    return run_experiment(small_run(), "faults", progress=False, allow_cpu=True).row


def checkpoints(root: Path) -> Path:
    return root / "smoke" / "checkpoints" / small_run().run_id


def test_truncated_last_checkpoint_resumes_from_the_previous_one(reference, tmp_path, monkeypatch):
    rerun(tmp_path, monkeypatch)
    last = checkpoints(tmp_path) / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # cut short, as by a full disk or a crash mid-write
    with pytest.warns(UserWarning, match=r"last\.pt is unreadable.*moved to last\.pt\.corrupt.*previous checkpoint"):
        row = rerun(tmp_path, monkeypatch)
    # set aside while the run resumed; the finished run keeps only its two checkpoints
    assert sorted(p.name for p in checkpoints(tmp_path).iterdir()) == ["best.pt", "last.pt"]
    assert {k: row[k] for k in METRICS} == {k: reference[k] for k in METRICS}


def test_every_checkpoint_corrupt_starts_afresh_and_never_crashes(reference, tmp_path, monkeypatch):
    rerun(tmp_path, monkeypatch)
    for name in ("last.pt", "prev.pt", "best.pt"):
        (checkpoints(tmp_path) / name).write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        row = rerun(tmp_path, monkeypatch)
    assert {k: row[k] for k in METRICS} == {k: reference[k] for k in METRICS}


def wait_for_epoch(folder: Path, epoch: int, process, timeout: float = 120) -> float:
    """The time at which folder/last.pt held `epoch` (its save complete, not just begun) while `process` ran."""
    deadline = time.time() + timeout
    while (saved_epoch(folder / "last.pt") or 0) < epoch:
        assert process.poll() is None and time.time() < deadline, f"the run ended before saving epoch {epoch}"
        time.sleep(0.005)
    return time.time()


def test_sigkill_at_a_random_moment_then_rerun_ends_as_the_uninterrupted_run(reference, tmp_path, monkeypatch):
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from common.experiment import run_experiment
        from common import recipes
        from common.config import RunConfig
        cfg = recipes.level_e("basic", profile="smoke").replace(synthetic_sizes=(192, 64), val_size=32, epochs={EPOCHS})
        assert cfg == {small_run()!r}
        run_experiment(cfg, "faults", progress=False, allow_cpu=True)
    """)
    env = {**os.environ, "REPRO_ROOT": str(tmp_path), "REPRO_PROFILE": "smoke", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        first = wait_for_epoch(checkpoints(tmp_path), 1, process)
        # epoch 2 saved: one epoch's duration (prev.pt appears when its save begins: a kill then left epoch 1)
        second = wait_for_epoch(checkpoints(tmp_path), 2, process)
        # anywhere in the epoch after, mid-step or mid-save: however fast the machine, epochs are left
        time.sleep(random.Random().uniform(0, 1) * (second - first))
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished or failed on its own
    last_epoch = torch.load(checkpoints(tmp_path) / ("last.pt" if (checkpoints(tmp_path) / "last.pt").exists()
                                                     else "prev.pt"), weights_only=False)["epoch"]
    assert 2 <= last_epoch < EPOCHS
    row = rerun(tmp_path, monkeypatch)
    assert {k: row[k] for k in METRICS} == {k: reference[k] for k in METRICS}


def test_a_checkpoint_without_a_grad_scaler_resumes_into_a_run_with_one(tmp_path, monkeypatch):
    # precision "auto" is bf16 (no scaler) on one GPU and fp16 (a scaler) on an older one: same config, same run
    cfg = small_run().replace(epochs=2)
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from common.experiment import build_for, load_split, make_loaders

    monkeypatch.setattr(train, "autocast_dtype", lambda cfg, device: None)  # fp32: no scaler, its state is {}
    loaders = make_loaders(cfg, load_split(cfg), torch.device("cpu"))
    folder = tmp_path / "checkpoints"
    fit_until(1, build_for(cfg), loaders, cfg, folder, progress=False)  # interrupted after epoch 1
    assert torch.load(folder / "last.pt", weights_only=False)["scaler"] == {}
    monkeypatch.setattr(train, "autocast_dtype", lambda cfg, device: torch.float16)  # fp16: a GradScaler
    outcome = train.fit(build_for(cfg), loaders, cfg, folder, progress=False)
    assert len(outcome.history) == 2
    assert torch.load(folder / "last.pt", weights_only=False)["scaler"]  # epoch 2 trained with the scaler
    assert not (folder / "prev.pt").exists()  # a finished run keeps only last.pt and best.pt
