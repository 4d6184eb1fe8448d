"""The report's published numbers: one table, joined with our runs by (experiment, dataset)."""

import math

import pandas as pd

# table, row label as the report prints it, our experiment name, data set, test accuracy, test loss.
# Source: the report's Tables 1-4 and text; each row with its place in the report in docs/published-numbers.md.
PUBLISHED = [
    ("Level E", "VGG basic", "e_basic", "cifar10", 0.8392, None),
    ("Level E", "label smoothing + Cutout", "e_ls_cutout", "cifar10", 0.8310, None),
    ("Level E", "strided-conv downsampling", "e_strided", "cifar10", 0.8158, 0.5455),
    ("Level E", "global average pooling head", "e_gap", "cifar10", 0.8426, None),
    ("Level E", "all combined", "e_combined", "cifar10", 0.7945, None),
    ("Table 4", "warm-up + cosine annealing", "e_warmup_cosine", "cifar10", 0.7997, None),
    ("Table 4", "step decay", "e_step_decay", "cifar10", 0.3079, None),
    ("Table 4", "cosine annealing with restarts", "e_cosine_restarts", "cifar10", 0.8162, None),
    ("Table 1", "Baseline ResNet18", "a_resnet18", "cifar10", 0.9192, None),
    ("Table 1", "Baseline ResNet18", "a_resnet18", "cifar100", 0.6889, 0.6448),
    ("Table 1", "SE + ResNet18", "a_se_resnet18", "cifar10", 0.9203, None),
    ("Table 1", "SE + ResNet18", "a_se_resnet18", "cifar100", 0.7012, None),
    ("Table 1", "ConvNeXt", "a_convnext", "cifar10", 0.9159, None),
    ("Table 1", "ConvNeXt", "a_convnext", "cifar100", 0.7077, None),
    ("Table 2", "No noise", "noise_clean", "imagenette", 0.8400, 0.9287),
    ("Table 2", "30% noise", "noise_sym30_ce", "imagenette", 0.7192, 1.2990),
    ("Table 2", "30% noise + Co-teaching", "noise_sym30_coteach", "imagenette", 0.7842, 0.9818),
    # not in the report: its Table 2 settings and the Co-teaching paper's on CIFAR-10 (our runs only)
    ("Noise on CIFAR-10", "No noise", "noise_clean", "cifar10", math.nan, None),
    ("Noise on CIFAR-10", "30% symmetric noise", "noise_sym30_ce", "cifar10", math.nan, None),
    ("Noise on CIFAR-10", "30% symmetric noise + Co-teaching", "noise_sym30_coteach", "cifar10", math.nan, None),
    ("Noise on CIFAR-10", "45% pair noise", "noise_pair45_ce", "cifar10", math.nan, None),
    ("Noise on CIFAR-10", "45% pair noise + Co-teaching", "noise_pair45_coteach", "cifar10", math.nan, None),
    ("Noise on CIFAR-10", "50% symmetric noise", "noise_sym50_ce", "cifar10", math.nan, None),
    ("Noise on CIFAR-10", "50% symmetric noise + Co-teaching", "noise_sym50_coteach", "cifar10", math.nan, None),
    ("Table 3", "ResNet18", "a_resnet18", "cifar100", 0.6889, 0.6448),
    ("Table 3", "ViT", "a_vit", "cifar100", 0.6276, 0.8876),
    ("SupCon", "cross-entropy ResNet18 (the baseline)", "a_resnet18", "cifar100", 0.6889, 0.6448),
    ("SupCon", "SupCon pretraining + MLP classifier", "a_supcon", "cifar100", 0.7120, None),
]
TABLES = ["Level E", "Table 4", "Table 1", "Table 2", "Noise on CIFAR-10", "Table 3", "SupCon"]


def published_table() -> pd.DataFrame:
    """Every published number as a frame (columns table, row, experiment, dataset, acc, loss)."""
    return pd.DataFrame(PUBLISHED, columns=["table", "row", "experiment", "dataset", "acc", "loss"])


def published_accuracy(experiment: str, dataset: str) -> float:
    """The report's test accuracy for one experiment on one data set."""
    table = published_table()
    match = table[(table["experiment"] == experiment) & (table["dataset"] == dataset)]
    if match.empty:
        raise KeyError(f"The report publishes no number for {experiment!r} on {dataset!r}.")
    return float(match["acc"].iloc[0])
