"""RunConfig: everything that defines a run, its id and its fingerprint."""

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .data import folder_identity

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
HALF_MEAN, HALF_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LOSSES = ("cross_entropy", "supcon", "supcon_with_self")
DATASETS = ("cifar10", "cifar100", "imagenette")
PARALLEL_MODES = ("off", "ddp", "spread")
# an image folder's identity, as common.data.folder_identity makes it
IDENTITY = re.compile(r"[A-Za-z0-9_.-]+-[0-9a-f]{10}")


@dataclass
class RunConfig:
    """One training run: data, model, optimisation and bookkeeping, all plain values."""
    # the recipe's fields have no defaults, so a recipe that forgets one fails instead of inheriting another's;
    # the rest default to "off" (no smoothing, no noise, no clipping, ...)
    experiment: str
    model: str
    dataset: str  # the report's data set this run stands for (cifar10 | cifar100 | imagenette); the summary joins on it
    source: str  # the images trained on: cifar10 | cifar100 | imagenette | synthetic | imagefolder:PATH (see below)
    num_classes: int
    mean: tuple
    std: tuple
    augment: tuple  # op(...) steps of common.augment, or a tuple of such tuples (one per view); () for none
    epochs: int
    batch_size: int
    optimizer: str  # adam | adamw | sgd
    lr: float
    schedule: dict  # common.schedules: {"name": "constant"} for none
    model_options: dict = field(default_factory=dict)
    encoder: str = ""  # a classifier on a frozen encoder: the encoder run's "run_id@fingerprint"
    image_size: int = 32
    synthetic_sizes: tuple = (512, 256)  # train / test images of the synthetic source
    val_size: int = 0
    eval_batch_size: int = 500
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD only
    loss: str = "cross_entropy"  # cross_entropy | supcon (Khosla et al.) | supcon_with_self (the report script's)
    temperature: float = 1.0  # supcon losses only
    label_smoothing: float = 0.0
    label_noise: dict = field(default_factory=dict)  # e.g. {"kind": "symmetric", "rate": 0.3}: training labels only
    coteaching: dict = field(default_factory=dict)  # e.g. {"forget_rate": 0.3, "ramp_epochs": 0}; empty: off
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off
    monitor_test: bool = False  # evaluate the test set every epoch for the curves (never for model selection)
    seed: int = 0
    profile: str = "full"
    # auto (bf16 where the device computes it natively, else fp16 on CUDA / fp32) | fp32 | bf16 | fp16
    precision: str = "auto"
    channels_last: str = "auto"  # auto (on) | on | off
    shortened: bool = False  # trained for another number of epochs than its recipe (--epochs): never the report's row
    # where an image folder lies; not part of the run's identity, which is the folder's name and a digest of its images
    source_path: str = ""

    def __post_init__(self):
        named = self.source.split(":", 1)[1] if self.source.startswith("imagefolder:") else ""
        # an identity (NAME-DIGEST) that is no folder here names recorded runs; training it needs the images
        if named and not self.source_path and (Path(named).expanduser().exists() or not IDENTITY.fullmatch(named)):
            self.source_path = str(Path(named).expanduser().resolve())
            self.source = "imagefolder:" + folder_identity(self.source_path)
        self.check()

    def check(self):
        """Refuse impossible settings with one sentence naming the field and the fix."""
        noise_rate, forget = self.label_noise.get("rate", 0), self.coteaching.get("forget_rate", 0)
        problems = [problem for impossible, problem in [
            (self.dataset not in DATASETS, f"dataset={self.dataset!r}: use one of {', '.join(DATASETS)} (the report's "
             "data set the run stands for; `source` names the images it trains on)"),
            (self.epochs < 1, f"epochs={self.epochs}: train for at least 1 epoch"),
            (self.batch_size < 1, f"batch_size={self.batch_size}: use a positive batch size"),
            (self.lr <= 0, f"lr={self.lr}: the learning rate must be positive"),
            (not 0 <= self.label_smoothing < 1, f"label_smoothing={self.label_smoothing}: use a value in [0, 1)"),
            (self.val_size < 0 or self.num_classes < 2, f"val_size={self.val_size}, num_classes={self.num_classes}: "
             "use val_size >= 0 and at least 2 classes"),
            (self.weight_decay < 0 or self.grad_clip < 0, "weight_decay and grad_clip must not be negative"),
            (self.optimizer not in ("adam", "adamw", "sgd"), f"optimizer={self.optimizer!r}: use adam, adamw or sgd"),
            (self.loss not in LOSSES or self.temperature <= 0, f"loss={self.loss!r}, temperature={self.temperature}: "
             f"use one of {', '.join(LOSSES)} and a positive temperature"),
            (not (0 <= noise_rate <= 1 and 0 <= forget < 1), f"label noise rate {noise_rate} and forget rate "
             f"{forget}: use a noise rate in [0, 1] and a forget rate in [0, 1)"),
            (self.coteaching and self.loss != "cross_entropy",
             "Co-teaching ranks per-sample cross-entropy losses: use loss='cross_entropy'"),
            (self.precision not in ("auto", "fp32", "bf16", "fp16"),
             f"precision={self.precision!r}: use auto, fp32, bf16 or fp16"),
            (self.channels_last not in ("auto", "on", "off"),
             f"channels_last={self.channels_last!r}: use auto, on or off"),
        ] if impossible]
        if problems:
            raise ValueError(f"Impossible setting in run {self.experiment!r}: " + "; ".join(problems) + ".")

    def _repr_pretty_(self, printer, cycle):
        """One field a line in notebooks, so a recipe reads like a table (where the images lie is not part of it)."""
        printer.text("RunConfig(\n" + "".join(f"    {f.name}={getattr(self, f.name)!r},\n" for f in fields(self)
                                              if f.name != "source_path") + ")")

    @property
    def source_name(self) -> str:
        """The source's short name: an image folder by its folder's name, without the digest."""
        if self.source.startswith("imagefolder:"):
            return "imagefolder-" + self.source.split(":", 1)[1].rsplit("-", 1)[0]
        return self.source

    @property
    def run_id(self) -> str:
        """experiment-model-dataset-seed-profile; a stand-in data set also names the one it stands for,
        so a smoke run of CIFAR-10 and one of CIFAR-100 (both synthetic) never share checkpoints; a shortened
        run ends in its epochs ("-5ep"), so it never shares checkpoints or a results row with the full run."""
        name = self.source_name
        dataset = name if name == self.dataset else f"{name}-as-{self.dataset}"
        suffix = f"-{self.epochs}ep" if self.shortened else ""
        return f"{self.experiment}-{self.model}-{dataset}-s{self.seed}-{self.profile}{suffix}"

    def to_dict(self) -> dict:
        """The run's identity as plain JSON values (tuples become lists, as in a checkpoint); where its images
        lie is left out, so the same images elsewhere make the same run."""
        values = json.loads(json.dumps(asdict(self)))
        del values["source_path"]
        return values

    def fingerprint(self) -> str:
        """A short hash of the config: a checkpoint or result made under another one is refused."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def replace(self, **changes) -> "RunConfig":
        if "source" in changes:
            changes.setdefault("source_path", "")  # a new source: an image folder is found and identified again
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Execution:
    """How runs execute, never what they compute: torch.compile, synchronised BatchNorm, several GPUs."""
    compile: bool = False  # train through torch.compile (its warm-up recorded apart, as compile_seconds)
    sync_bn: bool = False  # data parallel: BatchNorm statistics over every process's share (GPUs only)
    parallel: str = "off"  # off | ddp (each run over every GPU, torchrun) | spread (a notebook's runs, one per GPU)
    gpus: int = 0  # processes of a parallel launch; 0: every visible GPU
    # the most of a run's time its checkpoints may take; None: every epoch on a CPU (exact resume), 2 % on a GPU
    checkpoint_share: float = None

    def __post_init__(self):
        if self.checkpoint_share is not None and not 0 < self.checkpoint_share < 1:
            raise ValueError(f"checkpoint_share={self.checkpoint_share!r}: give a fraction of the run's time between "
                             "0 and 1 (e.g. 0.02), or None to checkpoint every epoch on a CPU and 2 % on a GPU.")
        if self.parallel not in PARALLEL_MODES:
            raise ValueError(f"parallel={self.parallel!r} is not a way to run: use one of {', '.join(PARALLEL_MODES)}.")
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise ValueError(f"gpus={self.gpus!r}: give a whole number of GPUs, or 0 for every visible one.")


def config_differences(old: dict, new: dict) -> str:
    """'epochs 30 -> 2, lr 0.001 -> 0.01': what differs between two config dicts."""
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))
