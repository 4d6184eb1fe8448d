"""Co-teaching (Han et al., 2018): two networks, each updated on the small-loss samples the other keeps.

Each network ranks the batch by its own per-sample loss and keeps the (1 - forget rate) fraction with the
smallest losses; network 1 is then updated on network 2's selection and network 2 on network 1's, so
each filters label noise for the other. Only network 1 is validated and tested (as in the report).
"""

import torch
import torch.nn.functional as F
from torch import nn


class CoTeachingPair(nn.Module):
    """Two networks of one architecture; forward (evaluation) is network 1's."""

    def __init__(self, net1: nn.Module, net2: nn.Module):
        super().__init__()
        self.net1, self.net2 = net1, net2

    def forward(self, x):
        return self.net1(x)


def forget_rate(epoch: int, rate: float, ramp_epochs: int = 0) -> float:
    """The fraction of each batch dropped in an epoch (1-based): the paper's linear ramp from 0 over
    `ramp_epochs` epochs, or the report's constant `rate` from the first epoch when ramp_epochs is 0."""
    if ramp_epochs <= 0:
        return rate
    return rate * min(1.0, (epoch - 1) / ramp_epochs)


def small_loss_selection(losses: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` samples with the smallest losses (no value leaves the device)."""
    return losses.detach().argsort()[:keep]


def coteaching_step(pair: CoTeachingPair, images, labels, rate: float, label_smoothing: float = 0.0):
    """The summed Co-teaching loss of both networks and the two selections (each network's own picks).

    Network 1's loss is taken on network 2's picks and vice versa; the two networks share no weights, so
    one backward of the sum gives each exactly the gradient of its own term.
    """
    logits1, logits2 = pair.net1(images), pair.net2(images)
    loss1 = F.cross_entropy(logits1.float(), labels, reduction="none", label_smoothing=label_smoothing)
    loss2 = F.cross_entropy(logits2.float(), labels, reduction="none", label_smoothing=label_smoothing)
    keep = max(1, round((1 - rate) * len(labels)))  # from the batch's shape: known without a GPU sync
    picks1, picks2 = small_loss_selection(loss1, keep), small_loss_selection(loss2, keep)
    loss = loss1[picks2].mean() + loss2[picks1].mean()
    return loss, logits1, picks1, picks2
