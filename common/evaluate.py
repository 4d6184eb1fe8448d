"""python -m common.evaluate RUN: a recorded run's best weights on its test set, or on images of your own."""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoints, paths, predictions
from .config import RunConfig
from .data import IMAGE_SUFFIXES, DataUnavailable, read_image
from .device import autocast_dtype, precision_name, use_channels_last
from .experiment import load_split, load_trained, make_loaders
from .loader import DeviceLoader
from .results import ResultsReadError
from .train import evaluate

FULL_MATRIX = 20  # up to this many classes the confusion matrix fits a screen; beyond it, the largest confusions


class Refused(RuntimeError):
    """A run, checkpoint or image that cannot be evaluated; the message names the problem and the fix."""


def find_folder(run: str, profile: str) -> Path:
    """The checkpoint folder of a run id in `profile`, or `run` itself when it is a checkpoint folder."""
    folder = next((f for f in (Path(run), paths.checkpoints_dir(profile) / run) if (f / "last.pt").is_file()), None)
    if folder is None:
        raise Refused(f"No checkpoint of {run!r} in {paths.checkpoints_dir(profile)}: give the run id of a trained "
                      "run of this profile (--profile picks the other) or a checkpoint folder.")
    return folder


def run_config(folder: Path, data: str = None) -> RunConfig:
    """The RunConfig that made the finished checkpoint in `folder`, rebuilt from last.pt and checked by its hash."""
    path, state = folder / "last.pt", checkpoints.load(folder / "last.pt")
    if not {"config", "config_hash", "epoch"} <= set(state):
        raise Refused(f"{path} is not a checkpoint of this repository (it holds no config): give a run's folder.")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in state["config"].items()}
    try:  # an image folder's run builds without its images (source_path ""), which only its test set needs
        cfg = RunConfig(**values, source_path=data or "")
    except (TypeError, ValueError) as err:
        raise Refused(f"{path} holds a config this code cannot rebuild ({err}): use the commit that made it.") from None
    if cfg.fingerprint() != state["config_hash"]:
        raise Refused(f"{path} is a foreign checkpoint: its config hashes to {cfg.fingerprint()} here, not to the "
                      f"{state['config_hash']} it was saved with: evaluate it with the commit that trained it.")
    if state["epoch"] < cfg.epochs:
        raise Refused(f"{cfg.run_id} has trained {state['epoch']} of its {cfg.epochs} epochs: run it again to finish "
                      "it (it resumes), then evaluate it.")
    if cfg.loss != "cross_entropy":
        raise Refused(f"{cfg.run_id} is a contrastive pretraining run, without classes: evaluate the classifier "
                      "trained on its encoder.")
    return cfg


def split_of(cfg: RunConfig):
    """The run's data, split as it trained; an image-folder run needs --data."""
    if cfg.source.startswith("imagefolder:") and not cfg.source_path:
        raise Refused(f"{cfg.run_id} trained on an image folder ({cfg.source_name}): give its path with --data PATH.")
    return load_split(cfg)


def score_test_set(cfg: RunConfig, folder: Path, device: torch.device, out: str = None) -> None:
    """Print test accuracy, per-class accuracy and the confusion matrix of the best weights; write the predictions."""
    split = split_of(cfg)
    test, amp = make_loaders(cfg, split, device).test, autocast_dtype(cfg, device)
    best, final = (evaluate(load_trained(cfg, device, which, folder), test, amp, keep_predictions=True)
                   for which in ("best", "last"))
    labels, classes, names = split.test_y.numpy(), best[2].numpy(), split.classes
    print(f"{cfg.run_id}: test accuracy {best[1]:.4f} (loss {best[0]:.4f}) with the best-validation weights, "
          f"{final[1]:.4f} with the final ones; {len(labels)} test images, {precision_name(amp)} on {device.type}")
    per_class = predictions.per_class_accuracy(labels, classes, len(names))
    print("\nper-class accuracy\n" + pd.Series(per_class, index=names).round(4).to_string())
    counts = predictions.confusion_matrix(labels, classes, len(names))
    if len(names) <= FULL_MATRIX:
        print("\nconfusion matrix (rows: true class, columns: predicted class)\n"
              + pd.DataFrame(counts, index=names, columns=names).to_string())
    else:
        wrong = counts - np.diag(np.diag(counts))
        print("\nthe ten largest confusions (true -> predicted: images)\n" + "\n".join(
            f"{names[i // len(names)]} -> {names[i % len(names)]}: {wrong.flat[i]}"
            for i in np.argsort(wrong, axis=None)[::-1][:10]))
    path = Path(out or predictions.predictions_path(cfg))
    if out is None and path.exists():  # the run's own record: replaced only when asked by name
        same = np.array_equal(predictions.read_predictions(path)["best_class"], classes)
        print(f"\n{path} is recorded already ({'the same' if same else 'other'} predictions): left as it is; give "
              "--out PATH to write these predictions.")
    else:
        predictions.write_predictions(path, labels, best[2:], final[2:], names)
        print(f"\npredictions written to {path}")


def image_files(items: list) -> list:
    """The image files named, and the images inside the folders named (sorted)."""
    files = []
    for item in map(Path, items):
        if not item.exists():
            raise Refused(f"No file or folder {item}: give image files or folders of them.")
        found = sorted(f for f in item.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if item.is_dir() else [item]
        if not found:
            raise Refused(f"{item} holds no images ({' '.join(sorted(IMAGE_SUFFIXES))}): give a folder of images.")
        files += found
    return files


def classify(cfg: RunConfig, folder: Path, device: torch.device, items: list, top: int = 3) -> None:
    """Print each image's `top` classes and their probabilities, the images prepared as the run's test images."""
    files = image_files(items)
    images = torch.stack([read_image(file, cfg.image_size) for file in files])
    recorded = predictions.recorded_predictions(cfg)
    names = recorded["classes"] if recorded else split_of(cfg).classes  # recorded: no data needed
    loader = DeviceLoader(images, torch.zeros(len(images), dtype=torch.int64), cfg.eval_batch_size, cfg.mean,
                          cfg.std, shuffle=False, device=device, channels_last=use_channels_last(cfg, device))
    model, amp = load_trained(cfg, device, "best", folder), autocast_dtype(cfg, device)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        probs = torch.cat([torch.softmax(model(batch).float(), dim=1) for batch, _ in loader]).cpu()
    values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
    for file, value, index in zip(files, values.tolist(), indices.tolist()):
        print(f"{file}: " + ", ".join(f"{names[i]} {p:.3f}" for i, p in zip(index, value)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.evaluate",
                                     description="A recorded run's best weights on its test set, or on your images.")
    parser.add_argument("run", help="a run id (its results row's run_id) or a checkpoint folder")
    parser.add_argument("--profile", choices=paths.PROFILES, help="where a run id is looked for ($REPRO_PROFILE)")
    parser.add_argument("--out", metavar="PATH", help="where to write the predictions (default: the run's results)")
    parser.add_argument("--images", nargs="+", metavar="DIR_OR_FILE", help="classify these images instead")
    parser.add_argument("--data", metavar="FOLDER", help="an image-folder run: where its train/ and test/ folders lie")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        folder = find_folder(args.run, args.profile or paths.default_profile())
        cfg = run_config(folder, args.data)
        if args.images:
            classify(cfg, folder, device, args.images)
        else:
            score_test_set(cfg, folder, device, args.out)
    except (Refused, DataUnavailable, ResultsReadError, ValueError, checkpoints.CheckpointMissing,
            checkpoints.CheckpointUnreadable, checkpoints.CheckpointMismatch) as err:
        print(err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
