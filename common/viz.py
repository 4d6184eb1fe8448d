"""Every plot of the notebooks, from data (images, histories, traces), never from a run's config."""

import matplotlib.pyplot as plt
import pandas as pd
import torch

from .augment import build_augment
from .predictions import at_epoch, confusion_matrix, expected_calibration_error, per_class_accuracy, reliability
from .schedules import lr_trace


def augmented_grid(images: torch.Tensor, names: list, augment, title: str = "", n_views: int = 4, seed: int = 0):
    """Row 0: images (float, [0, 1]) titled by class name; rows 1..n_views: the same images through `augment`
    (a recipe's op(...) steps), as in training."""
    chain = build_augment(augment)
    gen = torch.Generator().manual_seed(seed)
    rows = [images] + [chain(images, gen) if chain else images for _ in range(n_views)]  # views drawn in turn
    fig, axes = plt.subplots(len(rows), len(images), figsize=(1.3 * len(images), 1.3 * len(rows)), squeeze=False)
    for r, batch in enumerate(rows):
        for c, image in enumerate(batch):
            axes[r, c].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            axes[r, c].set(xticks=[], yticks=[])
            if r == 0:
                axes[r, c].set_title(names[c], fontsize=8)
        axes[r, 0].set_ylabel("original" if r == 0 else f"view {r}", fontsize=8)
    steps = ", ".join(step["op"] for step in augment) if augment else "none"
    fig.suptitle(f"{title}: training images and their augmentation ({steps})" if title else steps, fontsize=9)
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame, title: str = ""):
    """Loss and accuracy against epoch: train, and validation and test where recorded; returns the figure."""
    history = pd.DataFrame(history)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(history["epoch"], history[f"train_{metric}"], marker=".", label="train")
        for split, name in (("val", "validation"), ("test", "test (monitored)")):
            column = f"{split}_{metric}"
            if column in history and history[column].notna().any():
                ax.plot(history["epoch"], history[column], marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_lr_schedules(specs: dict, steps_per_epoch: int, epochs: int, lr: float, zoom_steps: int = 200):
    """Learning rate against training step for each schedule, stepped per epoch and per batch (as the report's
    code stepped it): the whole run above, its first `zoom_steps` below."""
    fig, axes = plt.subplots(2, len(specs), figsize=(4.2 * len(specs), 6), squeeze=False)
    for column, (name, spec) in enumerate(specs.items()):
        written = lr_trace(spec, steps_per_epoch, epochs, lr)
        as_run = lr_trace({**spec, "stepped_every": "batch"}, steps_per_epoch, epochs, lr)
        for row, last in ((0, len(written)), (1, zoom_steps)):
            ax = axes[row, column]
            ax.plot(range(last), as_run[:last], color="tab:orange", lw=0.6, label="as run: per batch")
            ax.plot(range(last), written[:last], color="tab:blue", lw=1.6, label="per epoch")
            if sorted(as_run)[len(as_run) // 2] < lr * 1e-3:  # step decay falls by orders of magnitude
                ax.set_yscale("log")
                ax.set_ylim(lr * 1e-12, lr * 3)
            ax.set_xlabel("training step" + (f" (the first {zoom_steps})" if row else ""))
            ax.grid(alpha=0.3)
        axes[0, column].set_title(name)
    for row in range(2):
        axes[row, 0].set_ylabel("learning rate")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_step_trace(trace, title: str = ""):
    """Training loss and learning rate of every step of a short run."""
    fig, ax_loss = plt.subplots(figsize=(8, 3.4))
    ax_loss.plot(trace["step"], trace["loss"], color="tab:blue", lw=0.8)
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss (per batch)", color="tab:blue")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(trace["step"], trace["lr"], color="tab:red")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate", color="tab:red")
    ax_loss.grid(alpha=0.3)
    if title:
        ax_loss.set_title(title)
    fig.tight_layout()
    return fig


def plot_overlay(histories: dict, metric: str = "test_acc", title: str = ""):
    """One metric against epoch for several runs, one line each (label -> history frame), the legend beside."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    colours = plt.get_cmap("tab10").colors  # ten colours, then the same ten dashed, then dotted
    for i, (label, history) in enumerate(histories.items()):
        ax.plot(history["epoch"], history[metric], marker=".", ms=3, color=colours[i % 10],
                ls=("-", "--", ":", "-.")[i // 10 % 4], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ").replace("acc", "accuracy"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_history_grid(histories: dict, columns: int = 3):
    """Loss curves, one small panel per label on one shared loss scale; a label may hold several seeds' histories
    (label -> a history frame or a list of them), drawn in the same colours, and the legend sits above the panels."""
    rows = -(-len(histories) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False, sharey=True)
    splits = {"train_loss": "train", "val_loss": "validation", "test_loss": "test"}
    drawn = {}
    for ax, (label, runs) in zip(axes.flat, histories.items()):
        for history in runs if isinstance(runs, (list, tuple)) else [runs]:
            for (column, name), colour in zip(splits.items(), plt.get_cmap("tab10").colors):
                if column in history and history[column].notna().any():
                    drawn[name], = ax.plot(history["epoch"], history[column], color=colour, lw=1.2, alpha=0.8)
        ax.set_title(label if len(label) <= 40 else label[:39] + "…", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss")
    for index, ax in enumerate(axes.flat):
        if index >= len(histories):
            ax.axis("off")
        elif index + columns >= len(histories):  # the lowest panel of its column
            ax.set_xlabel("epoch")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room above the panels for the legend
    names = [name for name in splits.values() if name in drawn]
    fig.legend([drawn[name] for name in names], names, loc="upper center", ncol=len(names), frameon=False)
    return fig


def plot_predictions(stored: dict, which: str = "best", title: str = ""):
    """A run's test predictions: per-class accuracy, the confusion matrix (rows: true class) and the reliability
    diagram with the expected calibration error (15 equal-width bins)."""
    names, labels = stored["classes"], stored["label"]
    classes, confidence, right = at_epoch(stored, which)
    counts = confusion_matrix(labels, classes, len(names))
    fig, (ax_class, ax_conf, ax_rel) = plt.subplots(1, 3, figsize=(15, 4.6),
                                                    gridspec_kw={"width_ratios": [1, 1.25, 1]})
    ax_class.barh(range(len(names)), per_class_accuracy(labels, classes, len(names)), color="tab:blue")
    ticks = names if len(names) <= 20 else [""] * len(names)  # a hundred names would only overlap
    ax_class.set_yticks(range(len(names)), ticks, fontsize=8)
    ax_class.invert_yaxis()
    ax_class.set_xlim(0, 1)
    ax_class.axvline(right.mean(), color="k", ls="--", lw=1)
    ax_class.set_xlabel(f"test accuracy (dashed: all classes, {right.mean():.4f})")
    image = ax_conf.imshow(counts / counts.sum(axis=1, keepdims=True).clip(min=1), cmap="Blues", vmin=0, vmax=1)
    ax_conf.set_xticks(range(len(names)), ticks, rotation=60, ha="right", fontsize=7)
    ax_conf.set_yticks(range(len(names)), ticks, fontsize=7)
    ax_conf.set_xlabel("predicted class")
    ax_conf.set_ylabel("true class")
    fig.colorbar(image, ax=ax_conf, fraction=0.046, label="share of the true class")
    table = reliability(confidence, right)
    used = table["count"] > 0
    centres = (table["edges"][:-1] + table["edges"][1:]) / 2
    ax_rel.bar(centres[used], table["accuracy"][used], width=1 / len(centres), edgecolor="k", lw=0.5,
               color="tab:blue", label="accuracy in the bin")
    ax_rel.plot([0, 1], [0, 1], color="tab:red", ls="--", lw=1, label="calibrated")
    ax_rel.set(xlim=(0, 1), ylim=(0, 1))
    ax_rel.set_xlabel("confidence (softmax probability of the predicted class)")
    ax_rel.set_ylabel("accuracy")
    ax_rel.set_title(f"ECE {expected_calibration_error(confidence, right):.4f} (15 bins)", fontsize=9)
    ax_rel.legend(fontsize=7, loc="upper left")
    epoch = "best-validation" if which == "best" else "final"
    fig.suptitle(f"{title + ': ' if title else ''}test predictions at the {epoch} epoch", fontsize=10)
    fig.tight_layout()
    return fig


def plot_embeddings(panels: dict, classes=None, class_names=None, n_classes: int = 6, seed: int = 0):
    """2-D PCA of features for a few classes, one panel per encoder (label -> (features, labels))."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4), squeeze=False)
    if classes is None:  # the same few classes in every panel
        present = next(iter(panels.values()))[1].cpu().unique()
        classes = present[torch.randperm(len(present), generator=torch.Generator().manual_seed(seed))[:n_classes]]
    for ax, (label, (features, labels)) in zip(axes.flat, panels.items()):
        features, labels = features.float().cpu(), labels.cpu()
        keep = torch.isin(labels, torch.as_tensor(classes))
        # principal axes of these classes' features: the plane in which they spread most
        _, _, v = torch.pca_lowrank(features[keep], q=2, center=True)
        points = (features[keep] - features[keep].mean(0)) @ v[:, :2]
        for c in classes:
            mine = labels[keep] == c
            name = class_names[int(c)] if class_names else f"class {int(c)}"
            ax.scatter(points[mine, 0], points[mine, 1], s=6, alpha=0.6, label=name)
        ax.set_title(label, fontsize=9)
        ax.set(xticks=[], yticks=[])
    axes.flat[0].legend(fontsize=7, markerscale=2)
    fig.suptitle("test-set features, first two principal components", fontsize=9)
    fig.tight_layout()
    return fig


def plot_memorisation(histories: dict):
    """Training accuracy against the noisy labels and against the true ones, per run (label -> history)."""
    fig, axes = plt.subplots(1, len(histories), figsize=(4.6 * len(histories), 3.6), squeeze=False, sharey=True)
    for ax, (label, history) in zip(axes.flat, histories.items()):
        ax.plot(history["epoch"], history["train_acc"], label="against the noisy labels")
        ax.plot(history["epoch"], history["train_acc_clean"], label="against the true labels")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("training accuracy")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_label_precision(histories: dict, clean_share: dict = None):
    """Share of truly clean samples among those each Co-teaching network kept, per epoch."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, history in histories.items():
        line, = ax.plot(history["epoch"], history["label_precision_1"], marker=".", label=f"{label}, network 1")
        ax.plot(history["epoch"], history["label_precision_2"], ls="--", color=line.get_color(), label="network 2")
        if clean_share and label in clean_share:  # what keeping samples at random would give
            ax.axhline(clean_share[label], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("clean share of the kept samples")
    ax.set_title("label precision of Co-teaching's selection (dotted: the clean share of all labels)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_position_similarity(pos_embedding, grid: int = 8):
    """Cosine similarity of each patch's learned position embedding with every other patch's, one small map
    per patch laid out where the patch sits: 2-D structure shows as a bright spot around each position."""
    patches = pos_embedding.detach().float().cpu().reshape(-1, pos_embedding.shape[-1])[-grid * grid:]  # no CLS
    unit = torch.nn.functional.normalize(patches, dim=1)
    similarity = (unit @ unit.T).view(grid, grid, grid, grid)
    fig, axes = plt.subplots(grid, grid, figsize=(7, 7))
    for row in range(grid):
        for col in range(grid):
            image = axes[row, col].imshow(similarity[row, col], vmin=-1, vmax=1, cmap="viridis")
            axes[row, col].set(xticks=[], yticks=[])
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    fig.suptitle("position embedding similarity: each map is one patch against all 64", fontsize=9)
    return fig
