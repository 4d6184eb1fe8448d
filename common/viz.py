"""Pictures of the data: a grid of training images as the augmentation pipeline shows them."""

import matplotlib.pyplot as plt
import torch

from .augment import build_augment
from .experiment import load_split


def augmented_grid(cfg, n_images: int = 8, n_views: int = 4, seed: int = 0):
    """Row 0: original training images; rows 1..n_views: the same images augmented as in training."""
    split = load_split(cfg)
    images = split.train_x[:n_images].float() / 255
    augment = build_augment(cfg.augment)
    rows = [images]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n_views):
        rows.append(augment(images, gen) if augment else images)
    fig, axes = plt.subplots(len(rows), n_images, figsize=(1.3 * n_images, 1.3 * len(rows)), squeeze=False)
    for r, batch in enumerate(rows):
        for c, image in enumerate(batch):
            axes[r, c].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(split.classes[int(split.train_y[c])], fontsize=8)
        axes[r, 0].set_ylabel("original" if r == 0 else f"view {r}", fontsize=8)
    fig.suptitle(f"{cfg.source}: training images and their augmentations {list(cfg.augment)}", fontsize=9)
    fig.tight_layout()
    return fig
