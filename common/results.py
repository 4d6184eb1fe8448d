"""Run records on disk: the results CSV row, the per-epoch history CSV and the curves PNG, and where they are."""

import contextlib
import csv
import fcntl
import glob
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from . import distributed, paths
from .config import RunConfig
from .device import cpu_bf16_kind

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
                  "compile_seconds",  # torch.compile's warm-up, left out of train_seconds
                  "checkpoint_seconds"]  # writing the epoch's checkpoints, after its seconds were taken


class ResultsReadError(RuntimeError):
    """A results file is not one this repository wrote; it is left as it is."""


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
        _remove_temps_of_dead_writers(path)
        # named by machine and process, so a later writer knows a killed one's file from a live one's
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.~{socket.gethostname()}~{os.getpid()}~", suffix=".tmp",
                                   dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        yield Path(tmp)
        umask = os.umask(0)  # reading the umask means setting it: put it straight back
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files: records are for everyone to read
        os.replace(tmp, path)
    except OSError as err:
        raise _write_error(path, err) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_temps_of_dead_writers(path: Path) -> None:
    """Delete the temp files beside `path` whose writer, a process of this machine, is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.~{glob.escape(socket.gethostname())}~*~*.tmp"):
        try:
            os.kill(int(tmp.name.rsplit("~", 2)[1]), 0)  # signal 0 only asks whether the writer still runs
        except ProcessLookupError:
            with contextlib.suppress(OSError):  # the write's own error, if any, is the one to report
                tmp.unlink(missing_ok=True)
        except (ValueError, OSError):  # not a process id, or another user's live process
            pass


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
    try:
        frame = pd.read_csv(path, dtype={field: str for field in TEXT_FIELDS})
        uneven = _uneven_row(path)
    except Exception as err:  # pandas raises several kinds for a file that is not a CSV
        raise ResultsReadError(f"{path} is not a results CSV ({type(err).__name__}: {str(err).splitlines()[0]}): "
                               "move it away or repair it; nothing was changed.") from None
    if list(frame.columns) != RESULT_FIELDS:
        raise ResultsReadError(f"{path} does not hold this repository's results columns (it has "
                               f"{', '.join(map(str, frame.columns[:6]))}, ...): move it away or repair it; nothing "
                               "was changed.")
    if uneven:  # pandas fills a short row with NaN and reads longer ones as an index: columns would shift
        line, fields = uneven
        raise ResultsReadError(f"{path}, line {line}, has {fields} fields where the header has {len(RESULT_FIELDS)} "
                               "(a row of another version of this repository?): move that row away or repair it; "
                               "nothing was changed.")
    frame["shortened"] = shortened_flags(frame["shortened"])
    return frame


def _uneven_row(path: Path):
    """(line, fields) of the first row with another number of fields than the header, or None."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        width = len(next(reader, []))
        for record in reader:
            if record and len(record) != width:  # a blank line is no row: pandas skips it too
                return reader.line_num, len(record)
    return None


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


@dataclass
class RunResult:
    """A finished run: its results row, its per-epoch history, and whether it was loaded from disk."""
    row: dict
    history: pd.DataFrame
    loaded: bool

    def __repr__(self):
        r = self.row
        return (f"RunResult({r['run_id']}: test acc {r['test_acc_best']:.4f} (best val, epoch {r['best_epoch']}), "
                f"{r['test_acc_final']:.4f} (final), {r['wall_seconds']:.0f}s on {r['device']}"
                f"{', loaded' if self.loaded else ''})")


def results_csv(cfg: RunConfig, notebook: str) -> Path:
    return paths.results_dir(cfg.profile) / f"{notebook}.csv"


def history_csv(cfg: RunConfig) -> Path:
    return paths.results_dir(cfg.profile) / "history" / f"{cfg.run_id}.csv"


def figure_png(cfg: RunConfig) -> Path:
    return paths.figures_dir(cfg.profile) / f"{cfg.run_id}.png"


def recorded_result(cfg: RunConfig, notebook: str):
    """The recorded result of this exact run (same id and config) in a notebook's results, or None."""
    row = find_result(results_csv(cfg, notebook), cfg.run_id, cfg.fingerprint())
    if row is None or not history_csv(cfg).exists():
        return None
    return RunResult(row, read_history(history_csv(cfg)), loaded=True)


def _describe() -> str:
    """The checkout's commit (with -dirty for uncommitted changes), or 'unknown' outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=os.path.dirname(__file__),
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_LOADED_FROM = _describe()  # when the package is imported: the code a process runs, whatever is committed later
COMMIT_ENV = "REPRO_COMMIT"  # the commit of a copy of the repository without .git, as its results rows record it


def git_commit() -> str:
    """The commit of the code this process loaded (taken at import, so later commits do not relabel its runs); in a
    copy without .git, $REPRO_COMMIT (tools/gpucheck.py --commit sets it), else 'unknown'."""
    return _LOADED_FROM if _LOADED_FROM != "unknown" else os.environ.get(COMMIT_ENV) or "unknown"


def device_name(device: torch.device) -> str:
    """The GPU's name (times the processes), or the CPU's threads and bf16 instructions (its kernels' rounding)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu x{torch.get_num_threads()} {cpu_bf16_kind()}".rstrip()
    return f"{name} x{distributed.world_size()} processes" if distributed.world_size() > 1 else name


def make_row(cfg: RunConfig, notebook: str, device: torch.device, precision: str, commit: str, **measured) -> dict:
    """A run's results row: what it is (from its config), what it measured, and where and how it ran."""
    row = {"run_id": cfg.run_id, "notebook": notebook, "experiment": cfg.experiment, "model": cfg.model,
           "dataset": cfg.dataset, "source": cfg.source, "profile": cfg.profile, "seed": cfg.seed,
           "epochs": cfg.epochs, "shortened": cfg.shortened, **measured,
           "device": device_name(device), "precision": precision, "torch": torch.__version__, "git_commit": commit,
           "config_hash": cfg.fingerprint(), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    missing = [field for field in RESULT_FIELDS if field not in row]
    if missing:
        raise ValueError(f"A results row of {cfg.run_id} lacks {', '.join(missing)}: every row carries every field.")
    return row


def write_history(path: Path, history: list) -> None:
    write_csv(pd.DataFrame(history, columns=HISTORY_FIELDS), path)


def read_history(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
