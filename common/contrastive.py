"""The two stages of supervised contrastive learning as runs: pretrain, then classify on the frozen encoder.

Stage 2's classifier trains on view-1 augmented images (the report's recipe), so the frozen encoder's
features differ every step and are computed in the step (without gradients). The linear probe, the
standard evaluation, uses un-augmented images, so its features are computed once and cached.
"""

import time

import torch
from torch import nn

from . import paths, results
from .config import RunConfig
from .experiment import RunResult, load_split, make_loaders, pick_device, run_experiment
from .models import build_model
from .supcon import FrozenEncoderClassifier, MLPClassifier
from .train import load_checkpoint


class EncoderMissing(RuntimeError):
    """Stage 2 was started before its encoder was pretrained."""


def load_encoder(pretrain: RunConfig, device="cpu") -> nn.Module:
    """The pretrained encoder of a finished (or interrupted) pretraining run, from its last checkpoint."""
    return load_pretrained(pretrain, device).encoder


def load_pretrained(pretrain: RunConfig, device="cpu") -> nn.Module:
    """Encoder and projection head of a pretraining run, from its last checkpoint."""
    path = paths.checkpoints_dir(pretrain.profile) / pretrain.run_id / "last.pt"
    if not path.exists():
        raise EncoderMissing(f"No pretrained encoder at {path}: run the pretraining ({pretrain.run_id}) first.")
    state = load_checkpoint(path, device)
    if state["config_hash"] != pretrain.fingerprint():
        raise EncoderMissing(f"{path} holds another pretraining config: run the pretraining cell again.")
    model = build_model(pretrain.model, pretrain.num_classes, **pretrain.model_options)
    model.load_state_dict(state["model"])
    return model.to(device)


def classifier_builder(pretrain: RunConfig):
    """build(cfg) for run_experiment: the frozen pretrained encoder under the config's head."""
    def build(cfg: RunConfig) -> nn.Module:
        head = MLPClassifier(num_classes=cfg.num_classes) if cfg.model == "supcon_mlp" else nn.Linear(512, cfg.num_classes)
        return FrozenEncoderClassifier(load_encoder(pretrain), head)
    return build


def train_classifier(pretrain: RunConfig, cfg: RunConfig, notebook: str, force: bool = False,
                     progress: bool = True) -> RunResult:
    """Stage 2 as a recorded run: best-validation and final-epoch test accuracy, as every Level A run."""
    return run_experiment(cfg, notebook, force=force, progress=progress, build=classifier_builder(pretrain))


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
                 weight_decay: float = 5e-4, batch_size: int = 256) -> dict:
    """A linear classifier on cached frozen features (no augmentation), tested at its best-validation epoch.

    Recorded as a row of the notebook's results (experiment a_supcon_linear_probe).
    """
    started = time.perf_counter()
    device = pick_device(pretrain.profile)
    cfg = pretrain.replace(augment=(), loss="cross_entropy")  # plain images, plain labels
    train_loader, val_loader, test_loader = make_loaders(cfg, load_split(cfg), device)
    encoder = load_encoder(pretrain, device)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (embed(encoder, loader) for loader in
                                                            (train_loader, val_loader, test_loader))
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
        val_acc = _accuracy(probe, val_x, val_y) if len(val_y) else 0.0
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.clone() for k, v in probe.state_dict().items()})
    final_acc = _accuracy(probe, test_x, test_y)
    probe.load_state_dict(best[2])
    row = {"run_id": f"a_supcon_linear_probe-{pretrain.run_id}", "notebook": notebook,
           "experiment": "a_supcon_linear_probe", "model": "linear probe", "dataset": pretrain.dataset,
           "source": pretrain.source, "profile": pretrain.profile, "seed": pretrain.seed,
           "epochs": epochs, "shortened": pretrain.shortened, "best_epoch": best[1], "val_acc_best": best[0],
           "test_acc_best": _accuracy(probe, test_x, test_y), "test_acc_final": final_acc,
           "params": sum(p.numel() for p in probe.parameters()),
           "wall_seconds": round(time.perf_counter() - started, 1), "config_hash": pretrain.fingerprint(),
           "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    results.upsert_result(paths.results_dir(pretrain.profile) / f"{notebook}.csv", row)
    return row


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def load_classifier_encoder(cfg: RunConfig, device="cpu") -> nn.Module:
    """The encoder of a cross-entropy run (e.g. notebook 03's ResNet18) from its best-validation checkpoint."""
    folder = paths.checkpoints_dir(cfg.profile) / cfg.run_id
    path = next((folder / name for name in ("best.pt", "last.pt") if (folder / name).exists()), None)
    if path is None:
        raise EncoderMissing(f"No checkpoint of {cfg.run_id} in {folder}: run its notebook first.")
    model = build_model(cfg.model, cfg.num_classes, **cfg.model_options)
    model.load_state_dict(load_checkpoint(path, device)["model"])
    model.fc = nn.Identity()  # the 512-d pooled features, as the SupCon encoder gives
    return model.to(device)


def loss_forms(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07):
    """Khosla's loss against the report script's (anchor kept in its own denominator) on one batch's projections.

    Per form: the loss, the norm of its gradient on the projections, and the mean share of each anchor's
    denominator taken by its similarity to itself (exp(1/T), the largest term any row can hold).
    """
    import pandas as pd

    from .supcon import supcon_loss

    lines = []
    for include_self, name in ((False, "Khosla et al. (anchor left out)"), (True, "report script (anchor kept)")):
        f = features.detach().float().requires_grad_(True)
        loss = supcon_loss(f, labels, temperature, include_self=include_self)
        loss.backward()
        logits = f.detach() @ f.detach().T / temperature
        if not include_self:
            logits.fill_diagonal_(float("-inf"))
        share = logits.softmax(1).diagonal().mean() if include_self else torch.tensor(0.0)
        lines.append({"loss form": name, "loss": loss.item(), "gradient norm": f.grad.norm().item(),
                      "self share of the denominator": share.item()})
    return pd.DataFrame(lines).set_index("loss form")
