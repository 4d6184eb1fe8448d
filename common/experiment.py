"""run_experiment(): data -> network -> fit -> test -> a recorded run (results row, history CSV, curves PNG,
test predictions); run_experiments() for a notebook's named runs, on several GPUs through common.launch."""

import argparse
import contextlib
import math
import os
import shutil
import sys

import matplotlib.pyplot as plt
import pandas as pd
import torch

from . import checkpoints, data, distributed, launch, predictions, results, viz
from .augment import build_augment
from .config import Execution, RunConfig
from .coteaching import CoTeachingPair
from .device import autocast_dtype, pick_device, precision_name, use_channels_last
from .loader import DeviceLoader
from .models import build_model, count_parameters
from .noise import add_label_noise
from .results import RunResult
from .train import Loaders, Trainer, evaluate, fit


class RunBusy(RuntimeError):
    """Another process is training this very run."""


def load_split(cfg: RunConfig) -> data.Split:
    """The run's images, split into train / validation / test as its config says, with its label noise."""
    images = data.load_images(cfg.source, num_classes=cfg.num_classes, image_size=cfg.image_size,
                              synthetic_sizes=cfg.synthetic_sizes, seed=cfg.seed, folder=cfg.source_path)
    if images.num_classes != cfg.num_classes:
        raise ValueError(f"{cfg.source} has {images.num_classes} classes but the run expects {cfg.num_classes}: "
                         "set num_classes to match the data set.")
    split = data.split(images, cfg.val_size, cfg.seed)
    if cfg.label_noise:  # training labels only; validation and test stay clean, so selection uses clean labels
        split.train_clean_y = split.train_y
        split.train_y, _ = add_label_noise(split.train_y, cfg.label_noise.get("rate", 0),
                                           cfg.label_noise.get("kind", "symmetric"), num_classes=cfg.num_classes,
                                           seed=cfg.seed)
    return split


def make_loaders(cfg: RunConfig, split: data.Split, device: torch.device) -> Loaders:
    """Device-resident train (augmented, shuffled), validation and test loaders."""
    shared = dict(mean=cfg.mean, std=cfg.std, device=device, channels_last=use_channels_last(cfg, device),
                  seed=cfg.seed)
    # under torchrun each process trains on its share of every batch; all of them validate and test on everything
    train = DeviceLoader(split.train_x, split.train_y, cfg.batch_size, augment=build_augment(cfg.augment),
                         shuffle=True, rank=distributed.rank(), world_size=distributed.world_size(),
                         clean=split.train_clean_y, **shared)
    val = DeviceLoader(split.val_x, split.val_y, cfg.eval_batch_size, shuffle=False, **shared)
    test = DeviceLoader(split.test_x, split.test_y, cfg.eval_batch_size, shuffle=False, **shared)
    return Loaders(train, val, test)


def build_for(cfg: RunConfig, device="cpu") -> torch.nn.Module:
    """The run's network from the model registry, seeded, on `device` in the run's memory format: two of them for
    Co-teaching, and a classifier's frozen encoder loaded from the pretraining run its config names."""
    torch.manual_seed(cfg.seed)
    if cfg.coteaching:
        model = CoTeachingPair(*(build_model(cfg.model, cfg.num_classes, **cfg.model_options) for _ in range(2)))
    else:
        model = build_model(cfg.model, cfg.num_classes, **cfg.model_options)
    if cfg.encoder:
        model.encoder.load_state_dict(checkpoints.load_encoder(cfg.encoder, cfg.profile))
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if use_channels_last(cfg, torch.device(device)) else model


def load_trained(cfg: RunConfig, device="cpu", which: str = "best", folder=None) -> torch.nn.Module:
    """A run's network with its best-validation (or last) weights, in eval mode (`folder`: its checkpoints' copy)."""
    model = build_for(cfg, device)
    model.load_state_dict(checkpoints.load_weights(cfg, which, device, folder))
    return model.eval()


def training_sample(cfg: RunConfig, n: int = 8) -> tuple:
    """The first `n` training images of a run (float, [0, 1]) and their classes' names, as plots show them."""
    split = load_split(cfg)
    labels = split.train_clean_y if split.train_clean_y is not None else split.train_y
    return split.train_x[:n].float() / 255, [split.classes[int(label)] for label in labels[:n]]


def run_experiment(cfg: RunConfig, notebook: str, force: bool = False, progress: bool = True,
                   execution: Execution = Execution(), allow_cpu: bool = False) -> RunResult:
    """Train and test one run (a contrastive one has no classes to test), or load its recorded result if it already
    finished (unless `force`); with execution.parallel="ddp" and several GPUs, under torchrun (common.launch)."""
    if launch.wants_torchrun(cfg, notebook, force, execution):
        launch.torchrun_runs([cfg], notebook, force, execution, allow_cpu)
        force = False  # trained and recorded by the launched processes: load it
    if not force:
        recorded = results.recorded_result(cfg, notebook)
        if recorded is not None:
            if distributed.is_main():
                print(f"{cfg.run_id}: finished on {recorded.row['finished_at']}, loading its recorded result "
                      "(force=True trains it again).")
            return recorded
    device = pick_device(cfg.profile, allow_cpu)  # before anything is written: no GPU, nothing on disk
    with _training_lock(cfg):
        return _train_and_record(cfg, notebook, device, force, progress, execution)


def needs(cfg: RunConfig) -> str:
    """What training a run that is not recorded needs, for the notebooks' "not run" lines."""
    data = {"cifar100": "CIFAR-100", "imagenette": "ImageNette"}.get(cfg.dataset, "CIFAR-10")
    if cfg.profile != "full":
        return f"not run yet (TRAIN = True trains it on generated images, {cfg.epochs} epochs)"
    return (f"not run: needs {data} and a GPU, or hours of a CPU with ALLOW_CPU = True (TRAIN = True trains it, "
            f"{cfg.epochs} epochs)")


def run_experiments(configs: dict, notebook: str, force: bool = False, progress: bool = True,
                    execution: Execution = Execution(), allow_cpu: bool = False, train: bool = True) -> dict:
    """run_experiment for each named config, spread one per GPU when execution.parallel="spread"; name -> RunResult.
    With train=False only what is recorded, never training or downloading: each missing run says what it needs."""
    if not train:
        found = {}
        for name, cfg in configs.items():
            found[name] = results.recorded_result(cfg, notebook)
            if found[name] is None:
                print(f"{name}: {needs(cfg)}")
        return {name: recorded for name, recorded in found.items() if recorded is not None}
    spread = launch.wants_spread(list(configs.values()), notebook, force, execution)
    if spread:
        launch.spread_runs(spread, notebook, force, execution, allow_cpu)
        force = False  # the workers trained and recorded them: load them
    return {name: run_experiment(cfg, notebook, force=force, progress=progress, execution=execution,
                                 allow_cpu=allow_cpu) for name, cfg in configs.items()}


@contextlib.contextmanager
def _training_lock(cfg: RunConfig):
    """While the main process trains a run, no other process may train it too (a second notebook, a
    leftover worker): two writers would each undo the other's checkpoints."""
    with contextlib.ExitStack() as held:
        if distributed.is_main():
            try:
                held.enter_context(results.locked(checkpoints.run_folder(cfg), wait=False))
            except results.Busy:
                raise RunBusy(f"{cfg.run_id} is being trained by another process right now: let it finish, then "
                              "run this again to load its result (or stop that process: this resumes it).") from None
        yield


def _train_and_record(cfg: RunConfig, notebook: str, device: torch.device, force: bool, progress: bool,
                      execution: Execution) -> RunResult:
    """The training part of run_experiment: data, network, fit, test, then (main process) the records."""
    commit = results.git_commit()  # the code the run starts with
    folder = checkpoints.run_folder(cfg)
    with distributed.main_first():  # one process downloads and caches the data; the others then read it
        if force and folder.exists():
            shutil.rmtree(folder)
        split = load_split(cfg)
    loaders = make_loaders(cfg, split, device)
    model = build_for(cfg, device)
    outcome = fit(model, loaders, cfg, folder, progress=progress, execution=execution)

    amp_dtype = autocast_dtype(cfg, device)
    contrastive = cfg.loss != "cross_entropy"
    final = best = (math.nan, math.nan, None, None)  # test loss, accuracy, predicted classes and probabilities
    if not contrastive:
        final = best = evaluate(model, loaders.test, amp_dtype, keep_predictions=True)
        if outcome.best_epoch != len(outcome.history):  # the best-validation epoch is another one: test its weights
            model.load_state_dict(outcome.best_state)
            best = evaluate(model, loaders.test, amp_dtype, keep_predictions=True)
    seconds = sum(epoch.get("train_seconds") or 0.0 for epoch in outcome.history)  # augmentation and steps only
    throughput = len(loaders.train.y) * len(outcome.history) / seconds if seconds else float("nan")
    noisy = split.train_clean_y is not None  # the fraction of its labels the noise actually changed, or NaN
    row = results.make_row(
        cfg, notebook, device, precision_name(amp_dtype), commit,
        best_epoch=outcome.best_epoch, val_acc_best=outcome.history[outcome.best_epoch - 1]["val_acc"],
        test_acc_best=best[1], test_loss_best=best[0], test_acc_final=final[1], test_loss_final=final[0],
        params=count_parameters(model), wall_seconds=round(outcome.wall_seconds, 1),
        train_images_per_s=round(throughput, 1),
        noise_changed=(split.train_y != split.train_clean_y).float().mean().item() if noisy else math.nan)
    if distributed.is_main():  # the other processes of a data-parallel run hold the same numbers
        results.write_history(results.history_csv(cfg), outcome.history)
        fig = viz.plot_history(pd.DataFrame(outcome.history), title=cfg.run_id)
        results.save_figure(fig, results.figure_png(cfg))
        plt.close(fig)  # saved, not shown: the notebook draws its own
        if not contrastive:  # before the row, which marks the run finished
            predictions.write_predictions(predictions.predictions_path(cfg), split.test_y, best[2:], final[2:],
                                          split.classes)
        results.upsert_result(results.results_csv(cfg, notebook), row)
    distributed.barrier()  # no process reads the results before they are written
    return RunResult(row, pd.DataFrame(outcome.history), loaded=False)


def trace_steps(cfg: RunConfig, min_steps: int = 1, allow_cpu: bool = False) -> pd.DataFrame:
    """Train the first whole epochs of a run that hold at least `min_steps` steps, as fit does (its full
    schedule; no checkpoint, nothing recorded), and return every step's learning rate and training loss."""
    device = pick_device(cfg.profile, allow_cpu)
    loader = make_loaders(cfg, load_split(cfg), device).train
    trainer = Trainer(build_for(cfg, device), cfg, len(loader), autocast_dtype(cfg, device), Execution())
    steps = []
    for epoch in range(1, -(-min_steps // len(loader)) + 1):
        trainer.begin_epoch(loader, epoch)
        for images, labels, *clean in loader:
            lr = trainer.lr()  # the rate this step uses, before a batch schedule moves it
            _, loss = trainer.step(images, labels, clean[0] if clean else None, epoch)
            steps.append((epoch, len(steps) + 1, lr, loss))
        trainer.end_epoch()
    return pd.DataFrame([(epoch, step, lr, loss.item()) for epoch, step, lr, loss in steps],
                        columns=["epoch", "step", "lr", "loss"])


def worker(argv=None) -> None:
    """python -m common.experiment worker JOB [--gpu K]: train a launch's runs (under torchrun, or one GPU's share)."""
    parser = argparse.ArgumentParser(prog="python -m common.experiment worker")
    parser.add_argument("job")
    parser.add_argument("--gpu", type=int, help="spread: this worker's GPU; it claims runs one at a time")
    args = parser.parse_args(argv)
    if args.gpu is not None and torch.cuda.is_available():
        os.environ["LOCAL_RANK"] = str(args.gpu % torch.cuda.device_count())  # setup() binds to it
    distributed.setup()
    job = launch.read_job(args.job)
    # a worker trains in its own process(es), never launches again
    execution = Execution(compile=job["execution"].compile, sync_bn=job["execution"].sync_bn)
    for index, cfg in enumerate(job["configs"]):
        if args.gpu is None or launch.claim(args.job, index):
            try:
                run_experiment(cfg, job["notebook"], force=job["force"], progress=False, execution=execution,
                               allow_cpu=job["allow_cpu"])
            except Exception as err:
                print(f"{launch.FAILED_MARK} {cfg.run_id}: {type(err).__name__}: {err}", flush=True)
                raise
            if distributed.is_main():
                print(f"{cfg.run_id}: done", flush=True)
    distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("usage: python -m common.experiment worker JOB [--gpu K] (started by run_experiment(s), not by hand)")
    worker(sys.argv[2:])
