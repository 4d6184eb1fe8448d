"""The report's recipes as RunConfigs, one function per section; `profile` picks full (the recipe of
docs/recipes.md on the real data set) or smoke (the same code path on a few hundred generated images, 2 epochs)."""

from .augment import op
from .config import CIFAR10_MEAN, CIFAR10_STD, HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD, RunConfig
from .paths import check_profile

SMOKE_EPOCHS = 2

# Level E (CIFAR-10, basic VGG): every exploration starts from this recipe.
LEVEL_E = dict(
    model="vgg_basic", model_options={},  # patchify stem, VGG blocks, flatten head with dropout 0.5
    dataset="cifar10", source="cifar10", num_classes=10, val_size=0,  # no validation split in the report's E runs
    mean=HALF_MEAN, std=HALF_STD,
    # RandomHorizontalFlip + RandomAffine(translate=(0.1, 0.1))
    augment=(op("flip", p=0.5), op("translate", fraction=0.1)),
    epochs=30, batch_size=100, eval_batch_size=100,
    optimizer="adam", lr=5e-5, weight_decay=1e-3,  # Adam with coupled L2, as the code ran (the text says AdamW)
    # CyclicLR triangular2 5e-5..3e-3, up 3,900 of the 15,000 steps, stepped every batch
    schedule={"name": "cyclic", "base_lr": 5e-5, "max_lr": 3e-3, "up_fraction": 0.26},
    grad_clip=1.0, label_smoothing=0.0,
    monitor_test=True,  # the report plotted test curves; recorded per epoch, never used to pick an epoch
)

# one 8x8 hole, inside the image, before normalisation
CUTOUT_AUGMENT = (*LEVEL_E["augment"], op("cutout", size=8))
# Table 4's schedules: Adam at 1e-3, each stepped per epoch (the report's code stepped them per batch)
# the report's code: lr x (e+1)/5 for epochs e = 0..4 (0.2, 0.4, 0.6, 0.8, 1), then cosine over the other 25
WARMUP_COSINE = {"name": "warmup_cosine", "warmup": 5, "start_factor": 0.2, "ramp": 4}
STEP_DECAY = {"name": "step", "step_size": 10, "gamma": 0.1}
COSINE_RESTARTS = {"name": "cosine_restarts", "T_0": 10, "T_mult": 1}

LEVEL_E_VARIANTS = {
    "basic": dict(),
    "ls_cutout": dict(label_smoothing=0.1, augment=CUTOUT_AUGMENT),
    "warmup_cosine": dict(lr=1e-3, schedule=WARMUP_COSINE),
    "step_decay": dict(lr=1e-3, schedule=STEP_DECAY),
    "cosine_restarts": dict(lr=1e-3, schedule=COSINE_RESTARTS),
    # the same three as the report's code ran them: epoch schedules stepped every batch (docs/report-bugs.md)
    "warmup_cosine_as_run": dict(lr=1e-3, schedule={**WARMUP_COSINE, "stepped_every": "batch"}),
    "step_decay_as_run": dict(lr=1e-3, schedule={**STEP_DECAY, "stepped_every": "batch"}),
    "cosine_restarts_as_run": dict(lr=1e-3, schedule={**COSINE_RESTARTS, "stepped_every": "batch"}),
    "strided": dict(model_options={"downsample": "stride"}),
    "gap": dict(model_options={"head": "gap"}),
    # the report's first finding (its section 3): without batch normalisation the blocks stayed at chance
    "no_bn": dict(model_options={"batchnorm": False}),
    # what the report's text describes: every exploration at once
    "combined": dict(label_smoothing=0.1, augment=CUTOUT_AUGMENT, lr=1e-3, schedule=COSINE_RESTARTS,
                     model_options={"downsample": "stride", "head": "gap"}),
    # what its script ran for that row: GAP + label smoothing + Cutout, CyclicLR, no strided convs
    "combined_as_run": dict(label_smoothing=0.1, augment=CUTOUT_AUGMENT, model_options={"head": "gap"}),
    # a control, not in the report: the cyclic recipe at the schedules' 1e-3 peak instead of its own 3e-3
    "cyclic_peak_1e3": dict(schedule={**LEVEL_E["schedule"], "max_lr": 1e-3}),
    # ablations, not in the report: its claim that dropout, weight decay and augmentation each help (C4)
    "no_dropout": dict(model_options={"dropout": 0.0}),
    "no_weight_decay": dict(weight_decay=0.0),
    "no_augment": dict(augment=()),
}
# notebook 02's runs, in its order: every Level E exploration but the basic recipe (notebook 01's)
REGULARIZATION_VARIANTS = ["ls_cutout", "warmup_cosine", "warmup_cosine_as_run", "step_decay", "step_decay_as_run",
                           "cosine_restarts", "cosine_restarts_as_run", "strided", "gap", "no_bn", "combined",
                           "combined_as_run", "cyclic_peak_1e3", "no_dropout", "no_weight_decay", "no_augment"]


def level_e(variant: str = "basic", profile: str = "full", seed: int = 0, epochs=None, source=None) -> RunConfig:
    """A Level E run: the basic VGG recipe with one exploration's changes."""
    if variant not in LEVEL_E_VARIANTS:
        raise ValueError(f"Unknown Level E variant {variant!r}: known are {', '.join(LEVEL_E_VARIANTS)}.")
    settings = {**LEVEL_E, **LEVEL_E_VARIANTS[variant]}
    return _for_profile(RunConfig(experiment=f"e_{variant}", **settings), profile, seed, epochs, source)


# Level A (ResNet18, SE-ResNet18, ConvNeXt; ViT later): one data and training recipe, per-model optimiser.
LEVEL_A_AUGMENT = (op("crop", padding=4), op("flip"), op("translate", fraction=0.1),
                   op("jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1), op("rotate", degrees=15),
                   op("cutout", size=8))
LEVEL_A = dict(
    model_options={}, val_size=500,  # 49,500 train / 500 validation, seeded; the official 10,000 are the test set
    mean=CIFAR10_MEAN, std=CIFAR10_STD,  # CIFAR-10's statistics for CIFAR-100 too, as the scripts did
    augment=LEVEL_A_AUGMENT,  # crop 4, flip, translate 0.1, colour jitter, rotation 15, Cutout 8
    epochs=50, batch_size=256, eval_batch_size=500,
    optimizer="adamw", label_smoothing=0.1, grad_clip=0.0,
    schedule={"name": "cosine"},  # T_max = epochs, stepped per epoch, no warm-up
    monitor_test=False,
)
LEVEL_A_MODELS = {
    "resnet18": dict(lr=1e-3, weight_decay=5e-4),
    "se_resnet18": dict(lr=1e-3, weight_decay=5e-4),
    "convnext": dict(lr=1e-3, weight_decay=0.05),
    "vit": dict(lr=1e-4, weight_decay=5e-4, epochs=100),  # CIFAR-100 in the report, against ResNet18
}
LEVEL_A_SEED = 42
LEVEL_A_CLASSES = {"cifar10": 10, "cifar100": 100}
SMOKE_VAL_SIZE = 32  # the smoke profile's few hundred images cannot spare 500 for validation


def level_a(model: str = "resnet18", dataset: str = "cifar10", profile: str = "full", seed: int = LEVEL_A_SEED,
            epochs=None, source=None) -> RunConfig:
    """A Level A run: one of the report's architectures on CIFAR-10 or CIFAR-100."""
    if model not in LEVEL_A_MODELS:
        raise ValueError(f"Unknown Level A model {model!r}: known are {', '.join(LEVEL_A_MODELS)}.")
    if dataset not in LEVEL_A_CLASSES:
        raise ValueError(f"Unknown Level A data set {dataset!r}: use cifar10 or cifar100.")
    settings = {**LEVEL_A, **LEVEL_A_MODELS[model]}
    cfg = RunConfig(experiment=f"a_{model}", model=model, dataset=dataset, source=dataset,
                    num_classes=LEVEL_A_CLASSES[dataset], **settings)
    # smoke: fewer images than Level E, since ConvNeXt is the slowest network to train on a CPU
    return _for_profile(cfg, profile, seed, epochs, source, smoke_sizes=(128, 64))


def imagenet_stem(profile: str = "full", seed: int = LEVEL_A_SEED, epochs=None, source=None) -> RunConfig:
    """The Level A ResNet18 on CIFAR-10 with torchvision's 7x7 stride-2 stem and max-pool (claim C19)."""
    cfg = level_a("resnet18", "cifar10", profile, seed, epochs, source)
    return cfg.replace(experiment="a_resnet18_imagenet_stem", model_options={"stem": "imagenet"})


# Supervised contrastive pretraining on CIFAR-100, then a classifier on the frozen encoder.
# the two views of every image in pretraining
SUPCON_VIEW1 = (op("resized_crop", scale_low=0.08, scale_high=1.0), op("flip"),
                op("jitter_p", p=0.8, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2),
                op("grayscale", p=0.2), op("gaussian_blur", kernel=3, sigma_low=0.1, sigma_high=2.0))
SUPCON_VIEW2 = (op("resized_crop", scale_low=0.2, scale_high=1.0), op("flip"),
                op("jitter_p", p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
                op("grayscale", p=0.1), op("cutout", size=8))
SUPCON_DATA = dict(dataset="cifar100", source="cifar100", num_classes=100, val_size=500,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=256, optimizer="adamw", grad_clip=0.0)
SUPCON_PRETRAIN = dict(
    model="supcon_resnet18",  # the CIFAR-stem ResNet18 encoder under a 512 -> 128 projection head
    augment=(SUPCON_VIEW1, SUPCON_VIEW2),  # two differently augmented views of every image
    loss="supcon", temperature=0.07,  # Khosla et al.; "supcon_with_self" is the report script's variant
    epochs=100, lr=1e-3, weight_decay=1e-4, label_smoothing=0.0,
    schedule={"name": "warmup_cosine", "warmup": 5, "start_factor": 0.01},  # 5 epochs from 1 % of the rate
)
SUPCON_CLASSIFIER = dict(
    augment=SUPCON_VIEW1,  # the classifier trains on view-1 augmented images, so features change every step
    label_smoothing=0.1, epochs=100, lr=1e-3, weight_decay=5e-4, schedule={"name": "cosine"},
)


def supcon_pretrain(profile: str = "full", seed: int = LEVEL_A_SEED, epochs=None, source=None,
                    loss: str = "supcon") -> RunConfig:
    """Stage 1: the encoder and projection head trained with the supervised contrastive loss."""
    experiment = "a_supcon_pretrain" if loss == "supcon" else f"a_{loss}_pretrain"
    cfg = RunConfig(experiment=experiment, **SUPCON_DATA, **{**SUPCON_PRETRAIN, "loss": loss})
    return _for_profile(cfg, profile, seed, epochs, source, smoke_sizes=(128, 64))


def supcon_classifier(pretrain: RunConfig, head: str = "mlp", epochs=None) -> RunConfig:
    """Stage 2: a classifier (the report's MLP, or a linear probe) on the frozen encoder of `pretrain`."""
    if head not in ("mlp", "linear"):
        raise ValueError(f"Unknown classifier head {head!r}: use mlp (the report's) or linear (a probe).")
    name = pretrain.experiment.removesuffix("_pretrain")  # a_supcon, or a_supcon_with_self: one run id per loss
    cfg = RunConfig(experiment=name if head == "mlp" else f"{name}_linear", model=f"supcon_{head}",
                    # the encoder's run and config: a retrained encoder makes this another run
                    encoder=f"{pretrain.run_id}@{pretrain.fingerprint()}",
                    **{**SUPCON_DATA, "source": pretrain.source, "dataset": pretrain.dataset},
                    **SUPCON_CLASSIFIER, source_path=pretrain.source_path)
    cfg = _for_profile(cfg.replace(synthetic_sizes=pretrain.synthetic_sizes), pretrain.profile, pretrain.seed,
                       epochs, None, smoke_sizes=pretrain.synthetic_sizes)
    # a classifier on a shortened encoder is a shortened result too, whatever its own epochs
    return cfg.replace(shortened=True) if pretrain.shortened else cfg


# Noisy labels (report 4.2.3): the report's ImageNette recipe, and the same on CIFAR-10 with the CIFAR ResNet18.
NOISE_TRAINING = dict(epochs=30, batch_size=256, optimizer="adamw", lr=1e-3, weight_decay=5e-4,
                      schedule={"name": "cosine"}, label_smoothing=0.1, grad_clip=0.0, model_options={},
                      monitor_test=True)  # test accuracy per epoch for the report's Figure 3; never used to select
NOISE_DATA = {
    # train folder -> 9,000 train / 469 validation; val folder = test; 128 px; crop 128 with padding 16 + flip
    "imagenette": dict(model="resnet18_imagenet", source="imagenette", num_classes=10, image_size=128, val_size=469,
                       mean=IMAGENET_MEAN, std=IMAGENET_STD, augment=(op("crop", padding=16), op("flip", p=0.5))),
    # not in the report: CIFAR-10 as the Co-teaching paper used it, with the CIFAR stem and CIFAR augmentation
    "cifar10": dict(model="resnet18", source="cifar10", num_classes=10, val_size=500,
                    mean=CIFAR10_MEAN, std=CIFAR10_STD, augment=(op("crop", padding=4), op("flip", p=0.5))),
}
NOISE_SHORT = {"symmetric": "sym", "symmetric_exclusive": "symx", "pair": "pair"}


def noisy_labels(dataset: str = "imagenette", kind: str = "symmetric", rate: float = 0.3, coteaching: bool = False,
                 ramp_epochs: int = 0, profile: str = "full", seed: int = LEVEL_A_SEED, epochs=None,
                 source=None) -> RunConfig:
    """A run on noisy training labels, with plain cross-entropy or Co-teaching (forget rate = noise rate,
    constant from the first epoch as the report ran it, or ramped over `ramp_epochs` as the paper did)."""
    if dataset not in NOISE_DATA or kind not in NOISE_SHORT:
        raise ValueError(f"Unknown data set {dataset!r} or noise {kind!r}: use one of {', '.join(NOISE_DATA)} "
                         f"and one of {', '.join(NOISE_SHORT)}.")
    method = "coteach" if coteaching else "ce"
    experiment = ("noise_clean" if rate == 0 and not coteaching
                  else f"noise_{NOISE_SHORT[kind]}{round(rate * 100)}_{method}")
    cfg = RunConfig(experiment=experiment, dataset=dataset, **NOISE_DATA[dataset], **NOISE_TRAINING,
                    label_noise={"kind": kind, "rate": rate} if rate else {},
                    coteaching={"forget_rate": rate, "ramp_epochs": ramp_epochs} if coteaching else {})
    return _for_profile(cfg, profile, seed, epochs, source, smoke_sizes=(128, 64))


def cifar10_noise_runs(profile: str = "full", seed: int = LEVEL_A_SEED, epochs=None, source=None) -> dict:
    """The noisy-label runs on CIFAR-10 (not in the report): its 30 % symmetric setting, then the Co-teaching
    paper's settings, 45 % pair and 50 % symmetric, where a noisy label is always one of the other classes."""
    def run(kind="symmetric", rate=0.0, coteaching=False, ramp_epochs=0):
        return noisy_labels("cifar10", kind, rate, coteaching=coteaching, ramp_epochs=ramp_epochs, profile=profile,
                            seed=seed, epochs=epochs, source=source)
    return {
        "no noise": run(),
        "30% symmetric": run("symmetric", 0.3),
        "30% symmetric + Co-teaching": run("symmetric", 0.3, coteaching=True),
        "45% pair": run("pair", 0.45),
        "45% pair + Co-teaching (ramp)": run("pair", 0.45, coteaching=True, ramp_epochs=10),
        "50% symmetric": run("symmetric_exclusive", 0.5),
        "50% symmetric + Co-teaching (ramp)": run("symmetric_exclusive", 0.5, coteaching=True, ramp_epochs=10),
    }


def _for_profile(cfg: RunConfig, profile: str, seed: int, epochs, source, smoke_sizes=(512, 256)) -> RunConfig:
    """Apply the profile, seed and the user's overrides (epochs, data source) to a recipe."""
    changes = {"profile": check_profile(profile), "seed": seed}
    if profile == "smoke":
        changes.update(source="synthetic", epochs=SMOKE_EPOCHS, synthetic_sizes=smoke_sizes)
        if cfg.val_size:
            changes["val_size"] = SMOKE_VAL_SIZE
    if source:
        changes["source"] = source
    if epochs is not None:  # other epochs than the profile's recipe: shortened, another run id, not the report's row
        planned = changes.get("epochs", cfg.epochs)
        changes["epochs"] = int(epochs)
        if changes["epochs"] != planned:
            changes["shortened"] = True
    return cfg.replace(**changes)
