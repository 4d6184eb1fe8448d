"""fit() and evaluate(): the training loop with checkpoints, resume, mixed precision and a NaN guard; what a step
computes is a plain function per loss (cross-entropy, SupCon, Co-teaching), which Trainer.step runs."""

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from . import checkpoints, distributed
from .config import Execution, RunConfig
from .coteaching import coteaching_step, forget_rate
from .device import autocast_dtype, check_flush_denormal
from .predictions import predicted
from .progress import progress_bar
from .schedules import build_schedule
from .seeds import derive_seed
from .supcon import supcon_loss

CHECK_EVERY = 50  # steps between NaN checks; a check reads a copy made at the previous one, so it never waits
GPU_CHECKPOINT_SHARE = 0.02  # a GPU epoch takes seconds: checkpointing each one would cost several per cent


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Loaders(NamedTuple):
    """A run's training, validation and test loaders (validation and test may be None)."""
    train: object
    val: object = None
    test: object = None


@dataclass
class FitResult:
    """What fit() returns: per-epoch history, the best-validation epoch and its weights."""
    history: list
    best_epoch: int
    best_state: dict
    wall_seconds: float


def build_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # a frozen encoder is not optimised
    # on a GPU, one fused kernel updates every parameter instead of several launches per tensor
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    if cfg.optimizer == "adam":  # coupled L2, as the report's code used it
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fused)


def _autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, loader, amp_dtype=None, keep_predictions: bool = False):
    """Plain cross-entropy (never smoothed) and accuracy of `model` over `loader` in eval mode; with keep_predictions
    also each image's most probable class and its softmax probability (CPU tensors, in the loader's order)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count, kept = 0, []
    for images, labels, *_ in loader:
        with _autocast(device, amp_dtype):
            logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits.float(), labels) * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        count += len(labels)
        if keep_predictions:
            kept.append(predicted(logits))
    model.train(was_training)
    loss, acc = (float("nan"), float("nan")) if count == 0 else (loss_sum.item() / count, correct.item() / count)
    if not keep_predictions:
        return loss, acc
    classes, probs = (torch.cat(part).cpu() for part in zip(*kept)) if kept else (torch.empty(0), torch.empty(0))
    return loss, acc, classes, probs


def fit(model: nn.Module, loaders: Loaders, cfg: RunConfig, checkpoint_dir=None, *, progress: bool = True,
        execution: Execution = None) -> FitResult:
    """Train `model` as `cfg` says, checkpointing in `checkpoint_dir` and resuming from it; `execution` sets
    torch.compile, synchronised BatchNorm under torchrun, and how much of the run's time checkpoints may take."""
    device = next(model.parameters()).device
    execution = execution or Execution()
    _prepare(device, loaders.train)
    amp_dtype = autocast_dtype(cfg, device)
    trainer = Trainer(model, cfg, len(loaders.train), amp_dtype, execution)
    main = distributed.is_main()
    # validation scores classes; a contrastive pretraining run has none, so its final epoch is kept
    selects = loaders.val is not None and len(loaders.val.y) > 0 and cfg.loss == "cross_entropy"
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)

    # 1. resume: the newest readable checkpoint of this very config, and the best epoch's weights
    run = _resume(trainer, cfg, folder, selects, device)
    share = execution.checkpoint_share  # None: every epoch on a CPU (exact resume)
    if share is None and device.type == "cuda":
        share = GPU_CHECKPOINT_SHARE
    cadence = checkpoints.Cadence(share)
    steps = len(loaders.train)
    bar = progress_bar(total=cfg.epochs * steps, initial=run.epoch * steps, desc=cfg.run_id,
                       disable=not (progress and main))
    for epoch in range(run.epoch + 1, cfg.epochs + 1):
        started = time.perf_counter()
        # 2. one epoch of training
        row = trainer.train_epoch(loaders.train, epoch, bar, folder)
        # 3. evaluation, on validation (to choose the best epoch) and, for the curves only, on test
        row["val_loss"], row["val_acc"] = evaluate(model, loaders.val, amp_dtype) if selects else (math.nan, math.nan)
        row["test_loss"], row["test_acc"] = (evaluate(model, loaders.test, amp_dtype)
                                             if cfg.monitor_test and loaders.test is not None else (math.nan, math.nan))
        row["seconds"] = time.perf_counter() - started
        run.wall += row["seconds"]
        run.history.append(row)
        # 4. the best epoch (without validation: the last one) and the checkpoints
        improved = selects and (row["val_acc"], -row["val_loss"]) > (run.best["val_acc"], -run.best["val_loss"])
        if improved or not selects:
            run.best = {"epoch": epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
        if improved:
            run.best_state = _copy(model.state_dict())
        row["checkpoint_seconds"] = math.nan if folder is None or not main else 0.0
        if folder is not None and main and cadence.due(final=epoch == cfg.epochs):
            saving = time.perf_counter()
            # best.pt is written only with the last.pt that names its epoch, so the two always agree on disk
            new_best = selects and run.best_state is not None and run.best["epoch"] != run.best_on_disk
            checkpoints.save_epoch(folder, {**trainer.state(), "config": cfg.to_dict(),
                                            "config_hash": cfg.fingerprint(), "epoch": epoch,
                                            "history": run.history, "best": run.best, "wall_seconds": run.wall},
                                   {"model": run.best_state, "epoch": run.best["epoch"]} if new_best else None)
            run.best_on_disk = run.best["epoch"]
            # what checkpointing costs, beside the epoch's seconds (the epoch's own row in last.pt predates it)
            row["checkpoint_seconds"] = time.perf_counter() - saving
            cadence.written(row["checkpoint_seconds"])
        bar.set_postfix_str(_epoch_line(row), refresh=False)
        if progress and main:
            bar.write(f"epoch {epoch}/{cfg.epochs} " + _epoch_line(row))
    bar.close()
    if folder is not None and main and len(run.history) == cfg.epochs:
        checkpoints.finish(folder)
    if not selects or run.best_state is None:
        run.best_state = _copy(model.state_dict())
        run.best["epoch"] = run.best["epoch"] or len(run.history)
    return FitResult(run.history, run.best["epoch"], run.best_state, run.wall)


def _prepare(device: torch.device, train_loader) -> None:
    """Device settings for training, and a loader sharded for as many processes as train."""
    if device.type == "cpu":
        check_flush_denormal()
    else:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    if getattr(train_loader, "world_size", 1) != distributed.world_size():
        raise ValueError(f"The training loader is shared by {getattr(train_loader, 'world_size', 1)} process(es) but "
                         f"{distributed.world_size()} train: make it with DeviceLoader(..., rank=distributed.rank(), "
                         "world_size=distributed.world_size()) so that each trains on its own share of every batch.")


def _copy(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


@dataclass
class _RunState:
    """Where a run stands: epochs done, their history, wall time and the best epoch so far."""
    epoch: int = 0
    history: list = field(default_factory=list)
    wall: float = 0.0
    best: dict = field(default_factory=lambda: {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf})
    best_state: dict = None
    best_on_disk: int = 0  # the epoch whose weights best.pt holds


def _resume(trainer, cfg: RunConfig, folder, selects: bool, device) -> _RunState:
    """The run as its newest readable checkpoint left it (restored into `trainer`), or a fresh start."""
    if folder is None:
        return _RunState()
    folder.mkdir(parents=True, exist_ok=True)
    with distributed.main_first():  # the main process sets an unreadable file aside before the others look
        if distributed.is_main():
            checkpoints.remove_stale_temp_files(folder)
        state, path = checkpoints.first_readable(folder, ("last.pt", "prev.pt"), device)
        # a foreign file (a copy of best.pt) has no "best": check_config below names it
        best_epoch = state.get("best", {}).get("epoch") if state else None
        saved = (checkpoints.first_readable(folder, ("best.pt", "best-prev.pt"), device, best_epoch)[0]
                 if selects and best_epoch else None)
    if state is None:
        return _RunState()
    trainer.restore(checkpoints.check_config(state, cfg, path))
    run = _RunState(state["epoch"], state["history"], state["wall_seconds"], state["best"])
    if selects and run.best["epoch"]:
        if saved is not None:
            run.best_state, run.best_on_disk = saved["model"], run.best["epoch"]
        elif run.best["epoch"] == run.epoch:  # the best epoch is the one resumed: its weights are the checkpoint's
            run.best_state = _copy(state["model"])
        else:  # choosing another epoch would change the run's recorded result without a word
            raise checkpoints.CheckpointUnreadable(
                f"The best-validation weights of {cfg.run_id} (epoch {run.best['epoch']}) are lost (neither best.pt "
                f"nor best-prev.pt in {folder} holds them readably): train the run again with force=True (or delete "
                f"{folder}); resuming would record another epoch as its best.")
    return run


def cross_entropy_step(net, images, labels, clean, label_smoothing: float):
    """Cross-entropy with the run's label smoothing: the loss to optimise, the epoch's counts, the loss to record."""
    logits = net(images)
    loss = nn.functional.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    return loss, _counts(logits, labels, clean), loss.detach()


def supcon_step(net, images, labels, temperature: float, include_self: bool, shares=None):
    """The supervised contrastive loss on the projections of every view, stacked view by view; under DDP
    (`shares`: every process's share of the batch) over the whole batch, as one process would contrast it."""
    features = net(images).float()
    if shares is not None:
        features, labels = distributed.gather_batch(features, labels, shares)
    loss = supcon_loss(features, labels, temperature, include_self=include_self)
    return loss, {}, loss.detach()


def coteaching_pair_step(pair, images, labels, clean, rate: float, label_smoothing: float):
    """Both networks of a Co-teaching pair, each on the small-loss samples the other keeps (common.coteaching),
    with how many of each network's picks carry their true label. The step takes the pair itself, never the
    compiled or data-parallel wrapper: Co-teaching trains eagerly, and `compile` changes nothing for it."""
    step = coteaching_step(pair, images, labels, rate, label_smoothing)
    counts = _counts(step.logits, labels, clean)
    counts["kept"] = torch.full((), len(step.picks1), device=images.device)
    if clean is not None:
        counts["kept_clean_1"] = (labels[step.picks1] == clean[step.picks1]).sum()
        counts["kept_clean_2"] = (labels[step.picks2] == clean[step.picks2]).sum()
    # the sum trains both networks (they share no weights); the record is one network's loss, as elsewhere
    return step.loss, counts, step.per_network_loss


def _counts(logits, labels, clean) -> dict:
    """Device counts summed over the epoch: right predictions, and with noisy labels those right by the true label."""
    predicted = logits.argmax(1)
    counts = {"correct": (predicted == labels).sum()}
    if clean is not None:
        counts["correct_clean"] = (predicted == clean).sum()
    return counts


class Trainer:
    """The model with its optimiser, schedule and grad scaler: one training step, or one epoch of them, at a time."""

    def __init__(self, model: nn.Module, cfg: RunConfig, steps_per_epoch: int, amp_dtype, execution: Execution):
        self.model, self.cfg, self.amp_dtype = model, cfg, amp_dtype
        self.device = next(model.parameters()).device
        if distributed.active() and cfg.coteaching:
            raise ValueError(f"{cfg.run_id} cannot be split over processes: Co-teaching ranks the whole batch, "
                             "which each process would see only a share of; train it on one GPU.")
        # what the steps call: DDP averages gradients over the processes; the checkpoints keep self.model's keys
        self.net = distributed.wrap(model, execution.sync_bn)
        self.compile_timer = _CompileTimer(self.device, execution.compile)  # kept across epochs
        if execution.compile:  # static shapes: the uneven last batch gets a graph of its own, not a dynamic one
            self.net = torch.compile(self.net, dynamic=False)
        self.optimizer = build_optimizer(model, cfg)
        self.schedule = build_schedule(self.optimizer, cfg.schedule, steps_per_epoch, cfg.epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)
        self.contrastive = cfg.loss != "cross_entropy"

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def restore(self, state: dict) -> None:
        """Load a checkpoint's model, optimiser, schedule and scaler (a checkpoint made without a scaler has none)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])

    def loss(self, images, labels, clean, epoch: int, shares=None):
        """The run's step function (cross-entropy, SupCon or Co-teaching) on a batch, and what it returns."""
        cfg = self.cfg
        if cfg.coteaching:
            rate = forget_rate(epoch, cfg.coteaching["forget_rate"], cfg.coteaching.get("ramp_epochs", 0))
            return coteaching_pair_step(self.model, images, labels, clean, rate, cfg.label_smoothing)
        if self.contrastive:
            return supcon_step(self.net, images, labels, cfg.temperature, cfg.loss == "supcon_with_self", shares)
        return cross_entropy_step(self.net, images, labels, clean, cfg.label_smoothing)

    def begin_epoch(self, loader, epoch: int) -> None:
        """Seed the epoch's dropout draws and the loader's batches: both depend on the epoch (and the process)
        only, so a resumed run draws what an uninterrupted one would."""
        torch.manual_seed(derive_seed(self.cfg.seed, epoch, "dropout", distributed.rank()))
        loader.set_epoch(epoch)

    def step(self, images, labels, clean, epoch: int, shares=None, weight: float = 1.0) -> tuple:
        """One training step on a batch (`shares`, `weight`: see _shares); the epoch's counts and the loss to record,
        both left on the device."""
        with self.compile_timer.timing(images):
            with _autocast(self.device, self.amp_dtype):
                loss, counts, recorded = self.loss(images, labels, clean, epoch, shares)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss if weight == 1 else loss * weight).backward()
            if self.cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        # schedule: the schedules written in steps move after every batch
        if self.schedule.unit == "batch":
            self.schedule.scheduler.step()
        return counts, recorded

    def end_epoch(self) -> None:
        """The step of a schedule written in epochs."""
        if self.schedule.unit == "epoch":
            self.schedule.scheduler.step()

    def train_epoch(self, loader, epoch: int, bar, checkpoint_dir) -> dict:
        """One pass over `loader`, never waiting on the GPU: its history row's training metrics, lr and seconds."""
        started, lr, steps, compiled = time.perf_counter(), self.lr(), len(loader), self.compile_timer.seconds
        self.begin_epoch(loader, epoch)
        weights, shares = self._shares(loader)
        sums, guard = _EpochSums(self.device), _FiniteGuard(self.device, epoch, checkpoint_dir)
        for step, (images, labels, *clean) in enumerate(loader, start=1):
            counts, recorded = self.step(images, labels, clean[0] if clean else None, epoch,
                                         shares[step - 1] if shares else None, weights[step - 1] if weights else 1.0)
            # bookkeeping, on the device: the epoch's sums, the NaN guard, now and then the progress bar
            guard.observe(recorded, step)
            sums.add(recorded, counts, len(labels))
            if step % CHECK_EVERY == 0:
                guard.poll()
                bar.update(step - (bar.n - (epoch - 1) * steps))
        # end of epoch: the bar, the NaN guard's answer, the epoch schedule, the totals (reading them waits for
        # the GPU, so the clock is right); a compiled run's compilation is counted apart
        bar.update(steps - (bar.n - (epoch - 1) * steps))
        guard.check()
        self.end_epoch()
        compiling = self.compile_timer.seconds - compiled
        return {"epoch": epoch, **sums.metrics(), "lr": lr, "train_seconds": time.perf_counter() - started - compiling,
                "compile_seconds": compiling if self.compile_timer.enabled else math.nan}

    def _shares(self, loader) -> tuple:
        """Per batch under DDP, this process's loss weight (so an uneven batch's averaged gradient is its mean), or
        for a contrastive loss, already over the gathered batch, every process's share; (None, None) in one process."""
        if getattr(loader, "world_size", 1) == 1:
            return None, None
        return (None, loader.share_sizes()) if self.contrastive else (loader.shard_weights(), None)


class _EpochSums:
    """An epoch's training loss and counts, summed on the device step by step and read once at its end."""

    def __init__(self, device):
        self.device, self.loss, self.counts, self.images = device, torch.zeros((), device=device), {}, 0

    def add(self, recorded, counts: dict, images: int) -> None:
        self.loss += recorded * images
        for key, value in counts.items():
            self.counts[key] = self.counts[key] + value if key in self.counts else value
        self.images += images

    def metrics(self) -> dict:
        """The epoch's training metrics over every process; NaN where a run has no such thing."""
        images = torch.tensor(float(self.images), device=self.device)
        totals = distributed.sum_across({"loss": self.loss, "count": images, **self.counts})
        totals = {k: v.item() for k, v in totals.items()}

        def share(key, total):
            return totals[key] / total if key in totals and total else math.nan
        return {"train_loss": totals["loss"] / totals["count"], "train_acc": share("correct", totals["count"]),
                "train_acc_clean": share("correct_clean", totals["count"]),
                "label_precision_1": share("kept_clean_1", totals.get("kept")),
                "label_precision_2": share("kept_clean_2", totals.get("kept"))}


class _FiniteGuard:
    """Remembers the first step whose loss was NaN or infinite, on the device, and raises once it is seen."""

    def __init__(self, device, epoch: int, checkpoint_dir):
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.epoch, self.checkpoint_dir = epoch, checkpoint_dir
        self.cuda = device.type == "cuda"
        self.copy = torch.full((), -1, dtype=torch.long, pin_memory=self.cuda)
        self.copied = None  # the CUDA event of the copy in flight

    def observe(self, loss: torch.Tensor, step: int) -> None:
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)

    def poll(self) -> None:
        """On a GPU, never waits: reads the copy its previous call started, if it has landed, and starts another."""
        if not self.cuda:
            return self.check()  # on a CPU the value is already there
        if self.copied is not None and self.copied.query():
            self.check(self.copy)
        self.copy.copy_(self.first_bad, non_blocking=True)
        self.copied = torch.cuda.Event()
        self.copied.record()

    def check(self, first_bad: torch.Tensor = None) -> None:
        """Raise TrainingDiverged if a step was bad (`first_bad`: the copy poll() reads; default the device's)."""
        bad_step = int(self.first_bad if first_bad is None else first_bad)
        if bad_step >= 0:
            epoch, folder = self.epoch, self.checkpoint_dir
            kept = f"the checkpoint of epoch {epoch - 1} in {folder} is kept" if folder and epoch > 1 \
                else "no checkpoint was written"
            raise TrainingDiverged(
                f"Training diverged: the loss became NaN or infinite at epoch {epoch}, step {bad_step}; "
                f"lower the learning rate or set grad_clip ({kept}).")


class _CompileTimer:
    """The seconds a compiled run spends in steps with an input shape it has not compiled yet: its compilation,
    recorded apart from the training time (as compile_seconds)."""

    def __init__(self, device, enabled: bool):
        self.device, self.enabled, self.shapes, self.seconds = device, enabled, set(), 0.0

    @contextlib.contextmanager
    def timing(self, images):
        """Around one step: its seconds count as compilation when its input shape is new (synchronised on a GPU)."""
        new = self.enabled and tuple(images.shape) not in self.shapes
        if new:
            self.shapes.add(tuple(images.shape))
            self._sync()
            began = time.perf_counter()
        yield
        if new:
            self._sync()
            self.seconds += time.perf_counter() - began

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _epoch_line(row: dict) -> str:
    text = f"loss {row['train_loss']:.4f}" + ("" if math.isnan(row["train_acc"]) else f" acc {row['train_acc']:.4f}")
    for split in ("val", "test"):
        if not math.isnan(row[f"{split}_acc"]):
            text += f" | {split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_acc']:.4f}"
    return text + f" | lr {row['lr']:.2e} | {row.get('seconds', 0):.0f}s"
