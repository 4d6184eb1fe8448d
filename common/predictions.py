"""A run's test predictions (class and softmax probability per image, at the best and final epochs) and what
is computed from them: per-class accuracy, the confusion matrix and calibration.

One .npz file a run, results/predictions/<run_id>.npz, read with `np.load(path)`: arrays `label`, `best_class`,
`best_prob`, `final_class`, `final_prob` (one entry per test image, in the test set's order) and `classes`.
"""

from pathlib import Path

import numpy as np
import torch

from . import paths
from .config import RunConfig
from .results import ResultsReadError, atomic_path

ECE_BINS = 15  # equal-width confidence bins, as Guo et al. (2017) report the expected calibration error
KEYS = ("label", "best_class", "best_prob", "final_class", "final_prob", "classes")


def predictions_path(run) -> Path:
    """Where a run's predictions lie, from its config or its results row."""
    run_id, profile = (run.run_id, run.profile) if isinstance(run, RunConfig) else (run["run_id"], run["profile"])
    return paths.results_dir(profile) / "predictions" / f"{run_id}.npz"


def write_predictions(path: Path, labels, best: tuple, final: tuple, classes: list) -> None:
    """Store the test labels and (class, probability) at the best and final epochs (about 40 KB for 10,000 images)."""
    dtype = np.uint8 if len(classes) <= 256 else np.uint16
    arrays = {"label": np.asarray(labels, dtype=dtype),
              "best_class": np.asarray(best[0], dtype=dtype), "best_prob": np.asarray(best[1], dtype=np.float16),
              "final_class": np.asarray(final[0], dtype=dtype), "final_prob": np.asarray(final[1], dtype=np.float16),
              "classes": np.array([str(name) for name in classes])}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a file object: savez would append ".npz" to a name
        np.savez_compressed(handle, **arrays)


def read_predictions(path: Path) -> dict:
    """A predictions file as plain arrays (classes as a list of names); a file of another kind is named and refused."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            found = {key: stored[key] for key in KEYS if key in stored}
    except (OSError, ValueError) as err:
        raise ResultsReadError(f"{path} is not a predictions file ({err}): move it away or record the run "
                               "again; nothing was changed.") from None
    missing = [key for key in KEYS if key not in found]
    if missing:
        raise ResultsReadError(f"{path} lacks {', '.join(missing)}: it is not a predictions file of this repository.")
    found["classes"] = [str(name) for name in found["classes"]]
    return found


def recorded_predictions(run):
    """The recorded predictions of a run (its config, or its results row), or None if it has none."""
    path = predictions_path(run)
    return read_predictions(path) if path.exists() else None


@torch.no_grad()
def predicted(logits: torch.Tensor) -> tuple:
    """The most probable class of each row of `logits` and its softmax probability."""
    probs, classes = torch.softmax(logits.float(), dim=1).max(dim=1)
    return classes, probs


def confusion_matrix(labels, predicted_classes, num_classes: int) -> np.ndarray:
    """counts[i, j]: images of true class i predicted as class j."""
    labels, predicted_classes = np.asarray(labels, dtype=np.int64), np.asarray(predicted_classes, dtype=np.int64)
    return np.bincount(labels * num_classes + predicted_classes,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(labels, predicted_classes, num_classes: int) -> np.ndarray:
    """The share of each true class predicted right (NaN for a class with no test image)."""
    counts = confusion_matrix(labels, predicted_classes, num_classes)
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(counts) / totals, np.nan)


def reliability(confidence, correct, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin ((0, 1/bins], ..., ((bins-1)/bins, 1]): images, mean confidence and accuracy."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        accuracy = np.bincount(index, correct, minlength=bins) / count
    return {"edges": np.linspace(0, 1, bins + 1), "count": count, "confidence": mean_confidence,
            "accuracy": accuracy}


def expected_calibration_error(confidence, correct, bins: int = ECE_BINS) -> float:
    """ECE: the gap between accuracy and mean confidence in each bin, weighted by the bin's share of images."""
    table = reliability(confidence, correct, bins)
    used = table["count"] > 0
    gaps = np.abs(table["accuracy"][used] - table["confidence"][used])
    return float((gaps * table["count"][used]).sum() / table["count"].sum())


def at_epoch(stored: dict, which: str = "best") -> tuple:
    """(predicted classes, their probabilities, whether each is right) at the best or final epoch."""
    if which not in ("best", "final"):
        raise ValueError(f"which={which!r}: use 'best' or 'final'.")
    classes = stored[f"{which}_class"].astype(np.int64)
    return classes, stored[f"{which}_prob"].astype(np.float64), classes == stored["label"]
