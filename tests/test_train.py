"""fit() and run_experiment(): learning, resume, reloading, refusals, the NaN guard, best-validation weights.

Every run here is tiny (a few dozen synthetic images, a few epochs), on the CPU, one thread.
"""

import math
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from common import checkpoints, experiment, recipes, train
from common.augment import op
from common.checkpoints import CheckpointMismatch
from common.config import RunConfig, config_differences
from common.data import DataUnavailable
from common.device import NoGPU, autocast_dtype, pick_device, precision_name
from common.experiment import load_split, make_loaders, run_experiment
from common.loader import DeviceLoader
from common.models import build_model, count_parameters
from common.results import HISTORY_FIELDS, RESULT_FIELDS
from common.schedules import lr_trace
from common.train import Loaders, TrainingDiverged, fit

NOTEBOOK = "01_test"
METRICS = ["best_epoch", "val_acc_best", "test_acc_best", "test_loss_best", "test_acc_final",
           "test_loss_final", "params", "epochs", "run_id", "config_hash"]
HISTORY_VALUES = [f for f in HISTORY_FIELDS if not f.endswith("seconds")]  # wall times are all that may differ


@pytest.fixture(scope="module", autouse=True)
def cpu_one_thread():
    """Train on the CPU even where CUDA exists, so runs are bit-reproducible and comparable with
    fresh CPU evaluations; one intra-op thread is also much faster for these nets on 2 busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: False)
        yield
    torch.set_num_threads(before)


def use_root(mp, root, allow_cpu=True):
    mp.setenv("REPRO_ROOT", str(root))
    if allow_cpu:
        mp.setenv("REPRO_ALLOW_CPU", "1")
    else:
        mp.delenv("REPRO_ALLOW_CPU", raising=False)


def micro(profile="smoke", **changes):
    """The Level E recipe shrunk to a few dozen synthetic images and three epochs."""
    cfg = recipes.level_e("basic", profile=profile, source="synthetic")
    settings = dict(synthetic_sizes=(48, 32), epochs=3, batch_size=16, eval_batch_size=32)
    settings.update(changes)
    return cfg.replace(**settings)


def tiny_config(**changes):
    settings = dict(experiment="tiny", model="tiny_cnn", source="synthetic", image_size=8,
                    synthetic_sizes=(64, 32), val_size=16, epochs=5, batch_size=16, eval_batch_size=32,
                    lr=1e-2, augment=(op("flip"),), profile="smoke", mean=(0.5,) * 3, std=(0.5,) * 3,
                    dataset="cifar10", num_classes=10, optimizer="adam", schedule={"name": "constant"})
    settings.update(changes)
    return RunConfig(**settings)


def capture_last_checkpoints(monkeypatch):
    """Wrap checkpoints.save: keep a copy of the weights of every epoch's last.pt and count the saves."""
    original = checkpoints.save
    record = SimpleNamespace(weights={}, last_saves=0, interrupt_after=None)

    def saving(obj, path):
        original(obj, path)
        if path.name == "last.pt":
            record.last_saves += 1
            record.weights[obj["epoch"]] = {k: v.detach().clone() for k, v in obj["model"].items()}
            if record.interrupt_after is not None and record.last_saves == record.interrupt_after:
                raise KeyboardInterrupt  # the user stops the run right after the checkpoint

    monkeypatch.setattr(checkpoints, "save", saving)
    return record


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def evaluate_weights(cfg, state):
    """Loss and accuracy of the weights `state` on the run's test set, computed afresh."""
    split = load_split(cfg)
    _, _, test_loader = make_loaders(cfg, split, torch.device("cpu"))
    model = build_model(cfg.model, cfg.num_classes, **cfg.model_options)
    model.load_state_dict(state)
    return experiment.evaluate(model, test_loader, autocast_dtype(cfg, torch.device("cpu")))


# ----------------------------------------------------------------------------- shared runs

@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A full-profile basic VGG run on synthetic data (REPRO_ALLOW_CPU): 256 images, 3 epochs."""
    root = tmp_path_factory.mktemp("full")
    cfg = recipes.level_e("basic", profile="full", source="synthetic").replace(
        synthetic_sizes=(256, 256), epochs=3, batch_size=32, eval_batch_size=256)
    with pytest.MonkeyPatch.context() as mp:
        use_root(mp, root)
        result = run_experiment(cfg, NOTEBOOK, progress=False, allow_cpu=True)
    return SimpleNamespace(root=root, cfg=cfg, result=result)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A smoke-profile basic VGG run with a validation split: 48 train / 16 val images, 3 epochs."""
    root = tmp_path_factory.mktemp("smoke")
    cfg = micro("smoke", synthetic_sizes=(64, 32), val_size=16)
    with pytest.MonkeyPatch.context() as mp:
        use_root(mp, root, allow_cpu=False)
        result = run_experiment(cfg, NOTEBOOK, progress=False, allow_cpu=True)
    return SimpleNamespace(root=root, cfg=cfg, result=result)


def copy_root(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- learning and outputs

def test_basic_vgg_learns_synthetic_data(full_run):
    row, history = full_run.result.row, full_run.result.history
    assert not full_run.result.loaded
    assert row["test_acc_final"] > 0.5  # 10 classes: chance is 0.1
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["train_acc"].iloc[-1] > history["train_acc"].iloc[0]


def test_run_without_validation_scores_the_final_epoch(full_run):
    row = full_run.result.row
    assert row["best_epoch"] == 3
    assert math.isnan(row["val_acc_best"])
    assert row["test_acc_best"] == row["test_acc_final"] and row["test_loss_best"] == row["test_loss_final"]


def test_full_run_writes_results_history_and_figure(full_run):
    root, cfg, row = full_run.root, full_run.cfg, full_run.result.row
    run_id = cfg.run_id
    assert run_id == "e_basic-vgg_basic-synthetic-as-cifar10-s0-full"
    frame = pd.read_csv(root / "results" / f"{NOTEBOOK}.csv",
                        dtype={"config_hash": str, "git_commit": str, "torch": str})
    assert list(frame.columns) == RESULT_FIELDS
    assert len(frame) == 1
    written = frame.iloc[0]
    assert written["run_id"] == run_id and written["notebook"] == NOTEBOOK
    assert written["experiment"] == "e_basic" and written["model"] == "vgg_basic"
    assert written["source"] == "synthetic" and written["dataset"] == "cifar10" and written["profile"] == "full"
    assert written["precision"] == precision_name(autocast_dtype(cfg, torch.device("cpu")))
    assert written["seed"] == 0 and written["epochs"] == 3 and written["best_epoch"] == 3
    assert written["params"] == count_parameters(build_model("vgg_basic", 10))
    assert written["config_hash"] == cfg.fingerprint()
    assert written["test_acc_final"] == pytest.approx(row["test_acc_final"], rel=1e-12)
    assert written["test_loss_best"] == pytest.approx(row["test_loss_best"], rel=1e-12)
    assert written["torch"] == torch.__version__
    assert frame[RESULT_FIELDS].drop(columns=["val_acc_best", "noise_changed"]).notna().all().all()
    assert frame["noise_changed"].isna().all()  # no label noise in this run

    history = pd.read_csv(root / "results" / "history" / f"{run_id}.csv")
    assert list(history.columns) == HISTORY_FIELDS
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["val_acc"].isna().all()
    assert (history["seconds"] > 0).all()
    steps = 256 // 32
    trace = lr_trace(cfg.schedule, steps, cfg.epochs, cfg.lr)
    assert history["lr"].tolist() == pytest.approx([trace[e * steps] for e in range(3)], rel=1e-12)

    figure = root / "figures" / f"{run_id}.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (root / "checkpoints" / run_id / "last.pt").exists()
    assert not (root / "smoke").exists()
    assert not list(root.rglob("*.tmp"))  # atomic writes left no temp files


def test_finished_run_is_loaded_not_retrained(full_run, monkeypatch):
    use_root(monkeypatch, full_run.root)
    csv = full_run.root / "results" / f"{NOTEBOOK}.csv"
    before = csv.read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiment, "fit", no_training)
    again = run_experiment(full_run.cfg, NOTEBOOK, progress=False, allow_cpu=True)
    assert again.loaded
    for key in ("test_acc_best", "test_loss_best", "test_acc_final", "test_loss_final"):
        assert again.row[key] == pytest.approx(full_run.result.row[key], rel=1e-12)
    assert again.row["run_id"] == full_run.cfg.run_id
    pd.testing.assert_frame_equal(again.history[HISTORY_VALUES], full_run.result.history[HISTORY_VALUES],
                                  check_exact=False, rtol=1e-12)
    assert csv.read_bytes() == before


def test_force_trains_a_finished_run_again_from_scratch(full_run, tmp_path, monkeypatch):
    root = copy_root(full_run.root, tmp_path)
    use_root(monkeypatch, root)
    checkpoint = root / "checkpoints" / full_run.cfg.run_id / "last.pt"
    calls = []

    class Trained(Exception):
        pass

    def fake_fit(*args, **kwargs):
        calls.append(checkpoint.exists())
        raise Trained

    monkeypatch.setattr(experiment, "fit", fake_fit)
    with pytest.raises(Trained):
        run_experiment(full_run.cfg, NOTEBOOK, force=True, progress=False, allow_cpu=True)
    assert calls == [False]  # fit was called, and the old checkpoint was gone: a fresh start


def test_checkpoint_of_another_config_is_refused(full_run, tmp_path, monkeypatch):
    root = copy_root(full_run.root, tmp_path)
    use_root(monkeypatch, root)
    other = full_run.cfg.replace(grad_clip=0.5)
    assert other.run_id == full_run.cfg.run_id  # same run id, same checkpoint folder
    checkpoint = root / "checkpoints" / other.run_id / "last.pt"
    csv = root / "results" / f"{NOTEBOOK}.csv"
    before = checkpoint.read_bytes(), csv.read_bytes()
    with pytest.raises(CheckpointMismatch) as err:
        run_experiment(other, NOTEBOOK, progress=False, allow_cpu=True)
    message = str(err.value)
    assert "(grad_clip 1.0 -> 0.5)" in message  # the differing field, and only it
    assert str(checkpoint) in message and "force=True" in message
    assert (checkpoint.read_bytes(), csv.read_bytes()) == before  # nothing damaged


def test_full_profile_without_gpu_raises_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    use_root(monkeypatch, tmp_path, allow_cpu=False)
    with pytest.raises(NoGPU) as err:
        run_experiment(micro("full"), NOTEBOOK, progress=False)
    assert "GPU" in str(err.value) and "ALLOW_CPU" in str(err.value) and "smoke" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert pick_device("smoke").type == "cpu"  # the smoke profile runs anywhere
    assert pick_device("full", allow_cpu=True).type == "cpu"


# ----------------------------------------------------------------------------- smoke run, validation, resume

def test_smoke_run_writes_only_under_smoke(smoke_run):
    root, run_id = smoke_run.root, smoke_run.cfg.run_id
    assert [p.name for p in root.iterdir()] == ["smoke"]
    smoke = root / "smoke"
    assert (smoke / "results" / f"{NOTEBOOK}.csv").exists()
    assert (smoke / "results" / "history" / f"{run_id}.csv").exists()
    assert (smoke / "figures" / f"{run_id}.png").exists()
    assert (smoke / "checkpoints" / run_id / "last.pt").exists()
    assert (smoke / "checkpoints" / run_id / "best.pt").exists()
    assert not (root / "results").exists() and not (root / "figures").exists()


def test_best_validation_epoch_weights_give_test_acc_best(smoke_run):
    cfg, row, history = smoke_run.cfg, smoke_run.result.row, smoke_run.result.history
    assert history["val_acc"].notna().all()
    # the best epoch: highest validation accuracy, then lowest validation loss, then the earliest
    keys = list(zip(history["val_acc"], -history["val_loss"]))
    best = keys.index(max(keys)) + 1
    assert row["best_epoch"] == best
    assert history["val_acc"].iloc[best - 1] == history["val_acc"].max()
    assert row["val_acc_best"] == history["val_acc"].iloc[best - 1]
    checkpoints = smoke_run.root / "smoke" / "checkpoints" / cfg.run_id
    best_ckpt = torch.load(checkpoints / "best.pt", weights_only=False)
    assert best_ckpt["epoch"] == best
    loss, acc = evaluate_weights(cfg, best_ckpt["model"])
    assert (acc, loss) == (row["test_acc_best"], pytest.approx(row["test_loss_best"], rel=1e-6))
    last = torch.load(checkpoints / "last.pt", weights_only=False)
    loss, acc = evaluate_weights(cfg, last["model"])
    assert (acc, loss) == (row["test_acc_final"], pytest.approx(row["test_loss_final"], rel=1e-6))


def test_interrupted_run_resumes_to_exactly_the_uninterrupted_result(smoke_run, tmp_path, monkeypatch):
    use_root(monkeypatch, tmp_path, allow_cpu=False)
    record = capture_last_checkpoints(monkeypatch)
    record.interrupt_after = 1
    with pytest.raises(KeyboardInterrupt):
        run_experiment(smoke_run.cfg, NOTEBOOK, progress=False, allow_cpu=True)
    checkpoints = tmp_path / "smoke" / "checkpoints" / smoke_run.cfg.run_id
    assert torch.load(checkpoints / "last.pt", weights_only=False)["epoch"] == 1
    assert not (tmp_path / "smoke" / "results" / f"{NOTEBOOK}.csv").exists()

    record.interrupt_after, record.last_saves = None, 0
    resumed = run_experiment(smoke_run.cfg, NOTEBOOK, progress=False, allow_cpu=True)
    assert record.last_saves == 2  # epochs 2 and 3 only: it resumed rather than starting over
    assert not resumed.loaded
    for key in METRICS:
        assert resumed.row[key] == smoke_run.result.row[key], key
    # exactly equal, NaN for NaN (the noisy-label columns of a clean run)
    pd.testing.assert_frame_equal(resumed.history[HISTORY_VALUES], smoke_run.result.history[HISTORY_VALUES],
                                  check_exact=True)
    reference = smoke_run.root / "smoke" / "checkpoints" / smoke_run.cfg.run_id
    for name in ("last.pt", "best.pt"):
        assert same_weights(torch.load(checkpoints / name, weights_only=False)["model"],
                            torch.load(reference / name, weights_only=False)["model"]), name


def test_finished_checkpoint_without_results_is_not_trained_again(smoke_run, tmp_path, monkeypatch):
    root = copy_root(smoke_run.root, tmp_path)
    use_root(monkeypatch, root, allow_cpu=False)
    shutil.rmtree(root / "smoke" / "results")  # e.g. a crash between the last epoch and the CSV
    record = capture_last_checkpoints(monkeypatch)
    again = run_experiment(smoke_run.cfg, NOTEBOOK, progress=False, allow_cpu=True)
    assert record.last_saves == 0
    for key in METRICS:
        assert again.row[key] == smoke_run.result.row[key], key
    assert (root / "smoke" / "results" / f"{NOTEBOOK}.csv").exists()


@pytest.mark.parametrize("script,best", [
    # (val_loss, val_acc) per epoch; epoch 4 ties epoch 2 exactly: the earlier epoch is kept
    ([(1.0, 0.3), (0.9, 0.6), (0.8, 0.5), (0.9, 0.6), (1.1, 0.4)], 2),
    # same accuracy with a lower loss later: the later epoch is better
    ([(1.0, 0.3), (0.9, 0.6), (0.8, 0.5), (0.7, 0.6), (1.1, 0.4)], 4),
])
def test_best_state_is_the_best_validation_epochs_weights(script, best, tmp_path, monkeypatch):
    use_root(monkeypatch, tmp_path)
    scripted = iter(script)
    monkeypatch.setattr(train, "evaluate", lambda *args, **kwargs: next(scripted))  # validation only
    record = capture_last_checkpoints(monkeypatch)
    outcomes = []

    def keep_outcome(*args, **kwargs):
        outcomes.append(train.fit(*args, **kwargs))
        return outcomes[-1]

    monkeypatch.setattr(experiment, "fit", keep_outcome)
    cfg = tiny_config()
    result = run_experiment(cfg, NOTEBOOK, progress=False, allow_cpu=True)
    assert result.history["val_acc"].tolist() == [acc for _, acc in script]
    assert outcomes[0].best_epoch == best and result.row["best_epoch"] == best
    assert result.row["val_acc_best"] == script[best - 1][1]
    assert same_weights(outcomes[0].best_state, record.weights[best])
    assert not same_weights(record.weights[best], record.weights[5])  # training did move the weights
    assert (result.row["test_loss_best"], result.row["test_acc_best"]) == evaluate_weights(cfg, record.weights[best])
    assert (result.row["test_loss_final"], result.row["test_acc_final"]) == evaluate_weights(cfg, record.weights[5])


# ----------------------------------------------------------------------------- divergence

class NaNAfter(nn.Module):
    """tiny_cnn whose training forward returns NaN from its `limit`-th call on."""

    def __init__(self, limit):
        super().__init__()
        self.net, self.calls, self.limit = build_model("tiny_cnn"), 0, limit

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.limit:
                out = out * float("nan")
        return out


def test_nan_forward_stops_with_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    cfg = tiny_config(val_size=0, epochs=3, grad_clip=0.0)
    images = load_split(cfg)
    loader = DeviceLoader(images.train_x, images.train_y, 16, cfg.mean, cfg.std)  # 4 steps an epoch
    torch.manual_seed(0)
    model = NaNAfter(limit=7)  # the 7th step: epoch 2, step 3
    with pytest.raises(TrainingDiverged) as err:
        fit(model, Loaders(loader), cfg, tmp_path, progress=False)
    message = str(err.value)
    assert "epoch 2" in message and "step 3" in message
    assert "epoch 1" in message and str(tmp_path) in message  # says which checkpoint survives
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1


def test_absurd_learning_rate_diverges_in_the_first_epoch(tmp_path, monkeypatch):
    use_root(monkeypatch, tmp_path)
    cfg = micro("smoke", optimizer="sgd", lr=1e30, grad_clip=0.0, schedule={"name": "constant"})
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+") as err:
        run_experiment(cfg, NOTEBOOK, progress=False, allow_cpu=True)
    assert "learning rate" in str(err.value)
    assert not (tmp_path / "smoke" / "results").exists()  # no result recorded for a diverged run


# ----------------------------------------------------------------------------- RunConfig

@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("label_smoothing", 1.5), ("label_smoothing", -0.1), ("batch_size", 0), ("lr", 0.0),
    ("optimizer", "rmsprop"), ("precision", "fp8"), ("channels_last", "maybe"),
])
def test_run_config_rejects_impossible_settings(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})
    with pytest.raises(ValueError, match=field):
        recipes.level_e("basic", profile="smoke").replace(**{field: value})


def test_run_config_names_every_problem_at_once():
    with pytest.raises(ValueError) as err:
        tiny_config(epochs=0, label_smoothing=1.5)
    assert "epochs=0" in str(err.value) and "label_smoothing=1.5" in str(err.value)


def test_run_id_and_fingerprint():
    cfg = recipes.level_e("basic", profile="smoke", seed=3)
    assert cfg.run_id == "e_basic-vgg_basic-synthetic-as-cifar10-s3-smoke"
    assert recipes.level_e("basic", profile="full").run_id == "e_basic-vgg_basic-cifar10-s0-full"
    with pytest.raises(DataUnavailable, match="No image folder at /data/imagenette2-160"):
        cfg.replace(source="imagefolder:/data/imagenette2-160/")
    assert cfg.fingerprint() == recipes.level_e("basic", profile="smoke", seed=3).fingerprint()
    assert cfg.fingerprint() != cfg.replace(lr=2e-3).fingerprint()
    assert config_differences(cfg.to_dict(), cfg.replace(epochs=5).to_dict()) == "epochs 2 -> 5"


def test_level_e_smoke_and_full_recipes_follow_the_report():
    full = recipes.level_e("basic", profile="full")
    assert (full.source, full.epochs, full.batch_size, full.val_size) == ("cifar10", 30, 100, 0)
    assert (full.optimizer, full.weight_decay, full.grad_clip) == ("adam", 1e-3, 1.0)
    assert full.mean == full.std == (0.5, 0.5, 0.5)
    trace = lr_trace(full.schedule, 500, full.epochs, full.lr)
    assert trace.index(max(trace)) == 3900
    smoke = recipes.level_e("basic", profile="smoke")
    assert (smoke.source, smoke.epochs, smoke.profile) == ("synthetic", 2, "smoke")
    with pytest.raises(ValueError, match="variant"):
        recipes.level_e("giant")
