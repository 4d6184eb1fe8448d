"""The two stages of supervised contrastive learning as runs: pretrain, then classify on the frozen encoder.

Stage 2's classifier trains on view-1 augmented images (the report's recipe), so the frozen encoder's
features differ every step and are computed in the step (without gradients). The linear probe, the
standard evaluation, uses un-augmented images, so its features are computed once and cached.
"""

import time

import pandas as pd
import torch
from torch import nn

from . import checkpoints, results
from .config import RunConfig
from .device import pick_device
from .experiment import build_for, load_split, make_loaders
from .supcon import supcon_loss

EncoderMissing = checkpoints.CheckpointMissing  # stage 2 started before its encoder was pretrained


def load_encoder(pretrain: RunConfig, device="cpu") -> nn.Module:
    """The pretrained encoder of a finished (or interrupted) pretraining run, from its last checkpoint."""
    model = build_for(pretrain, device)
    model.encoder.load_state_dict(checkpoints.load_encoder(f"{pretrain.run_id}@{pretrain.fingerprint()}",
                                                           pretrain.profile, device))
    return model.encoder


@torch.no_grad()
def embed(encoder: nn.Module, loader) -> tuple:
    """Features and labels of every image of an un-augmented loader, in order (eval mode)."""
    encoder.eval()
    features, labels = [], []
    for images, batch_labels in loader:
        features.append(encoder(images).float())
        labels.append(batch_labels)
    return torch.cat(features), torch.cat(labels)


def linear_probe(pretrain: RunConfig, notebook: str, epochs: int = 100, lr: float = 1e-3,
                 weight_decay: float = 5e-4, batch_size: int = 256, allow_cpu: bool = False) -> dict:
    """A linear classifier on cached frozen features (no augmentation), tested at its best-validation epoch and
    recorded as a row of the notebook's results (its experiment: probe_experiment)."""
    started, commit = time.perf_counter(), results.git_commit()
    device = pick_device(pretrain.profile, allow_cpu)
    cfg = pretrain.replace(augment=(), loss="cross_entropy")  # plain images, plain labels
    loaders = make_loaders(cfg, load_split(cfg), device)
    encoder = load_encoder(pretrain, device)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (embed(encoder, loader) for loader in loaders)
    torch.manual_seed(pretrain.seed)
    probe = nn.Linear(train_x.shape[1], pretrain.num_classes).to(device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    gen = torch.Generator(device=device).manual_seed(pretrain.seed)
    best = (-1.0, 0, None)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_y), device=device, generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(probe(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        val_acc = _probe_accuracy(probe, val_x, val_y) if len(val_y) else 0.0
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.clone() for k, v in probe.state_dict().items()})
    final_acc = _probe_accuracy(probe, test_x, test_y)
    probe.load_state_dict(best[2])
    probe_cfg = pretrain.replace(experiment=probe_experiment(pretrain), model="linear_probe", augment=(),
                                 loss="cross_entropy", epochs=epochs, lr=lr, weight_decay=weight_decay,
                                 batch_size=batch_size, encoder=f"{pretrain.run_id}@{pretrain.fingerprint()}",
                                 schedule={"name": "cosine"}, shortened=pretrain.shortened)
    row = results.make_row(
        probe_cfg, notebook, device, "fp32", commit, best_epoch=best[1], val_acc_best=best[0],
        test_acc_best=_probe_accuracy(probe, test_x, test_y), test_loss_best=float("nan"),
        test_acc_final=final_acc, test_loss_final=float("nan"),
        params=sum(p.numel() for p in probe.parameters()), wall_seconds=round(time.perf_counter() - started, 1),
        train_images_per_s=float("nan"), noise_changed=float("nan"))
    results.upsert_result(results.results_csv(probe_cfg, notebook), row)
    return row


def probe_experiment(pretrain: RunConfig) -> str:
    """The experiment of the linear probe on `pretrain`'s encoder: a_supcon_linear_probe, one name per loss."""
    return pretrain.experiment.replace("_pretrain", "_linear_probe")


@torch.no_grad()
def _probe_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def load_classifier_encoder(cfg: RunConfig, device="cpu") -> nn.Module:
    """The encoder of a cross-entropy run (e.g. notebook 03's ResNet18) from its best-validation checkpoint."""
    model = build_for(cfg, device)
    model.load_state_dict(checkpoints.load_weights(cfg, "best", device))
    model.fc = nn.Identity()  # the 512-d pooled features, as the SupCon encoder gives
    return model


def loss_forms(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07):
    """Khosla's loss against the report script's (anchor kept in its own denominator) on one batch's projections:
    each form's loss, its gradient's norm, and the mean share of an anchor's denominator that its own exp(1/T) takes
    (the largest term any row can hold)."""
    lines = []
    for include_self, name in ((False, "Khosla et al. (anchor left out)"), (True, "report script (anchor kept)")):
        f = features.detach().float().requires_grad_(True)
        loss = supcon_loss(f, labels, temperature, include_self=include_self)
        loss.backward()
        logits = f.detach() @ f.detach().T / temperature
        share = logits.softmax(1).diagonal().mean() if include_self else torch.tensor(0.0)
        lines.append({"loss form": name, "loss": loss.item(), "gradient norm": f.grad.norm().item(),
                      "self share of the denominator": share.item()})
    return pd.DataFrame(lines).set_index("loss form")
