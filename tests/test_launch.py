"""Several processes for a notebook's runs, for real on this CPU: one per run (spread) and torchrun (ddp)."""

import pandas as pd
import pytest

from common import launch, paths, recipes
from common.config import Execution
from common.device import cpu_bf16_kind
from common.experiment import run_experiment, run_experiments
from common.results import recorded_result


def micro(variant="basic", **changes):
    """A Level E run of a few dozen synthetic images (one thread per process: the machine has two cores)."""
    cfg = recipes.level_e(variant, profile="smoke", source="synthetic")
    return cfg.replace(**{**dict(synthetic_sizes=(48, 32), epochs=2, batch_size=16, eval_batch_size=32), **changes})


@pytest.fixture
def root(cpu_root):
    """A scratch root on the CPU, one thread per process (tests/conftest.py)."""
    return cpu_root


def test_spread_trains_each_run_once_in_the_workers_with_the_in_process_results(root, monkeypatch, capsys):
    configs = {"basic": micro(), "gap": micro("gap"), "strided": micro("strided")}
    spread = run_experiments(configs, notebook="02_test", allow_cpu=True,
                             execution=Execution(parallel="spread", gpus=2))
    out = capsys.readouterr().out
    assert "training 3 runs of 02_test in 2 worker processes" in out
    assert all(run.loaded for run in spread.values())  # the notebook's process only loaded what the workers wrote
    table = pd.read_csv(paths.results_dir("smoke") / "02_test.csv")
    assert sorted(table["run_id"]) == sorted(cfg.run_id for cfg in configs.values())  # each once
    assert not list(paths.checkpoints_dir("smoke").glob(".launch-*"))  # job, claims and logs cleaned up

    # the same runs again, one after the other in this process
    again = {name: run_experiment(cfg, notebook="02_again", force=True, progress=False, allow_cpu=True)
             for name, cfg in configs.items()}
    for name in configs:
        for key in ("test_acc_final", "test_loss_final", "best_epoch"):
            assert spread[name].row[key] == pytest.approx(again[name].row[key], rel=1e-6)


def test_ddp_launches_torchrun_and_the_main_process_records_the_run(root, monkeypatch, capsys):
    cfg = micro(epochs=1, synthetic_sizes=(64, 32))
    run = run_experiment(cfg, notebook="01_test", allow_cpu=True, execution=Execution(parallel="ddp", gpus=2))
    assert "over 2 processes (torchrun)" in capsys.readouterr().out
    assert run.loaded and run.row["device"] == f"cpu x1 {cpu_bf16_kind()}".rstrip() + " x2 processes"
    assert recorded_result(cfg, "01_test") is not None
    assert (paths.checkpoints_dir("smoke") / cfg.run_id / "last.pt").exists()
    assert run.history["train_loss"].notna().all()


def test_a_failed_launch_names_the_cause_and_the_way_out(root, monkeypatch):
    cfg = micro(source="imagefolder:gone-0123456789", source_path="/no/such/folder")
    with pytest.raises(launch.LaunchFailed, match=r"(?s)failed.*/no/such/folder.*parallel='off'"):
        run_experiment(cfg, notebook="01_test", allow_cpu=True, execution=Execution(parallel="ddp", gpus=2))


def test_runs_that_compare_whole_batches_stay_in_one_process(root, monkeypatch):
    ddp = Execution(parallel="ddp", gpus=2)
    noisy = recipes.noisy_labels("cifar10", "symmetric", 0.3, coteaching=True, profile="smoke")
    assert not launch.wants_torchrun(noisy, "06_test", False, ddp)
    assert launch.wants_torchrun(micro(), "01_test", False, ddp)
    with pytest.raises(ValueError, match="use one of off, ddp, spread"):
        Execution(parallel="sideways")


def test_a_run_another_process_is_training_is_refused_and_its_checkpoints_left_alone(root, monkeypatch):
    from common import experiment, results

    cfg = micro()
    checkpoints = paths.checkpoints_dir("smoke") / cfg.run_id
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.pt").write_bytes(b"the other process's")
    with results.locked(paths.checkpoints_dir("smoke") / cfg.run_id, wait=False):  # as that process holds it
        with pytest.raises(experiment.RunBusy, match="being trained by another process right now"):
            run_experiment(cfg, notebook="01_test", force=True, progress=False, allow_cpu=True)
    assert (checkpoints / "last.pt").read_bytes() == b"the other process's"  # force did not wipe it
    run = run_experiment(cfg, notebook="01_test", force=True, progress=False, allow_cpu=True)  # released: trains
    assert not run.loaded and run.row["epochs"] == 2
