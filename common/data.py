"""Data sets as uint8 tensors: sources, the on-disk cache and the seeded split."""

import contextlib
import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import datasets
from torchvision.datasets import utils
from torchvision.transforms.v2 import functional as F

from . import paths

CIFAR_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif"}
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
IMAGENETTE_CLASSES = {  # WordNet id -> readable name, in the sorted-id order that gives the labels
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
    "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball", "n03888257": "parachute"}


class DataUnavailable(RuntimeError):
    """A data set could not be found or fetched; the message names the ways out."""


@dataclass
class ImageSet:
    """Images as uint8 N x 3 x H x W tensors with int64 labels, train and test."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Split:
    """Train / validation / test tensors after the seeded split (val may be empty)."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list
    train_clean_y: torch.Tensor = None  # with label noise: the true training labels (train_y holds the noisy ones)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_images(source: str, data_dir=None, num_classes: int = 10, image_size: int = 32,
                synthetic_sizes=(512, 256), seed: int = 0, folder=None) -> ImageSet:
    """Load a source: cifar10, cifar100, imagenette, synthetic, or imagefolder:NAME-DIGEST read from `folder`."""
    data_dir = Path(data_dir or paths.data_dir())
    if source == "synthetic":
        return synthetic_images(num_classes, synthetic_sizes[0], synthetic_sizes[1], image_size, seed)
    if source in ("cifar10", "cifar100"):
        return cached(data_dir / "cache" / f"{source}.pt", lambda: _torchvision_cifar(source, data_dir))
    if source == "imagenette":
        return cached(data_dir / "cache" / f"imagenette-160-{image_size}.pt", lambda: _imagenette(data_dir, image_size))
    if source.startswith("imagefolder:"):
        named = source.split(":", 1)[1]  # a path, or (with `folder`) the identity the run was configured with
        identity = folder_identity(folder or named)
        if folder and identity != named:
            raise DataUnavailable(f"The images in {folder} are not those of {source} (they changed since the run "
                                  "was configured): configure the run again from the folder as it is now.")
        folder = Path(folder or named).expanduser().resolve()
        images = cached(data_dir / "cache" / f"imagefolder-{identity}-{image_size}.pt",
                        lambda: _decode_folder(folder, image_size))
        if set(images.classes) <= set(IMAGENETTE_CLASSES):  # an ImageNette copy: readable names for its WordNet ids
            images.classes = [IMAGENETTE_CLASSES[wnid] for wnid in images.classes]
        return images
    raise ValueError(f"Unknown data source {source!r}: use cifar10, cifar100, imagenette, "
                     "imagefolder:PATH or synthetic.")


def cached(path: Path, build) -> ImageSet:
    """Decode once with `build()`, keep the uint8 tensors in `path`, load them afterwards."""
    if path.exists():
        try:
            return ImageSet(**torch.load(path, weights_only=True))
        except Exception:  # a truncated cache file: decode again rather than fail
            pass
    images = build()
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vars(images), tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError; the images are decoded
        warnings.warn(f"Cannot keep the decoded images in {path} ({getattr(err, 'strerror', None) or 'write failed'}): "
                      f"they are decoded again next time; free space or make {path.parent} writable.", stacklevel=2)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return images


def _torchvision_cifar(source: str, data_dir: Path) -> ImageSet:
    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    root = data_dir / source
    archive = cls.filename  # e.g. cifar-10-python.tar.gz
    parts = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=True)
        except Exception as err:  # offline, blocked or a corrupt archive
            if (root / archive).exists():
                raise DataUnavailable(
                    f"{root / archive} is there but cannot be read ({type(err).__name__}): it is corrupt or cut "
                    f"short; delete it (and {root}/{cls.base_folder}, if any) so that it is downloaded again from "
                    f"{cls.url}, or put a good copy there.") from None
            raise DataUnavailable(
                f"{CIFAR_NAMES[source]} is not in {root} and could not be downloaded ({type(err).__name__}): "
                f"put {archive} from {cls.url} into {root}, use source='imagefolder:PATH' for a local "
                "image folder, or run the smoke profile (REPRO_PROFILE=smoke) on generated data."
            ) from None
        parts.append((torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                      torch.tensor(ds.targets, dtype=torch.int64)))
        classes = list(ds.classes)
    return ImageSet(*parts[0], *parts[1], classes)


def _imagenette(data_dir: Path, image_size: int) -> ImageSet:
    """ImageNette 160 px: its train/ folder is the training set, its val/ folder the test set."""
    root = data_dir / "imagenette"
    folder = root / "imagenette2-160"
    if not ((folder / "train").is_dir() and (folder / "val").is_dir()):
        _fetch_imagenette(root, folder)
    images = _decode_folder(folder, image_size, splits=("train", "val"))
    images.classes = [IMAGENETTE_CLASSES.get(wnid, wnid) for wnid in images.classes]
    return images


def _fetch_imagenette(root: Path, folder: Path) -> None:
    """Download the archive into `root` (unless it is there already) and unpack it."""
    archive = root / IMAGENETTE_URL.rsplit("/", 1)[1]
    part = archive.with_name(archive.name + ".part")  # renamed when complete, so a cut download is not trusted
    try:
        if not archive.exists():
            utils.download_url(IMAGENETTE_URL, str(root), part.name)
            os.replace(part, archive)
    except Exception as err:  # offline, blocked, or the server is gone
        part.unlink(missing_ok=True)
        raise DataUnavailable(
            f"ImageNette is not in {folder} and could not be downloaded ({type(err).__name__}): "
            f"put imagenette2-160.tgz from {IMAGENETTE_URL} into {root} (or unpack it there so that "
            f"{folder}/train and {folder}/val exist), or run the smoke profile (REPRO_PROFILE=smoke) on generated data."
        ) from None
    try:
        utils.extract_archive(str(archive), str(root))
    except Exception as err:  # a truncated or foreign archive
        raise DataUnavailable(
            f"{archive} could not be unpacked ({type(err).__name__}: {err}): delete it so that it is downloaded "
            f"again from {IMAGENETTE_URL}, or unpack a good copy so that {folder}/train and {folder}/val exist."
        ) from None


def folder_identity(folder) -> str:
    """An image folder's name and a digest of its files' paths and bytes, e.g. 'cifar10-jpeg-3f2a9c01d4': the same
    images give the same identity wherever they lie. Remembered against the files' sizes and modification times
    (an image edited in place with its time restored keeps its old identity: forget_folder_identities)."""
    folder = Path(folder).expanduser().resolve()
    if not (folder / "train").is_dir() or not (folder / "test").is_dir():
        raise DataUnavailable(f"No image folder at {folder}: expected {folder}/train/<class>/*.jpg and "
                              f"{folder}/test/<class>/*.jpg; check the path after 'imagefolder:' or run the smoke "
                              "profile.")
    files = sorted((Path(root) / name).relative_to(folder) for split in ("train", "test")
                   for root, _, names in os.walk(folder / split) for name in names)
    stats = hashlib.sha1("".join(f"{f}:{(folder / f).stat().st_size}:{(folder / f).stat().st_mtime_ns}"
                                 for f in files).encode()).hexdigest()
    memo = paths.data_dir() / "cache" / f"identity-{hashlib.sha1(str(folder).encode()).hexdigest()[:12]}.txt"
    saved = memo.read_text().split() if memo.is_file() else []
    if len(saved) == 2 and saved[0] == stats:
        return saved[1]
    digest = hashlib.sha1()
    for f in files:
        digest.update(f"{f.as_posix()}\0".encode())
        digest.update((folder / f).read_bytes())
    identity = f"{re.sub(r'[^A-Za-z0-9_.-]', '', folder.name) or 'images'}-{digest.hexdigest()[:10]}"
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(f"{stats} {identity}\n")
    except OSError:  # a read-only or full data folder: not remembered (nor half-written), hashed again next time
        with contextlib.suppress(OSError):
            memo.unlink(missing_ok=True)
    return identity


def forget_folder_identities() -> int:
    """Delete every remembered image-folder identity, so that each folder's images are hashed again; how many."""
    memos = list((paths.data_dir() / "cache").glob("identity-*.txt"))
    for memo in memos:
        memo.unlink(missing_ok=True)
    return len(memos)


# image folders known by their digest, for tables that say what a row was trained on
KNOWN_FOLDERS = {"27d093021b": "CIFAR-10, JPEG copy",  # the public JPEG export of CIFAR-10 (see README)
                 "c3ab815d95": "ImageNette, 224 px copy"}  # imagenette2 centre-cropped to 224 x 224 (see README)


def describe_source(source: str) -> str:
    """What a run trained on, for a reader: 'CIFAR-10 (original files)', 'CIFAR-10, JPEG copy', 'generated images'."""
    if source in CIFAR_NAMES:
        return f"{CIFAR_NAMES[source]} (original files)"
    if source == "imagenette":
        return "ImageNette 160 px"
    if source == "synthetic":
        return "generated images (smoke)"
    if source.startswith("imagefolder:"):
        identity = source.split(":", 1)[1]
        return KNOWN_FOLDERS.get(identity.rsplit("-", 1)[-1], f"image folder {identity}")
    return source


def _decode_folder(folder: Path, image_size: int, splits=("train", "test")) -> ImageSet:
    """Decode a train/<class>/* + test/<class>/* tree (`splits` names the two folders) into uint8 tensors."""
    train, test = splits
    if not (folder / train).is_dir() or not (folder / test).is_dir():
        raise DataUnavailable(
            f"No image folder at {folder}: expected {folder}/{train}/<class>/*.jpg and "
            f"{folder}/{test}/<class>/*.jpg; check the path after 'imagefolder:' or run the smoke profile.")
    classes = sorted(p.name for p in (folder / train).iterdir() if p.is_dir())
    if not classes:
        raise DataUnavailable(f"{folder}/{train} holds no class folders: expected {train}/<class>/*.jpg.")
    test_classes = sorted(p.name for p in (folder / test).iterdir() if p.is_dir())
    if test_classes != classes:  # another class set would silently drop or mislabel test images
        raise DataUnavailable(
            f"{folder}/{train} and {folder}/{test} hold different classes ({', '.join(classes)} against "
            f"{', '.join(test_classes)}): give both the same class folders.")
    found = {(split, name): sorted(f for f in (folder / split / name).glob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
             for split in splits for name in classes}
    empty = [f"{split}/{name}" for (split, name), files in found.items() if not files]
    if empty:
        raise DataUnavailable(f"{folder} has class folders without images ({', '.join(empty)}): add images or "
                              "remove the class from both splits.")
    tensors = []
    for split in splits:
        files = [(label, f) for label, name in enumerate(classes) for f in found[split, name]]
        tensors += [torch.stack([read_image(f, image_size) for _, f in files]),
                    torch.tensor([label for label, _ in files], dtype=torch.int64)]
    return ImageSet(*tensors, classes)


def read_image(file: Path, size: int) -> torch.Tensor:
    """One image as uint8 3 x size x size: shorter side resized to `size`, then centre-cropped."""
    try:
        with Image.open(file) as pil:
            image = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1).contiguous()
    except (OSError, UnidentifiedImageError) as err:
        raise DataUnavailable(f"Cannot decode {file} ({err}); remove or replace the file.") from None
    if image.shape[-2:] != (size, size):
        image = F.center_crop(F.resize(image, size, antialias=True), [size, size])
    return image


def synthetic_images(num_classes: int = 10, n_train: int = 512, n_test: int = 256,
                     image_size: int = 32, seed: int = 0) -> ImageSet:
    """Generated CIFAR-shaped images whose class is a colour and an oriented stripe texture, deterministic in `seed`."""
    # the class signal survives flips and small shifts, so a small CNN learns it in an epoch or two; per-image
    # noise, brightness and phase keep it from being trivial
    gen = torch.Generator().manual_seed(seed)
    colours = torch.rand(num_classes, 3, 1, 1, generator=gen)
    angles = torch.arange(num_classes) * math.pi / num_classes
    freqs = 0.25 + 0.5 * torch.rand(num_classes, generator=gen)
    coords = torch.arange(image_size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")

    def make(n):
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=gen)]
        phase = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
        angle, freq = angles[labels].view(n, 1, 1), freqs[labels].view(n, 1, 1)
        stripes = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)
        brightness = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
        image = colours[labels] * brightness + 0.25 * stripes.unsqueeze(1)
        image = image + 0.15 * torch.randn(n, 3, image_size, image_size, generator=gen)
        return (image.clamp(0, 1) * 255).round().to(torch.uint8), labels

    return ImageSet(*make(n_train), *make(n_test), [f"class{i}" for i in range(num_classes)])


def split(images: ImageSet, val_size: int = 0, seed: int = 0) -> Split:
    """Hold out `val_size` seeded random training images for validation (0: none)."""
    n = len(images.train_y)
    if not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size} must be between 0 and {n - 1}, the training set's size minus one.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size], order[val_size:]
    return Split(images.train_x[train_idx], images.train_y[train_idx],
                 images.train_x[val_idx], images.train_y[val_idx],
                 images.test_x, images.test_y, images.classes)
