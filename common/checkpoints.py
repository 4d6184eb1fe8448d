"""A run's checkpoint folder: last.pt (to resume), prev.pt (the checkpoint before), best.pt (best-validation
weights) and, while a run trains, best-prev.pt (the best weights before, until last.pt names the new ones).

Every write goes to a temporary file renamed into place, so a crash never leaves half a checkpoint, and every
read names the file it could not read. This is the one place that reads and writes checkpoints.
"""

import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from .config import RunConfig, config_differences
from .paths import checkpoints_dir


class CheckpointMismatch(RuntimeError):
    """A checkpoint on disk belongs to another config."""


class CheckpointUnreadable(RuntimeError):
    """A checkpoint file is truncated or corrupt."""


class CheckpointMissing(FileNotFoundError):
    """A run has no checkpoint yet."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, no permission); the previous one is untouched."""


RESUMABLE = ("model", "optimizer", "scheduler", "scaler", "config", "config_hash", "epoch", "history", "best")


def run_folder(cfg: RunConfig) -> Path:
    """Where a run's checkpoints live."""
    return checkpoints_dir(cfg.profile) / cfg.run_id


def save(obj: dict, path: Path) -> None:
    """torch.save to a temp file renamed into place; a failed write leaves no temp file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError from its zip writer
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        reason = (f"the disk is full ({free / 2**20:.0f} MB free)" if free < 2**30 or getattr(err, "errno", None) == 28
                  else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'write failed'}")
        raise CheckpointWriteError(f"Cannot write checkpoint {path}: {reason}. Free space (or fix the folder) and run "
                                   "again: the run resumes from its previous checkpoint.") from None


class Cadence:
    """When a run writes its checkpoint: every epoch (share None), or once the training since the last write has
    taken at least 1/share times that write, so that writing costs at most `share` of the run's time."""

    def __init__(self, share=None, clock=time.perf_counter):
        self.share, self.clock = share, clock
        self.since, self.cost = clock(), 0.0  # the first epoch writes, and measures what a write costs

    def due(self, final: bool) -> bool:
        return self.share is None or final or self.clock() - self.since >= self.cost / self.share

    def written(self, seconds: float) -> None:
        self.cost, self.since = seconds, self.clock()


def save_epoch(folder: Path, state: dict, best: dict = None) -> None:
    """A checkpoint: the new best weights first (if they changed), then last.pt. The files they replace stay as
    best-prev.pt and prev.pt, so a crash at any point leaves a last.pt or prev.pt whose best epoch is on disk."""
    if best is not None:
        if (folder / "best.pt").exists():
            os.replace(folder / "best.pt", folder / "best-prev.pt")
        save(best, folder / "best.pt")
    if (folder / "last.pt").exists():
        os.replace(folder / "last.pt", folder / "prev.pt")
    save(state, folder / "last.pt")


def finish(folder: Path) -> None:
    """A finished run resumes from nothing: keep only last.pt and best.pt (files set aside as *.corrupt go too)."""
    for path in [folder / "prev.pt", folder / "best-prev.pt", *folder.glob("*.corrupt")]:
        path.unlink(missing_ok=True)


def remove_stale_temp_files(folder: Path) -> None:
    """Delete the temp files of writes that never finished (a killed process): only the run's trainer writes here."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def load(path: Path, device="cpu") -> dict:
    """Read a checkpoint, naming the file if it is truncated or corrupt."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:
        raise CheckpointUnreadable(
            f"Checkpoint {path} is unreadable ({type(err).__name__}), probably truncated: "
            "delete it to start the run afresh.") from None


def saved_epoch(path: Path):
    """The epochs a checkpoint holds, or None if it cannot be read (missing, or being replaced); reads no tensors."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["epoch"])
    except Exception:  # noqa: BLE001  missing or unreadable: fit() sets it aside and starts before it
        return None


def read_or_set_aside(path: Path, device):
    """A checkpoint's contents, or None if it is unreadable: then it is named, renamed *.corrupt and skipped."""
    try:
        return load(path, device)
    except CheckpointUnreadable:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"Checkpoint {path} is unreadable, probably cut short by a crash: it was moved to "
                      f"{aside.name} and the run goes on from the previous checkpoint, or from scratch.", stacklevel=3)
        return None


def first_readable(folder: Path, names: tuple, device, epoch: int = None):
    """(state, path) of the first of the files `names` that reads (and holds `epoch`, if given), else (None, None):
    last.pt then prev.pt to resume, best.pt then best-prev.pt for the best weights. Unreadable ones are set aside."""
    for path in (folder / name for name in names):
        state = read_or_set_aside(path, device) if path.exists() else None
        if state is not None and (epoch is None or state["epoch"] == epoch):
            return state, path
    return None, None


def check_config(state: dict, cfg: RunConfig, path: Path) -> dict:
    """The checkpoint `state` if `cfg` made it; refuse one made with another config, or one of another kind."""
    missing = [key for key in RESUMABLE if key not in state]
    if missing:
        raise CheckpointMismatch(
            f"{path} is not a checkpoint to resume from (it lacks {', '.join(missing)}; perhaps a copy of best.pt): "
            f"move it away to resume from the epoch before, or delete {path.parent} to start this run afresh.")
    if state["config_hash"] != cfg.fingerprint():
        raise CheckpointMismatch(
            f"Checkpoint {path} was made with another config "
            f"({config_differences(state['config'], cfg.to_dict())}): delete {path.parent}, or start this run "
            "afresh with force=True (FORCE = True in a notebook, --force for python tools/reproduce.py).")
    return state


def load_weights(cfg: RunConfig, which: str = "best", device="cpu", folder: Path = None) -> dict:
    """A run's best-validation (best.pt, else last.pt) or last weights, from its checkpoint folder or `folder`."""
    folder = Path(folder) if folder else run_folder(cfg)
    names = ("best.pt", "last.pt") if which == "best" else ("last.pt",)
    path = next((folder / name for name in names if (folder / name).exists()), None)
    if path is None:
        raise CheckpointMissing(f"No checkpoint of {cfg.run_id} in {folder}: train it first (run_experiment).")
    state = load(path, device)
    if "config_hash" in state:  # best.pt holds weights only; last.pt says which config made them
        check_config(state, cfg, path)
    return state["model"]


def load_encoder(reference: str, profile: str, device="cpu") -> dict:
    """The encoder weights of a pretraining run named "run_id@fingerprint", from its last checkpoint."""
    run_id, _, fingerprint = reference.partition("@")
    path = checkpoints_dir(profile) / run_id / "last.pt"
    if not path.exists():
        raise CheckpointMissing(f"No pretrained encoder at {path}: run the pretraining ({run_id}) first.")
    state = load(path, device)
    if state["config_hash"] != fingerprint:
        raise CheckpointMismatch(f"{path} holds another pretraining config than this classifier stands on: "
                                 "run the pretraining again (or delete that folder), then this classifier.")
    return {key[len("encoder."):]: value for key, value in state["model"].items() if key.startswith("encoder.")}
