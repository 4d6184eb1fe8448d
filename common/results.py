"""Run records on disk: the results CSV row, the per-epoch history CSV and the curves PNG."""

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

import pandas as pd

# One row per run in results/<notebook>.csv; the summary reads these columns.
RESULT_FIELDS = [
    "run_id", "notebook", "experiment", "model",
    "dataset",  # the report's data set the run stands for: cifar10 | cifar100 | imagenette
    "source",  # the images it trained on: cifar10 (original files), imagefolder:NAME-DIGEST, synthetic, ...
    "profile", "seed", "epochs",
    "shortened",  # True: trained for fewer (or more) epochs than the recipe (--epochs)
    "best_epoch", "val_acc_best", "test_acc_best", "test_loss_best",
    "test_acc_final", "test_loss_final",  # test losses are plain cross-entropy, label smoothing or not
    "params", "wall_seconds", "train_images_per_s", "noise_changed", "device",
    "precision",  # what the forward pass computed in: fp32, bf16 or fp16 (autocast)
    "torch", "git_commit", "config_hash", "finished_at",
]
TEXT_FIELDS = ["run_id", "notebook", "experiment", "model", "dataset", "source", "profile",
               "device", "precision", "torch", "git_commit", "config_hash", "finished_at"]  # never parsed as numbers
HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr",
                  "seconds", "train_seconds",
                  # noisy-label runs: training accuracy against the clean labels, and the share of truly clean
                  # samples among those each Co-teaching network kept
                  "train_acc_clean", "label_precision_1", "label_precision_2",
                  "compile_seconds"]  # torch.compile's warm-up, left out of train_seconds


class ResultsWriteError(RuntimeError):
    """A results file could not be written; the existing file is untouched."""


def _write_error(path: Path, err: OSError) -> ResultsWriteError:
    return ResultsWriteError(
        f"Cannot write {path}: {err.strerror or err}. Free space or make {Path(path).parent} writable; "
        "nothing already written was changed.")


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; on success rename it over `path` in one step."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise _write_error(path, err) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Busy(RuntimeError):
    """Another process holds the lock and the caller chose not to wait."""


@contextlib.contextmanager
def locked(path: Path, wait: bool = True):
    """Hold an exclusive lock beside `path` so concurrent writers never lose a row; with wait=False,
    raise Busy at once if another process holds it."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "w")
    except OSError as err:
        raise _write_error(path, err) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{lock_path} is held by another process.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_results(path: Path) -> pd.DataFrame:
    """The rows of one results CSV (an empty frame with the known columns if it is missing)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=RESULT_FIELDS)
    frame = pd.read_csv(path, dtype={field: str for field in TEXT_FIELDS})
    frame = frame.reindex(columns=list(dict.fromkeys(RESULT_FIELDS + list(frame.columns))))
    frame["shortened"] = shortened_flags(frame["shortened"])
    return frame


def shortened_flags(values) -> pd.Series:
    """The "shortened" column as booleans: True, "True" or 1 are shortened; False or missing are not."""
    return pd.Series(values, dtype=object).map(lambda value: str(value).strip().lower() in ("true", "1", "1.0"))


def upsert_result(path: Path, row: dict) -> None:
    """Add `row` to the results CSV, replacing an earlier row of the same run id."""
    with locked(path):
        frame = read_results(path)
        frame = frame[frame["run_id"] != row["run_id"]]
        new = pd.DataFrame([{field: row.get(field) for field in RESULT_FIELDS}])
        frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
        write_csv(frame, path)


def find_result(path: Path, run_id: str, config_hash: str):
    """The recorded row of a finished run with this id and config, or None."""
    frame = read_results(path)
    match = frame[(frame["run_id"] == run_id) & (frame["config_hash"] == config_hash)]
    return None if match.empty else match.iloc[-1].to_dict()


def write_history(path: Path, history: list) -> None:
    write_csv(pd.DataFrame(history, columns=HISTORY_FIELDS), path)


def read_history(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def plot_history(history: pd.DataFrame, title: str = ""):
    """Loss and accuracy against epoch: train, and validation and test where recorded; returns the figure."""
    import matplotlib.pyplot as plt

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


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
