"""RunConfig: everything that defines a run, its id and its fingerprint."""

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
HALF_MEAN, HALF_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LOSSES = ("cross_entropy", "supcon", "supcon_with_self")


@dataclass
class RunConfig:
    """One training run: data, model, optimisation and bookkeeping, all plain values."""
    experiment: str
    model: str = "vgg_basic"
    model_options: dict = field(default_factory=dict)
    source: str = "cifar10"  # cifar10 | cifar100 | imagenette | imagefolder:PATH | synthetic
    report_dataset: str = "cifar10"  # the report's data set this run stands for; the summary joins on it
    num_classes: int = 10
    image_size: int = 32
    synthetic_sizes: tuple = (512, 256)  # train / test images of the synthetic source
    val_size: int = 0
    mean: tuple = HALF_MEAN
    std: tuple = HALF_STD
    augment: tuple = ("flip", "translate=0.1")
    epochs: int = 30
    batch_size: int = 100
    eval_batch_size: int = 500
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    schedule: dict = field(default_factory=lambda: {"name": "constant"})
    loss: str = "cross_entropy"  # cross_entropy | supcon (Khosla et al.) | supcon_with_self (the report script's)
    temperature: float = 0.07  # supcon losses only
    label_smoothing: float = 0.0
    label_noise: dict = field(default_factory=dict)  # e.g. {"kind": "symmetric", "rate": 0.3}: training labels only
    coteaching: dict = field(default_factory=dict)  # e.g. {"forget_rate": 0.3, "ramp_epochs": 0}; empty: off
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off
    monitor_test: bool = False  # evaluate the test set every epoch for the curves (never for model selection)
    seed: int = 0
    profile: str = "full"
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    channels_last: str = "auto"  # auto (on) | on | off
    shortened: bool = False  # trained for another number of epochs than its recipe (--epochs): never the report's row

    def __post_init__(self):
        self.check()

    def check(self):
        """Refuse impossible settings with one sentence naming the field and the fix."""
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs}: train for at least 1 epoch")
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size}: use a positive batch size")
        if self.lr <= 0:
            problems.append(f"lr={self.lr}: the learning rate must be positive")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing={self.label_smoothing}: use a value in [0, 1)")
        if self.val_size < 0 or self.num_classes < 2:
            problems.append(f"val_size={self.val_size}, num_classes={self.num_classes}: "
                            "use val_size >= 0 and at least 2 classes")
        if self.weight_decay < 0 or self.grad_clip < 0:
            problems.append("weight_decay and grad_clip must not be negative")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            problems.append(f"optimizer={self.optimizer!r}: use adam, adamw or sgd")
        if self.loss not in LOSSES or self.temperature <= 0:
            problems.append(f"loss={self.loss!r}, temperature={self.temperature}: use one of {', '.join(LOSSES)} "
                            "and a positive temperature")
        noise_rate = self.label_noise.get("rate", 0)
        forget = self.coteaching.get("forget_rate", 0)
        if not (0 <= noise_rate <= 1 and 0 <= forget < 1):
            problems.append(f"label noise rate {noise_rate} and forget rate {forget}: use a noise rate in [0, 1] "
                            "and a forget rate in [0, 1)")
        if self.coteaching and self.loss != "cross_entropy":
            problems.append("Co-teaching ranks per-sample cross-entropy losses: use loss='cross_entropy'")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"precision={self.precision!r}: use auto, fp32, bf16 or fp16")
        if self.channels_last not in ("auto", "on", "off"):
            problems.append(f"channels_last={self.channels_last!r}: use auto, on or off")
        if problems:
            raise ValueError(f"Impossible setting in run {self.experiment!r}: " + "; ".join(problems) + ".")

    def _repr_pretty_(self, printer, cycle):
        """One field a line in notebooks, so a recipe reads like a table."""
        printer.text("RunConfig(\n" + "".join(f"    {f.name}={getattr(self, f.name)!r},\n" for f in fields(self)) + ")")

    @property
    def dataset(self) -> str:
        """The data set's short name (an image folder is named after its directory)."""
        if self.source.startswith("imagefolder:"):
            return "imagefolder-" + re.sub(r"[^A-Za-z0-9_.-]", "", self.source.rstrip("/").split("/")[-1])
        return self.source

    @property
    def run_id(self) -> str:
        """experiment-model-dataset-seed-profile; a stand-in data set also names the one it stands for,
        so a smoke run of CIFAR-10 and one of CIFAR-100 (both synthetic) never share checkpoints; a shortened
        run ends in its epochs ("-5ep"), so it never shares checkpoints or a results row with the full run."""
        dataset = self.dataset if self.dataset == self.report_dataset else f"{self.dataset}-as-{self.report_dataset}"
        suffix = f"-{self.epochs}ep" if self.shortened else ""
        return f"{self.experiment}-{self.model}-{dataset}-s{self.seed}-{self.profile}{suffix}"

    def to_dict(self) -> dict:
        values = json.loads(json.dumps(asdict(self)))  # tuples become lists, as in a checkpoint
        if not values["shortened"]:
            del values["shortened"]  # so configs, checkpoints and results made before the field keep their hash
        return values

    def fingerprint(self) -> str:
        """A short hash of the config: a checkpoint or result made under another one is refused."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def replace(self, **changes) -> "RunConfig":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return RunConfig(**values)


def config_differences(old: dict, new: dict) -> str:
    """'epochs 30 -> 2, lr 0.001 -> 0.01': what differs between two config dicts."""
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))
