"""fit() and evaluate(): the training loop with checkpoints, resume, mixed precision and a NaN guard."""

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import distributed
from .denormals import check_flush_denormal
from .config import RunConfig, config_differences
from .progress import progress_bar
from .schedules import build_schedule

CHECK_EVERY = 50  # steps between NaN checks; a check reads a copy made at the previous one, so it never waits


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointMismatch(RuntimeError):
    """A checkpoint on disk belongs to another config."""


class CheckpointUnreadable(RuntimeError):
    """A checkpoint file is truncated or corrupt."""


@dataclass
class FitResult:
    """What fit() returns: per-epoch history, the best-validation epoch and its weights."""
    history: list
    best_epoch: int
    best_state: dict
    wall_seconds: float
    steps: list = None  # (epoch, step, lr, loss) of every step, when fit() was asked to record them


def native_bf16(device: torch.device) -> bool:
    """True where the device computes bf16 in hardware: CUDA compute capability 8.0 or higher (A100, H100, ...;
    torch.cuda.is_bf16_supported also counts emulation, as on a T4 or V100), or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    cpu = getattr(torch, "cpu", None)
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def autocast_dtype(cfg: RunConfig, device: torch.device):
    """The autocast dtype for this run, or None for plain fp32.

    "auto" is bf16 where the device computes it natively, otherwise fp16 with a gradient scaler on CUDA and
    fp32 on a CPU."""
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "auto":
        if native_bf16(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else None
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a GPU ({cfg.run_id} trains on the CPU): use auto, bf16 or fp32.")
    return torch.float16 if cfg.precision == "fp16" else torch.bfloat16


def precision_name(amp_dtype) -> str:
    """fp32, bf16 or fp16: what a run's forward pass computed in, as its results row records it."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]


def use_channels_last(cfg: RunConfig, device: torch.device) -> bool:
    """channels_last unless switched off: the fast conv layout on CUDA, and faster on a CPU too (see the README)."""
    return cfg.channels_last != "off"


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
def evaluate(model: nn.Module, loader, amp_dtype=None, criterion=None):
    """Mean loss and accuracy of `model` over `loader` (eval mode, no augmentation)."""
    criterion = criterion or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for images, labels in loader:
        with _autocast(device, amp_dtype):
            logits = model(images)
        loss_sum += criterion(logits.float(), labels) * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        count += len(labels)
    model.train(was_training)
    if count == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / count, correct.item() / count


def _save_atomic(obj, path: Path) -> None:
    """torch.save to a temp file, then rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Read a checkpoint, naming the file if it is truncated or corrupt."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:
        raise CheckpointUnreadable(
            f"Checkpoint {path} is unreadable ({type(err).__name__}), probably truncated: "
            "delete it to start the run afresh.") from None


def _read_or_set_aside(path: Path, device):
    """A checkpoint's contents, or None if it is unreadable: then it is named, renamed *.corrupt and skipped."""
    try:
        return load_checkpoint(path, device)
    except CheckpointUnreadable:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"Checkpoint {path} is unreadable, probably cut short by a crash: it was moved to "
                      f"{aside.name} and the run goes on from the previous checkpoint, or from scratch.", stacklevel=3)
        return None


def _newest_readable(checkpoint_dir: Path, device):
    """(state, path) of the newest readable checkpoint, last.pt then prev.pt (the epoch before); (None, None)
    when there is none, and the run starts afresh."""
    for name in ("last.pt", "prev.pt"):
        path = checkpoint_dir / name
        if path.exists():
            state = _read_or_set_aside(path, device)
            if state is not None:
                return state, path
    return None, None


def fit(model: nn.Module, train_loader, val_loader, cfg: RunConfig, checkpoint_dir=None,
        progress: bool = True, test_loader=None, record_steps: bool = False, stop_after=None,
        compile: bool = False, sync_bn: bool = False) -> FitResult:
    """Train `model` as `cfg` says; checkpoint every epoch in `checkpoint_dir` and resume from it.

    `test_loader` with cfg.monitor_test adds test metrics to every epoch's history (curves only:
    the best epoch is chosen on validation); `record_steps` keeps every step's lr and loss;
    `stop_after` ends a diagnostic run after that many epochs of the configured schedule.
    `compile` trains through torch.compile (its warm-up is recorded apart, as compile_seconds).
    Under torchrun, every process trains its share of each batch (DistributedDataParallel, BatchNorm
    synchronised if `sync_bn`) and only the main one writes checkpoints.
    """
    device = next(model.parameters()).device
    if device.type == "cpu":
        check_flush_denormal()
    else:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    if getattr(train_loader, "world_size", 1) != distributed.world_size():
        raise ValueError(f"The training loader is shared by {getattr(train_loader, 'world_size', 1)} process(es) but "
                         f"{distributed.world_size()} train: make it with DeviceLoader(..., rank=distributed.rank(), "
                         "world_size=distributed.world_size()) so that each trains on its own share of every batch.")
    amp_dtype = autocast_dtype(cfg, device)
    trainer = _Trainer(model, cfg, len(train_loader), amp_dtype, compile=compile, sync_bn=sync_bn)
    main = distributed.is_main()
    progress = progress and main
    # validation scores classes; a contrastive pretraining run has none, so its final epoch is kept
    has_val = val_loader is not None and len(val_loader.y) > 0 and cfg.loss == "cross_entropy"

    history, start_epoch, wall = [], 0, 0.0
    best = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf}
    best_state = None
    last_path = best_path = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        last_path, best_path = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
        with distributed.main_first():  # the main process sets an unreadable file aside before the others look
            state, path = _newest_readable(checkpoint_dir, device)
            saved = _read_or_set_aside(best_path, device) if has_val and state is not None and best_path.exists() else None
        if state is not None:
            state = trainer.restore(state, path)
            history, start_epoch, wall, best = state["history"], state["epoch"], state["wall_seconds"], state["best"]
            if has_val:
                if saved is not None and saved["epoch"] == best["epoch"]:
                    best_state = saved["model"]
                else:  # lost, or from an epoch after the one resumed: the epochs still to come choose the best
                    best = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf}

    steps, recorded = len(train_loader), []
    bar = progress_bar(total=cfg.epochs * steps, initial=start_epoch * steps, desc=cfg.run_id,
                       disable=not progress)
    model.train()
    for epoch in range(start_epoch + 1, min(cfg.epochs, stop_after or cfg.epochs) + 1):
        started = time.perf_counter()
        # dropout draws depend on the epoch (and the process) only: resume is exact, and each process of a
        # data-parallel run draws masks of its own
        torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7_919 * distributed.rank())
        train_loader.set_epoch(epoch)
        lr = trainer.lr()
        metrics, epoch_steps = trainer.train_epoch(train_loader, epoch, bar, checkpoint_dir, record_steps)
        # train_epoch ends by reading its metrics, so the GPU is done; a compiled run's warm-up is counted apart
        compile_seconds = metrics.pop("compile_seconds")
        train_seconds = time.perf_counter() - started - compile_seconds
        recorded += epoch_steps
        row = {"epoch": epoch, **metrics, "val_loss": math.nan, "val_acc": math.nan, "test_loss": math.nan,
               "test_acc": math.nan, "lr": lr, "train_seconds": train_seconds,
               "compile_seconds": compile_seconds if compile else math.nan}
        if has_val:
            row["val_loss"], row["val_acc"] = evaluate(model, val_loader, amp_dtype)
        if cfg.monitor_test and test_loader is not None:
            row["test_loss"], row["test_acc"] = evaluate(model, test_loader, amp_dtype)
        row["seconds"] = time.perf_counter() - started
        wall += row["seconds"]
        history.append(row)
        improved = has_val and (row["val_acc"], -row["val_loss"]) > (best["val_acc"], -best["val_loss"])
        if improved or not has_val:  # without validation the best epoch is the last one
            best = {"epoch": epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
        if improved:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if best_path is not None and main:
                _save_atomic({"model": best_state, "epoch": epoch}, best_path)
        if last_path is not None and main:
            if last_path.exists():  # the previous epoch stays as prev.pt, should last.pt ever be unreadable
                os.replace(last_path, checkpoint_dir / "prev.pt")
            _save_atomic({**trainer.state(), "config": cfg.to_dict(), "config_hash": cfg.fingerprint(),
                          "epoch": epoch, "history": history, "best": best, "wall_seconds": wall}, last_path)
        bar.set_postfix_str(_epoch_line(row), refresh=False)
        if progress:
            bar.write(f"epoch {epoch}/{cfg.epochs} " + _epoch_line(row))
    bar.close()
    if not has_val or best_state is None:
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best["epoch"] = best["epoch"] or len(history)
    return FitResult(history, best["epoch"], best_state, wall, recorded if record_steps else None)


class _Trainer:
    """The model with its optimiser, schedule, loss and grad scaler: one epoch of steps at a time."""

    def __init__(self, model: nn.Module, cfg: RunConfig, steps_per_epoch: int, amp_dtype,
                 compile: bool = False, sync_bn: bool = False):
        self.model, self.cfg, self.amp_dtype = model, cfg, amp_dtype
        self.device = next(model.parameters()).device
        if distributed.active() and cfg.coteaching:
            raise ValueError(f"{cfg.run_id} cannot be split over processes: Co-teaching ranks the whole batch, "
                             "which each process would see only a share of; train it on one GPU.")
        # what the steps call: DDP averages gradients over the processes; the checkpoints keep self.model's keys
        self.net = distributed.wrap(model, sync_bn)
        self.warmup = _CompileClock(self.device) if compile else None  # kept across epochs: shapes compile once
        if compile:
            self.net = torch.compile(self.net)
        self.optimizer = build_optimizer(model, cfg)
        self.schedule = build_schedule(self.optimizer, cfg.schedule, steps_per_epoch, cfg.epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.contrastive = cfg.loss != "cross_entropy"
        self.epoch = 1  # set by train_epoch; Co-teaching's forget rate depends on it
        self.shares = None  # under DDP, every process's share of the current batch (set by train_epoch)

    def loss(self, images, labels):
        """The batch's loss and its counts, device tensors summed over the epoch: correct predictions, and
        with noisy labels (columns noisy, clean) those right by the clean label and Co-teaching's clean picks."""
        labels, clean = (labels[:, 0], labels[:, 1]) if labels.dim() == 2 else (labels, None)
        if self.contrastive:  # outputs: the projections of every view, stacked view by view
            from .supcon import supcon_loss
            features = self.net(images).float()
            if self.shares is not None:  # contrast with the whole batch, as one process would, not with a share
                features, labels = distributed.gather_batch(features, labels, self.shares)
            loss = supcon_loss(features, labels, self.cfg.temperature, include_self=self.cfg.loss == "supcon_with_self")
            return loss, {}
        counts = {}
        if self.cfg.coteaching:
            from .coteaching import coteaching_step, forget_rate
            rate = forget_rate(self.epoch, self.cfg.coteaching["forget_rate"], self.cfg.coteaching.get("ramp_epochs", 0))
            loss, logits, picks1, picks2 = coteaching_step(self.model, images, labels, rate, self.cfg.label_smoothing)
            counts["kept"] = torch.full((), len(picks1), device=self.device)
            if clean is not None:  # how many of each network's picks carry their true label
                counts["kept_clean_1"] = (labels[picks1] == clean[picks1]).sum()
                counts["kept_clean_2"] = (labels[picks2] == clean[picks2]).sum()
        else:
            logits = self.net(images)
            loss = self.criterion(logits.float(), labels)
        predicted = logits.argmax(1)
        counts["correct"] = (predicted == labels).sum()
        if clean is not None:
            counts["correct_clean"] = (predicted == clean).sum()
        return loss, counts

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def restore(self, state: dict, path: Path) -> dict:
        """Load a checkpoint of this very config, refusing one made with another."""
        if state["config_hash"] != self.cfg.fingerprint():
            raise CheckpointMismatch(
                f"Checkpoint {path} was made with another config "
                f"({config_differences(state['config'], self.cfg.to_dict())}): delete {path.parent} "
                "or run with force=True to start this run afresh.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        return state

    def train_epoch(self, loader, epoch: int, bar, checkpoint_dir, record_steps: bool):
        """One pass over `loader`: mean loss, accuracy and, if asked, (epoch, step, lr, loss) per step.

        Nothing in the loop waits on the GPU: metrics are summed on the device and read once, at the end
        of the epoch; the NaN guard looks every CHECK_EVERY steps at a copy started at its previous look.
        """
        device, steps = self.device, len(loader)
        self.epoch = epoch
        loss_sum = torch.zeros((), device=device)
        sums = {}
        guard = _FiniteGuard(device, epoch, checkpoint_dir)
        # a process's share of an uneven last batch is weighted so that DDP's average is the batch's mean; a
        # contrastive loss is already the whole batch's (every process computes it over the gathered batch)
        shared = getattr(loader, "world_size", 1) > 1
        weights = loader.shard_weights() if shared and not self.contrastive else None
        shares = loader.share_sizes() if shared and self.contrastive else None
        warmup = self.warmup
        compiled_before = warmup.seconds if warmup else 0.0
        count, step_lrs, step_losses = 0, [], []
        for step, (images, labels) in enumerate(loader, start=1):
            if warmup:
                warmup.start(images)
            if shares:
                self.shares = shares[step - 1]
            with _autocast(device, self.amp_dtype):
                loss, counts = self.loss(images, labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss if weights is None or weights[step - 1] == 1 else loss * weights[step - 1]).backward()
            if self.cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if warmup:
                warmup.stop()
            loss = loss.detach()
            if record_steps:  # the lr this step used; losses stay on the device until the epoch ends
                step_lrs.append(self.lr())
                step_losses.append(loss)
            if self.schedule.unit == "batch":
                self.schedule.scheduler.step()
            guard.observe(loss, step)
            loss_sum += loss * len(labels)
            for key, value in counts.items():
                sums[key] = sums[key] + value if key in sums else value
            count += len(labels)
            if step % CHECK_EVERY == 0:
                guard.poll()
                bar.update(step - (bar.n - (epoch - 1) * steps))
        bar.update(steps - (bar.n - (epoch - 1) * steps))
        guard.check()
        if self.schedule.unit == "epoch":
            self.schedule.scheduler.step()
        recorded = []
        if record_steps:
            recorded = [(epoch, i, lr, value) for i, (lr, value) in
                        enumerate(zip(step_lrs, torch.stack(step_losses).tolist()), start=1)]
        totals = distributed.sum_across({"loss": loss_sum, "count": torch.tensor(float(count), device=device), **sums})
        totals = {k: v.item() for k, v in totals.items()}
        metrics = _epoch_metrics(totals.pop("loss"), totals, int(totals.pop("count")))
        metrics["compile_seconds"] = warmup.seconds - compiled_before if warmup else 0.0
        return metrics, recorded


class _FiniteGuard:
    """Remembers the first step whose loss was NaN or infinite, on the device, and raises once it is seen.

    On a GPU poll() never waits: it reads the copy that its previous call started, if that copy has
    landed, and starts a new one; check() at the end of the epoch waits for the answer.
    """

    def __init__(self, device, epoch: int, checkpoint_dir):
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.epoch, self.checkpoint_dir = epoch, checkpoint_dir
        self.cuda = device.type == "cuda"
        self.copy = torch.full((), -1, dtype=torch.long, pin_memory=self.cuda)
        self.copied = None  # the CUDA event of the copy in flight

    def observe(self, loss: torch.Tensor, step: int) -> None:
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)

    def poll(self) -> None:
        if not self.cuda:
            return self.check()  # on a CPU the value is already there
        if self.copied is not None and self.copied.query():
            _check_finite(self.copy, self.epoch, self.checkpoint_dir)
        self.copy.copy_(self.first_bad, non_blocking=True)
        self.copied = torch.cuda.Event()
        self.copied.record()

    def check(self) -> None:
        _check_finite(self.first_bad, self.epoch, self.checkpoint_dir)


class _CompileClock:
    """The seconds a compiled run spends in steps with an input shape it has not compiled yet (its warm-up)."""

    def __init__(self, device):
        self.device, self.shapes, self.seconds, self.began = device, set(), 0.0, None

    def start(self, images) -> None:
        if tuple(images.shape) not in self.shapes:  # a new shape compiles: time this step on its own
            self.shapes.add(tuple(images.shape))
            self._sync()
            self.began = time.perf_counter()

    def stop(self) -> None:
        if self.began is not None:
            self._sync()
            self.seconds += time.perf_counter() - self.began
            self.began = None

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _epoch_metrics(loss_sum: float, sums: dict, count: int) -> dict:
    """An epoch's training metrics from its summed counts; NaN where a run has no such thing."""
    def share(key, total):
        return sums[key] / total if key in sums and total else math.nan
    return {"train_loss": loss_sum / count, "train_acc": share("correct", count),
            "train_acc_clean": share("correct_clean", count),
            "label_precision_1": share("kept_clean_1", sums.get("kept")),
            "label_precision_2": share("kept_clean_2", sums.get("kept"))}


def _check_finite(first_bad: torch.Tensor, epoch: int, checkpoint_dir) -> None:
    bad_step = int(first_bad)
    if bad_step >= 0:
        kept = f"the checkpoint of epoch {epoch - 1} in {checkpoint_dir} is kept" if checkpoint_dir and epoch > 1 \
            else "no checkpoint was written"
        raise TrainingDiverged(
            f"Training diverged: the loss became NaN or infinite at epoch {epoch}, step {bad_step}; "
            f"lower the learning rate or set grad_clip ({kept}).")


def _epoch_line(row: dict) -> str:
    text = f"loss {row['train_loss']:.4f}" + ("" if math.isnan(row["train_acc"]) else f" acc {row['train_acc']:.4f}")
    for split in ("val", "test"):
        if not math.isnan(row[f"{split}_acc"]):
            text += f" | {split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_acc']:.4f}"
    return text + f" | lr {row['lr']:.2e} | {row.get('seconds', 0):.0f}s"
