"""Co-teaching (Han et al., 2018): two networks, each updated on the small-loss samples the other keeps.

Each network ranks the batch by its own per-sample loss and keeps the (1 - forget rate) fraction with the
smallest losses; network 1 is then updated on network 2's selection and network 2 on network 1's, so
each filters label noise for the other. Only network 1 is validated and tested (as in the report).
"""

import math
from typing import NamedTuple

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
    return rate if ramp_epochs <= 0 else rate * min(1.0, (epoch - 1) / ramp_epochs)


def small_loss_selection(losses: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` samples with the smallest losses (no value leaves the device)."""
    return losses.detach().argsort()[:keep]


class CoTeachingStep(NamedTuple):
    """One Co-teaching step: the loss to backpropagate, network 1's logits and each network's picks."""

    loss: torch.Tensor  # network 1's loss + network 2's: one backward gives each network its own term's gradient
    logits: torch.Tensor
    picks1: torch.Tensor
    picks2: torch.Tensor

    @property
    def per_network_loss(self) -> torch.Tensor:
        """The mean of the two networks' losses, detached: the training loss to record (one network's scale)."""
        return self.loss.detach() / 2


def kept_count(batch: int, rate: float) -> int:
    """How many samples each network keeps: floor((1 - rate) * batch), as the Co-teaching paper's code, at least 1."""
    # the epsilon keeps float error from dropping one sample, e.g. (1 - 0.3) * 90 = 62.99999999999999
    return max(1, math.floor((1 - rate) * batch + 1e-9))


def coteaching_step(pair: CoTeachingPair, images, labels, rate: float, label_smoothing: float = 0.0) -> CoTeachingStep:
    """Both networks' Co-teaching losses summed (to backpropagate), network 1's logits and each network's picks."""
    # Network 1's loss is taken on network 2's picks and vice versa. The paper's code steps each network on its
    # own loss with its own optimiser; the networks share no weights, so one backward of the sum gives each the
    # gradient of its own term (the same update while no global-norm clip couples them: the noise recipes clip
    # none). The sum is twice one network's scale: record `per_network_loss`.
    logits1, logits2 = pair.net1(images), pair.net2(images)
    loss1 = F.cross_entropy(logits1.float(), labels, reduction="none", label_smoothing=label_smoothing)
    loss2 = F.cross_entropy(logits2.float(), labels, reduction="none", label_smoothing=label_smoothing)
    keep = kept_count(len(labels), rate)  # from the batch's shape: known without a GPU sync
    picks1, picks2 = small_loss_selection(loss1, keep), small_loss_selection(loss2, keep)
    return CoTeachingStep(loss1[picks2].mean() + loss2[picks1].mean(), logits1, picks1, picks2)
