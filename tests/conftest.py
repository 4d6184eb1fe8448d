"""Fixtures the test files share: a tiny registered network and a scratch root (helpers.py holds shared functions)."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from common import models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # the command lines: `import reproduce`


@models.register("tiny_cnn")
def tiny_cnn(num_classes=10):
    """A few hundred parameters, with BatchNorm and dropout like the real networks (registered for tests only)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, num_classes))


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A scratch output root (REPRO_ROOT); some test files narrow it with a `root` of their own."""
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture
def cpu_root(tmp_path, monkeypatch):
    """A scratch output root, the CPU only (even where CUDA exists, in subprocesses too) and one torch thread."""
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)
