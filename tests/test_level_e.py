"""Level E explorations: the variants' recipes, monitored test curves, the schedule bug made visible."""

import math

import matplotlib
import pytest
import torch

from common import recipes
from common.augment import op
from common.config import config_differences
from common.experiment import run_experiment, trace_steps
from common.schedules import lr_trace
from common.summary import compare_runs
from common.viz import plot_lr_schedules

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def cpu_one_thread(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def changes(variant):
    basic, cfg = recipes.level_e("basic").to_dict(), recipes.level_e(variant).to_dict()
    return {k for k in cfg if cfg[k] != basic[k]} - {"experiment"}


def test_each_variant_changes_only_what_the_report_changed():
    assert changes("ls_cutout") == {"label_smoothing", "augment"}
    assert recipes.level_e("ls_cutout").augment == (op("flip"), op("translate", fraction=0.1), op("cutout", size=8))
    for variant, name in (("warmup_cosine", "warmup_cosine"), ("step_decay", "step"),
                          ("cosine_restarts", "cosine_restarts")):
        cfg = recipes.level_e(variant)
        assert changes(variant) == {"lr", "schedule"} and cfg.lr == 1e-3 and cfg.schedule["name"] == name
        assert "stepped_every" not in cfg.schedule  # the fixed runs step in the schedule's own unit
    assert recipes.level_e("step_decay").schedule == {"name": "step", "step_size": 10, "gamma": 0.1}
    assert recipes.level_e("cosine_restarts").schedule == {"name": "cosine_restarts", "T_0": 10, "T_mult": 1}
    assert changes("strided") == {"model_options"}
    assert recipes.level_e("strided").model_options == {"downsample": "stride"}
    assert changes("gap") == {"model_options"} and recipes.level_e("gap").model_options == {"head": "gap"}


def test_combined_is_the_texts_combination_and_as_run_the_scripts():
    combined, as_run = recipes.level_e("combined"), recipes.level_e("combined_as_run")
    assert combined.model_options == {"downsample": "stride", "head": "gap"}
    assert combined.schedule == recipes.COSINE_RESTARTS and combined.label_smoothing == 0.1
    assert op("cutout", size=8) in combined.augment
    assert as_run.model_options == {"head": "gap"} and as_run.schedule["name"] == "cyclic"
    assert as_run.label_smoothing == 0.1 and op("cutout", size=8) in as_run.augment
    assert "downsample" in config_differences(as_run.to_dict(), combined.to_dict())


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(ValueError, match="ls_cutout.*gap"):
        recipes.level_e("dropout")


def micro(variant, **changes):
    cfg = recipes.level_e(variant, profile="smoke")
    return cfg.replace(**{**dict(synthetic_sizes=(60, 40), epochs=2, batch_size=20, eval_batch_size=40), **changes})


def test_monitored_test_curve_is_recorded_but_never_picks_the_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    run = run_experiment(micro("gap", epochs=3), "02_test", progress=False, allow_cpu=True)
    history = run.history
    assert history["test_acc"].notna().all() and history["val_acc"].isna().all()
    # without validation the final epoch is scored, even where an earlier test accuracy was higher
    assert run.row["best_epoch"] == 3
    assert history["test_acc"].iloc[-1] == pytest.approx(run.row["test_acc_final"])
    assert history["test_loss"].iloc[-1] == pytest.approx(run.row["test_loss_final"], rel=1e-6)
    unmonitored = run_experiment(micro("gap", epochs=3, monitor_test=False, seed=1), "02_test", progress=False,
                                 allow_cpu=True)
    assert unmonitored.history["test_acc"].isna().all()


def test_as_run_step_decay_collapses_the_learning_rate_within_the_first_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    cfg = micro("step_decay", synthetic_sizes=(200, 40), batch_size=5, epochs=30)  # 40 steps an epoch
    as_run = trace_steps(cfg.replace(schedule={**recipes.STEP_DECAY, "stepped_every": "batch"}), min_steps=30,
                         allow_cpu=True)
    fixed = trace_steps(cfg, min_steps=40, allow_cpu=True)
    assert len(as_run) == len(fixed) == 40  # whole epochs: one of 40 steps covers both
    assert len(trace_steps(cfg.replace(epochs=3), min_steps=41, allow_cpu=True)) == 80
    assert as_run["lr"].iloc[9] == pytest.approx(1e-3) and as_run["lr"].iloc[10] == pytest.approx(1e-4)
    assert as_run["lr"].iloc[-1] == pytest.approx(1e-6)
    assert (fixed["lr"] == 1e-3).all()  # written in epochs, stepped per epoch: no decay in epoch 1
    assert not (tmp_path / "smoke").exists() or not any((tmp_path / "smoke").rglob("*.csv"))  # a trace records nothing
    # the same first ten steps (same seed, same rate), then the as-run network stops moving
    assert as_run["loss"].iloc[:10].tolist() == fixed["loss"].iloc[:10].tolist()


def test_lr_figure_draws_the_written_and_the_as_run_schedules():
    fig = plot_lr_schedules({"step decay": recipes.STEP_DECAY}, steps_per_epoch=50, epochs=30, lr=1e-3, zoom_steps=40)
    top = fig.axes[0].get_lines()
    as_run, written = top[0].get_ydata(), top[1].get_ydata()
    assert list(written) == lr_trace(recipes.STEP_DECAY, 50, 30, 1e-3)
    assert list(as_run) == lr_trace({**recipes.STEP_DECAY, "stepped_every": "batch"}, 50, 30, 1e-3)
    assert len(fig.axes[1].get_lines()[0].get_ydata()) == 40


def row(experiment, acc, final=None, source="cifar10"):
    return {"experiment": experiment, "dataset": "cifar10", "source": source, "test_acc_best": acc,
            "test_acc_final": acc if final is None else final, "best_epoch": 30, "epochs": 30}


def test_compare_runs_puts_each_run_beside_its_published_number():
    jpeg = "imagefolder:cifar10-jpeg-27d093021b"
    frame = compare_runs([row("e_gap", 0.85, final=0.84, source=jpeg), row("e_combined_as_run", 0.8),
                          row("e_combined", 0.81)])
    # Level E is scored at its final epoch, as the report's numbers were
    assert frame.loc["e_gap", "report"] == 0.8426 and frame.loc["e_gap", "difference"] == pytest.approx(-0.0026)
    assert frame.loc["e_gap", "ours (final)"] == 0.84 and frame.loc["e_gap", "compared at"] == "final"
    assert frame["trained on"].tolist() == ["CIFAR-10, JPEG copy"] + ["CIFAR-10 (original files)"] * 2
    # the published "all combined" is the script's combination; the text's has no number of its own
    assert frame.loc["e_combined_as_run", "report"] == 0.7945
    assert math.isnan(frame.loc["e_combined", "report"]) and math.isnan(frame.loc["e_combined", "difference"])
