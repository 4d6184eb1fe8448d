"""run_experiment(): data -> model -> fit -> test -> results row, history CSV and curves PNG."""

import contextlib
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
import torch

from . import data, distributed, paths, results
from .augment import build_augment
from .config import RunConfig
from .loader import DeviceLoader
from .models import build_model, count_parameters
from .train import autocast_dtype, evaluate, fit, precision_name, use_channels_last

ALLOW_CPU_ENV = "REPRO_ALLOW_CPU"
COMPILE_ENV = "REPRO_COMPILE"  # 1: train through torch.compile (python -m common.reproduce --compile)
SYNC_BN_ENV = "REPRO_SYNC_BN"  # 1: synchronise BatchNorm over the processes of a data-parallel run (--sync-bn)


class NoGPU(RuntimeError):
    """A full-profile run was started without a GPU."""


@dataclass
class RunResult:
    """A finished run: its results row, its per-epoch history, and whether it was loaded from disk."""
    row: dict
    history: pd.DataFrame
    loaded: bool

    def __repr__(self):
        r = self.row
        return (f"RunResult({r['run_id']}: test acc {r['test_acc_best']:.4f} (best val, epoch {r['best_epoch']}), "
                f"{r['test_acc_final']:.4f} (final), {r['wall_seconds']:.0f}s on {r['device']}"
                f"{', loaded' if self.loaded else ''})")


def pick_device(profile: str) -> torch.device:
    """CUDA when present (this process's GPU under torchrun); the full profile refuses the CPU unless
    $REPRO_ALLOW_CPU is set."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if profile == "full" and not os.environ.get(ALLOW_CPU_ENV):
        raise NoGPU("The full profile needs a GPU and none was found: run on a GPU machine or in Colab "
                    "(Runtime > Change runtime type > GPU), use the smoke profile (PROFILE='smoke'), or set "
                    f"{ALLOW_CPU_ENV}=1 to train on the CPU anyway (hours per run).")
    return torch.device("cpu")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=os.path.dirname(__file__),
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_split(cfg: RunConfig) -> data.Split:
    """The run's images, split into train / validation / test as its config says."""
    images = data.load_images(cfg.source, num_classes=cfg.num_classes, image_size=cfg.image_size,
                              synthetic_sizes=cfg.synthetic_sizes, seed=cfg.seed, folder=cfg.source_path)
    if images.num_classes != cfg.num_classes:
        raise ValueError(f"{cfg.source} has {images.num_classes} classes but the run expects {cfg.num_classes}: "
                         "set num_classes to match the data set.")
    split = data.split(images, cfg.val_size, cfg.seed)
    if cfg.label_noise:  # training labels only; validation and test stay clean, so selection uses clean labels
        from .noise import add_label_noise
        noisy, _ = add_label_noise(split.train_y, cfg.label_noise.get("rate", 0), cfg.label_noise.get("kind", "symmetric"),
                                   num_classes=cfg.num_classes, seed=cfg.seed)
        split.train_y = torch.stack([noisy, split.train_y], 1)  # columns: the label trained on, the true one
    return split


def noise_changed(split: data.Split) -> float:
    """The fraction of training labels that label noise actually changed (NaN without noise)."""
    return (split.train_y[:, 0] != split.train_y[:, 1]).float().mean().item() if split.train_y.dim() == 2 else math.nan


def make_loaders(cfg: RunConfig, split: data.Split, device: torch.device):
    """Device-resident train (augmented, shuffled), validation and test loaders."""
    channels_last = use_channels_last(cfg, device)
    common = dict(mean=cfg.mean, std=cfg.std, device=device, channels_last=channels_last, seed=cfg.seed)
    # under torchrun each process trains on its share of every batch; all of them validate and test on everything
    train = DeviceLoader(split.train_x, split.train_y, cfg.batch_size, augment=build_augment(cfg.augment),
                         shuffle=True, rank=distributed.rank(), world_size=distributed.world_size(), **common)
    val = DeviceLoader(split.val_x, split.val_y, cfg.eval_batch_size, shuffle=False, **common)
    test = DeviceLoader(split.test_x, split.test_y, cfg.eval_batch_size, shuffle=False, **common)
    return train, val, test


def _history_csv(cfg: RunConfig):
    return paths.results_dir(cfg.profile) / "history" / f"{cfg.run_id}.csv"


def recorded_result(cfg: RunConfig, notebook: str):
    """The recorded result of this exact run (same id and config) in a notebook's results, or None."""
    row = results.find_result(paths.results_dir(cfg.profile) / f"{notebook}.csv", cfg.run_id, cfg.fingerprint())
    if row is None or not _history_csv(cfg).exists():
        return None
    return RunResult(row, results.read_history(_history_csv(cfg)), loaded=True)


def load_trained(cfg: RunConfig, device="cpu", which: str = "best") -> torch.nn.Module:
    """A run's network with its best-validation (or last) weights, from its checkpoint folder."""
    from .train import load_checkpoint

    folder = paths.checkpoints_dir(cfg.profile) / cfg.run_id
    names = ("best.pt", "last.pt") if which == "best" else ("last.pt",)
    path = next((folder / name for name in names if (folder / name).exists()), None)
    if path is None:
        raise FileNotFoundError(f"No checkpoint of {cfg.run_id} in {folder}: run it first (run_experiment).")
    model = build_for(cfg)
    model.load_state_dict(load_checkpoint(path, device)["model"])
    return model.to(device).eval()


def train_throughput(history: list, train_images: int) -> float:
    """Training images per second over the run's epochs (augmentation and steps; evaluation excluded)."""
    seconds = sum(row.get("train_seconds") or 0.0 for row in history)
    return train_images * len(history) / seconds if seconds else float("nan")


def build_for(cfg: RunConfig) -> torch.nn.Module:
    """The run's network from the model registry (two of them, differently initialised, for Co-teaching)."""
    if cfg.coteaching:
        from .coteaching import CoTeachingPair
        return CoTeachingPair(*(build_model(cfg.model, cfg.num_classes, **cfg.model_options) for _ in range(2)))
    return build_model(cfg.model, cfg.num_classes, **cfg.model_options)


def speed_options() -> dict:
    """fit()'s torch.compile and synchronised-BatchNorm switches, from the environment (reproduce sets them)."""
    return {"compile": os.environ.get(COMPILE_ENV) == "1", "sync_bn": os.environ.get(SYNC_BN_ENV) == "1"}


def run_experiment(cfg: RunConfig, notebook: str, force: bool = False, progress: bool = True,
                   build=build_for) -> RunResult:
    """Train and test one run, or load its recorded result if it already finished (unless `force`).

    `build(cfg)` makes the network (default: the registry's); a contrastive run is not tested (no classes).
    With $REPRO_PARALLEL=ddp and several GPUs, the training is launched under torchrun (common.launch);
    in a process that torchrun started, every process trains and only the main one writes.
    """
    from . import launch

    if build is build_for and launch.wants_torchrun(cfg, notebook, force):
        launch.torchrun_runs([cfg], notebook, force)
        force = False  # trained and recorded by the launched processes: load it
    if not force:
        recorded = recorded_result(cfg, notebook)
        if recorded is not None:
            if distributed.is_main():
                print(f"{cfg.run_id}: finished on {recorded.row['finished_at']}, loading its recorded result "
                      "(force=True trains it again).")
            return recorded
    device = pick_device(cfg.profile)  # before anything is written: no GPU, nothing on disk
    with _training_lock(cfg):
        return _train_and_record(cfg, notebook, device, force, progress, build)


class RunBusy(RuntimeError):
    """Another process is training this very run."""


@contextlib.contextmanager
def _training_lock(cfg: RunConfig):
    """While the main process trains a run, no other process may train it too (a second notebook, a
    leftover worker): two writers would each undo the other's checkpoints."""
    with contextlib.ExitStack() as held:
        if distributed.is_main():
            try:
                held.enter_context(results.locked(paths.checkpoints_dir(cfg.profile) / cfg.run_id, wait=False))
            except results.Busy:
                raise RunBusy(f"{cfg.run_id} is being trained by another process right now: let it finish, then "
                              "run this again to load its result (or stop that process; this one then resumes it).") from None
        yield


def _train_and_record(cfg: RunConfig, notebook: str, device: torch.device, force: bool, progress: bool,
                      build) -> RunResult:
    """The training part of run_experiment: data, network, fit, test, then (main process) the records."""
    results_csv = paths.results_dir(cfg.profile) / f"{notebook}.csv"
    history_csv = _history_csv(cfg)
    figure_png = paths.figures_dir(cfg.profile) / f"{cfg.run_id}.png"
    checkpoint_dir = paths.checkpoints_dir(cfg.profile) / cfg.run_id
    with distributed.main_first():  # one process downloads and caches the data; the others then read it
        if force and checkpoint_dir.exists():
            shutil.rmtree(checkpoint_dir)
        split = load_split(cfg)
    train_loader, val_loader, test_loader = make_loaders(cfg, split, device)
    torch.manual_seed(cfg.seed)
    model = build(cfg).to(device)
    if use_channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    outcome = fit(model, train_loader, val_loader, cfg, checkpoint_dir=checkpoint_dir, progress=progress,
                  test_loader=test_loader, **speed_options())

    amp_dtype = autocast_dtype(cfg, device)
    contrastive = cfg.loss != "cross_entropy"
    test_loss_final, test_acc_final = (math.nan, math.nan) if contrastive else evaluate(model, test_loader, amp_dtype)
    test_loss_best, test_acc_best = test_loss_final, test_acc_final
    if outcome.best_epoch != len(outcome.history):  # the best-validation epoch is another one: test its weights
        model.load_state_dict(outcome.best_state)
        test_loss_best, test_acc_best = evaluate(model, test_loader, amp_dtype)
    best_row = outcome.history[outcome.best_epoch - 1]
    row = {
        "run_id": cfg.run_id, "notebook": notebook, "experiment": cfg.experiment, "model": cfg.model,
        "dataset": cfg.dataset, "source": cfg.source, "profile": cfg.profile, "seed": cfg.seed, "epochs": cfg.epochs,
        "shortened": cfg.shortened,
        "best_epoch": outcome.best_epoch, "val_acc_best": best_row["val_acc"],
        "test_acc_best": test_acc_best, "test_loss_best": test_loss_best,
        "test_acc_final": test_acc_final, "test_loss_final": test_loss_final,
        "params": count_parameters(model), "wall_seconds": round(outcome.wall_seconds, 1),
        "train_images_per_s": round(train_throughput(outcome.history, len(train_loader.y)), 1),
        "noise_changed": noise_changed(split),
        "device": _device_name(device), "precision": precision_name(amp_dtype),
        "torch": torch.__version__, "git_commit": git_commit(), "config_hash": cfg.fingerprint(),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if distributed.is_main():  # the other processes of a data-parallel run hold the same numbers
        results.write_history(history_csv, outcome.history)
        fig = results.plot_history(pd.DataFrame(outcome.history), title=cfg.run_id)
        results.save_figure(fig, figure_png)
        plt.close(fig)  # saved, not shown: the notebook draws its own
        results.upsert_result(results_csv, row)
    distributed.barrier()  # no process reads the results before they are written
    return RunResult(row, pd.DataFrame(outcome.history), loaded=False)


def _device_name(device: torch.device) -> str:
    """The device a run trained on, as recorded with its result: the GPU's name (times the processes), or the CPU's threads."""
    if device.type != "cuda":
        name = f"cpu x{torch.get_num_threads()}"
    else:
        name = torch.cuda.get_device_name(device)
    return f"{name} x{distributed.world_size()} processes" if distributed.world_size() > 1 else name


def trace_steps(cfg: RunConfig, min_steps: int = 1) -> pd.DataFrame:
    """Train the first whole epochs of a run that hold at least `min_steps` steps (its full schedule,
    no checkpoint, nothing recorded) and return every step's learning rate and training loss."""
    device = pick_device(cfg.profile)
    train_loader, val_loader, _ = make_loaders(cfg, load_split(cfg), device)
    epochs = -(-min_steps // len(train_loader))
    torch.manual_seed(cfg.seed)
    model = build_for(cfg).to(device)
    if use_channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    outcome = fit(model, train_loader, val_loader, cfg, progress=False, record_steps=True, stop_after=epochs)
    trace = pd.DataFrame(outcome.steps, columns=["epoch", "step", "lr", "loss"])
    trace["step"] = (trace["epoch"] - 1) * len(train_loader) + trace["step"]
    return trace
