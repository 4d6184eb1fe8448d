"""tools/cpu_queue.py --status: where each run of a queue stands, read from its checkpoints and rows."""

import cpu_queue
import torch

from common.checkpoints import run_folder
from common.experiment import build_for, load_split, make_loaders, run_experiment

from helpers import fit_until, micro


def test_status_follows_a_run_from_nothing_to_recorded(cpu_root):
    cfg = micro()
    assert cpu_queue.status(cfg, "01_basic_vgg") == "not started"
    loaders = make_loaders(cfg, load_split(cfg), torch.device("cpu"))
    fit_until(2, build_for(cfg), loaders, cfg, run_folder(cfg), progress=False)
    line = cpu_queue.status(cfg, "01_basic_vgg")
    assert line.startswith("epoch 2 of 3 checkpointed (about ") and "at the pace of its last 2 epochs)" in line
    (run_folder(cfg) / "last.pt").rename(run_folder(cfg) / "prev.pt")  # as while last.pt is being replaced
    assert cpu_queue.status(cfg, "01_basic_vgg").startswith("epoch 2 of 3 checkpointed")
    other = cfg.replace(lr=cfg.lr / 2)  # the same run id, another config
    assert other.run_id == cfg.run_id
    assert cpu_queue.status(other, "01_basic_vgg").startswith("a checkpoint of another config (epoch 2)")
    result = run_experiment(cfg, "01_basic_vgg", progress=False, allow_cpu=True)  # resumes, finishes, records
    assert cpu_queue.status(cfg, "01_basic_vgg").startswith(
        f"recorded: test acc {result.row['test_acc_final']:.4f} at the final epoch")
    assert cpu_queue.status(cfg, "02_regularization") != cpu_queue.status(cfg, "01_basic_vgg")  # rows per notebook


def test_status_trains_nothing(cpu_root, capsys, tmp_path):
    folder = tmp_path / "cifar10"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
    assert cpu_queue.main(["--status", "--cifar10", str(folder), "e-gap:1", "a-resnet18:42"]) == 0
    assert capsys.readouterr().out.splitlines() == ["e-gap:1: not started", "a-resnet18:42: not started"]
    assert not (cpu_root / "checkpoints").exists() and not (cpu_root / "results").exists()


def test_compile_reaches_every_run_of_the_queue(cpu_root, monkeypatch, tmp_path):
    folder = tmp_path / "cifar10"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
    seen = []
    monkeypatch.setattr(cpu_queue, "run_experiment", lambda cfg, notebook, **kwargs: seen.append(
        (cfg.run_id, kwargs["execution"].compile, kwargs["allow_cpu"])))
    for flags, compiled in (([], False), (["--compile"], True)):
        seen.clear()
        assert cpu_queue.main([*flags, "--cifar10", str(folder), "e-gap:1", "a-resnet18:42"]) == 0
        assert [entry[1:] for entry in seen] == [(compiled, True)] * 2 and "-s42-" in seen[1][0]
