"""Supervised contrastive pretraining (Khosla et al. 2020): the loss, the projection head, the heads of stage 2.

Feature layout: the loss takes the projections of V views of a batch of B images stacked view by view,
V * B rows: [view 1 of images 0..B-1; view 2 of images 0..B-1; ...], which is what the model returns for
torch.cat([view1, view2]), with the B labels of the images once (not repeated per view).
"""

import torch
import torch.nn.functional as F
from torch import nn


def supcon_loss(features, labels, temperature: float = 0.07, base_temperature: float = 0.07,
                include_self: bool = False):
    """supcon_loss_fp32 of the features in fp32 with autocast off, whatever autocast the caller runs under."""
    # autocast would run the similarity matmul in bf16, whose 8-bit mantissa rounds logits of up to 1 / T
    # (14 at T = 0.07) coarsely inside the softmax; a .float() on the input alone does not stop autocast
    with torch.autocast(features.device.type, enabled=False):
        return supcon_loss_fp32(features.float(), labels, temperature, base_temperature, include_self)


def supcon_loss_fp32(features, labels, temperature: float = 0.07, base_temperature: float = 0.07,
                     include_self: bool = False):
    """SupCon "out" loss of (V * B, D) L2-normalised projections (views stacked, see above) and B labels.

    Every row is an anchor; its positives are all other rows with its label (the other views of its own image
    included); its log-softmax runs over every other row, or over every row with include_self=True (the report
    script's variant: the anchor's similarity to itself stays in the denominator, though never a positive).
    Per anchor: -(temperature / base_temperature) * the mean log-softmax of its positives; the loss is the
    mean over every anchor, one without a positive adding 0 (0, still with a gradient, when none has one)."""
    n = len(features)  # features: (n, d) = (V * B, d), unit rows; labels: (B,)
    if labels.dim() != 1 or len(labels) == 0 or n % len(labels) != 0:
        raise ValueError(f"supcon_loss: {n} feature rows are not a whole number of views of "
                         f"{tuple(labels.shape)} labels; stack the views as [view1; view2] and pass B labels.")
    labels = labels.repeat(n // len(labels))  # (n,): row k is image k mod B
    logits = features @ features.T / temperature  # (n, n): every anchor's cosine similarity to every row, / T
    itself = torch.eye(n, dtype=torch.bool, device=features.device)  # (n, n): each anchor with itself
    positive = (labels.view(-1, 1) == labels.view(1, -1)) & ~itself  # (n, n): same label, another row
    in_denominator = torch.ones_like(itself) if include_self else ~itself  # (n, n): the softmax's terms
    # left-out entries become -inf before exp, so they give exp = 0 and a zero gradient (a 0/1 mask multiplied
    # after exp would meet exp(large) = inf and make 0 * inf = NaN)
    kept = logits.masked_fill(~in_denominator, float("-inf"))  # (n, n)
    # subtract each row's largest kept logit so exp stays finite at any temperature; it cancels in the
    # log-softmax, so no gradient needs to flow through it, and the sum holds a 1, so its log is finite
    row_max = kept.amax(1, keepdim=True).detach()  # (n, 1)
    log_denominator = (kept - row_max).exp().sum(1, keepdim=True).log() + row_max  # (n, 1)
    log_prob = logits - log_denominator  # (n, n): log-softmax of each row over its denominator's terms
    # an anchor without a positive (possible with one view only) gets 0 / 1 and still counts in the mean, as in
    # Khosla et al.'s SupConLoss (HobbitLong/SupContrast, its mask_pos_pairs guard); tensors only, no GPU wait
    mean_positive = (log_prob * positive).sum(1) / positive.sum(1).clamp_min(1)  # (n,): per anchor
    return (-(temperature / base_temperature) * mean_positive).mean()  # (): the mean over the n anchors


class ProjectionHead(nn.Module):
    """Linear in->hidden, BatchNorm, ReLU, linear hidden->out without bias, then L2-normalised."""

    def __init__(self, in_dim: int = 512, hidden: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_dim, bias=False))

    def forward(self, x):
        return F.normalize(self.net(x), dim=1)


def encoder_features(model: nn.Module) -> nn.Module:
    """The model without its classifier head (torchvision ResNets: fc -> Identity), returning pooled features."""
    if not isinstance(getattr(model, "fc", None), nn.Module):
        raise ValueError(f"encoder_features needs a model with an `fc` head (a ResNet from build_model), "
                         f"not a {type(model).__name__}.")
    model.fc = nn.Identity()  # a ResNet pools and flattens before fc, so it now returns 512-d vectors
    return model


class SupConModel(nn.Module):
    """Encoder then projection head: forward gives unit-norm projections, features() the encoder's output."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def features(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.head(self.encoder(x))


class MLPClassifier(nn.Sequential):
    """Stage-2 classifier on frozen features: linear, BatchNorm, ReLU, dropout, linear to the classes."""

    def __init__(self, in_dim: int = 512, hidden: int = 512, num_classes: int = 100, dropout: float = 0.3):
        super().__init__(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, num_classes))


class FrozenEncoderClassifier(nn.Module):
    """A trained encoder, frozen (eval mode, no gradients), under a trainable head (stage 2)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder.requires_grad_(False), head
        self.encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # its BatchNorm statistics stay those of pretraining
        return self

    def forward(self, x):
        with torch.no_grad():
            features = self.encoder(x)
        return self.head(features.float())
