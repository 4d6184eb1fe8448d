"""Seeded label noise for the training labels: symmetric (the report's 'uniform'), exclusive and pair."""

import numbers

import torch

KINDS = ("symmetric", "symmetric_exclusive", "pair")


def add_label_noise(labels, rate, kind: str = "symmetric", num_classes=None, seed: int = 0):
    """Pick each label with probability `rate` and corrupt it as `kind` says; returns (noisy, changed mask)."""
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D integer tensor of class indices, not {labels.dtype} of shape "
                         f"{tuple(labels.shape)}: pass the training labels, e.g. split.train_y.")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
        raise ValueError(f"Noise rate {rate!r} is not a fraction: use a number between 0 and 1, e.g. 0.3.")
    if kind not in KINDS:
        raise ValueError(f"Unknown noise kind {kind!r}: use one of {', '.join(KINDS)}.")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if len(labels) else 0
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ValueError(f"Labels must lie in 0..{num_classes - 1} for num_classes={num_classes}: "
                         "pass the data set's number of classes.")
    if rate == 0:
        return labels.clone(), torch.zeros_like(labels, dtype=torch.bool)
    if num_classes < 2:
        raise ValueError(f"Label noise needs at least 2 classes, not {num_classes}: pass num_classes.")

    clean = labels.cpu()
    gen = torch.Generator().manual_seed(seed)  # its own generator: the global RNG is neither used nor moved
    chosen = torch.rand(len(clean), generator=gen) < rate  # the same draw for every kind, given the seed
    if kind == "symmetric":  # any class, the true one included
        new = torch.randint(0, num_classes, (len(clean),), generator=gen)
    elif kind == "symmetric_exclusive":  # one of the other classes
        new = (clean + torch.randint(1, num_classes, (len(clean),), generator=gen)) % num_classes
    else:  # pair: the next class
        new = (clean + 1) % num_classes
    noisy = torch.where(chosen, new.to(clean.dtype), clean)
    return noisy.to(labels.device), (noisy != clean).to(labels.device)


def noise_summary(clean, noisy, num_classes=None) -> dict:
    """The fraction of labels that changed, overall and per clean class (NaN for an absent class)."""
    clean, noisy = torch.as_tensor(clean).cpu(), torch.as_tensor(noisy).cpu()
    if clean.shape != noisy.shape or clean.dim() != 1:
        raise ValueError(f"clean {tuple(clean.shape)} and noisy {tuple(noisy.shape)} labels must be 1-D "
                         "and of the same length: pass the labels before and after add_label_noise.")
    changed = clean != noisy
    if num_classes is None:
        num_classes = int(torch.cat([clean, noisy]).max()) + 1 if len(clean) else 0
    counts = torch.bincount(clean, minlength=num_classes).double()
    per_class = torch.bincount(clean[changed], minlength=num_classes).double() / counts
    return {"n": len(clean), "changed": int(changed.sum()),
            "rate": changed.double().mean().item() if len(clean) else 0.0,
            "per_class": per_class.tolist()}
