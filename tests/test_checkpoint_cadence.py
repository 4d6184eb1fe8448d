"""How often a run checkpoints: every epoch on a CPU; on a GPU only as often as keeps writing under 2 % of the
run's time, with best.pt and last.pt always agreeing on disk, whatever moment a crash picks."""

import time

import pytest
import torch

from common import checkpoints, train
from common.config import Execution
from common.experiment import build_for, load_split, make_loaders

from helpers import micro


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_cadence_writes_first_last_and_only_once_training_outweighs_the_write_fifty_times():
    clock = FakeClock()
    cadence = checkpoints.Cadence(share=0.02, clock=clock)
    assert cadence.due(final=False)  # the first epoch writes, to learn what a write costs
    cadence.written(1.0)
    clock.now += 49.0
    assert not cadence.due(final=False)
    assert cadence.due(final=True)  # the last epoch always writes
    clock.now += 1.0
    assert cadence.due(final=False)  # 50 s of training per 1 s of writing: 1/51 of the time
    assert checkpoints.Cadence(share=None, clock=clock).due(final=False)  # CPU: every epoch


def test_checkpoint_share_must_be_a_fraction():
    with pytest.raises(ValueError, match="between 0 and 1"):
        Execution(checkpoint_share=2)


@pytest.fixture
def scripted_run(cpu_root, monkeypatch):
    """A tiny run whose validation scores are scripted: epochs 1, 3 and 5 improve, the others do not."""
    cfg = micro(val_size=16, epochs=6, monitor_test=False)
    loaders = make_loaders(cfg, load_split(cfg), torch.device("cpu"))
    scores = {1: (1.0, 0.5), 2: (1.0, 0.4), 3: (1.0, 0.6), 4: (1.0, 0.5), 5: (1.0, 0.7), 6: (1.0, 0.6)}
    calls = []

    def evaluate(*args, **kwargs):
        calls.append(None)
        return scores[len(calls)]

    monkeypatch.setattr(train, "evaluate", evaluate)
    return cfg, loaders, calls


def slow_saves(monkeypatch, seconds):
    """A disk that takes `seconds` for every checkpoint file; the files written, in order."""
    written, save = [], checkpoints.save

    def slow(obj, path):
        time.sleep(seconds)
        written.append((path.name, obj["epoch"]))
        save(obj, path)

    monkeypatch.setattr(checkpoints, "save", slow)
    return written


def test_a_run_with_a_share_writes_rarely_and_its_best_checkpoint_matches_its_last(scripted_run, cpu_root,
                                                                                  monkeypatch):
    cfg, loaders, _ = scripted_run
    written = slow_saves(monkeypatch, 0.2)  # far slower than a micro epoch: the cadence must skip epochs
    folder = cpu_root / "checkpoints"
    result = train.fit(build_for(cfg), loaders, cfg, folder, progress=False,
                       execution=Execution(checkpoint_share=0.02))
    assert [epoch for name, epoch in written if name == "last.pt"] == [1, 6]  # the first, to measure, and the last
    assert ("best.pt", 5) in written and ("best.pt", 3) not in written  # best weights go with the last.pt naming them
    assert result.best_epoch == 5
    assert torch.load(folder / "best.pt", weights_only=False)["epoch"] == 5
    assert [round(row["checkpoint_seconds"] > 0) for row in result.history] == [1, 0, 0, 0, 0, 1]
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # finished: no prev.pt, no best-prev.pt


def test_every_epoch_checkpoints_on_a_cpu(scripted_run, cpu_root, monkeypatch):
    cfg, loaders, _ = scripted_run
    written = slow_saves(monkeypatch, 0.0)
    train.fit(build_for(cfg), loaders, cfg, cpu_root / "checkpoints", progress=False)
    assert [epoch for name, epoch in written if name == "last.pt"] == [1, 2, 3, 4, 5, 6]
    assert [epoch for name, epoch in written if name == "best.pt"] == [1, 3, 5]


def test_a_crash_between_the_best_and_the_last_checkpoint_resumes_with_the_best_before(scripted_run, cpu_root,
                                                                                      monkeypatch):
    cfg, loaders, calls = scripted_run
    folder = cpu_root / "checkpoints"
    save = checkpoints.save

    def crash_at_epoch_3(obj, path):
        if path.name == "last.pt" and obj["epoch"] == 3:  # best.pt (epoch 3) is written, last.pt is not
            raise KeyboardInterrupt
        save(obj, path)

    monkeypatch.setattr(checkpoints, "save", crash_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train.fit(build_for(cfg), loaders, cfg, folder, progress=False)
    assert torch.load(folder / "best.pt", weights_only=False)["epoch"] == 3
    assert torch.load(folder / "best-prev.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(checkpoints, "save", save)
    del calls[2:]  # the resumed run evaluates epoch 3 again
    result = train.fit(build_for(cfg), loaders, cfg, folder, progress=False)  # from prev.pt: epoch 2, best epoch 1
    assert len(result.history) == 6 and result.best_epoch == 5
