"""The imagenette source on a small fake imagenette2-160 tree, its offline error, and 128 px synthetic data."""

import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import utils as tv_utils

from common import data
from common.data import IMAGENETTE_CLASSES, IMAGENETTE_URL, DataUnavailable

WNIDS = sorted(IMAGENETTE_CLASSES)
NAMES = ["tench", "English springer", "cassette player", "chain saw", "church", "French horn",
         "garbage truck", "gas pump", "golf ball", "parachute"]
SIZES = [(160, 213), (213, 160), (160, 160), (160, 240)]  # (height, width), as in the 160 px archive


def smooth_image(seed, h, w):
    """A smooth colour gradient (so JPEG barely changes it), different for each seed."""
    g = torch.Generator().manual_seed(seed)
    a, b, c = (torch.rand(3, 3, generator=g) * 120 + 40).unbind(0)
    ys = torch.linspace(0, 1, h).view(1, h, 1)
    xs = torch.linspace(0, 1, w).view(1, 1, w)
    image = a.view(3, 1, 1) + b.view(3, 1, 1) * ys - 0.5 * c.view(3, 1, 1) * xs
    return image.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.fixture
def fake_imagenette(tmp_path):
    """data/imagenette/imagenette2-160/{train: 2, val: 1 per class}/<wnid>/*.JPEG; returns (data dir, folder)."""
    data_dir = tmp_path / "data"
    folder = data_dir / "imagenette" / "imagenette2-160"
    seed = 0
    for split, per_class in (("train", 2), ("val", 1)):
        for wnid in reversed(WNIDS):  # written out of order: the labels must come from sorting
            (folder / split / wnid).mkdir(parents=True)
            for i in range(per_class):
                h, w = SIZES[seed % len(SIZES)]
                Image.fromarray(smooth_image(seed, h, w)).save(folder / split / wnid / f"{wnid}_{i}.JPEG", quality=95)
                seed += 1
    return data_dir, folder


def reference_128(file):
    """Independent reference with PIL: shorter side to 128 (bilinear, antialiased), then the centre 128 x 128."""
    with Image.open(file) as pil:
        pil = pil.convert("RGB")
        w, h = pil.size
        scale = 128 / min(w, h)
        new_w, new_h = (128, int(h * scale)) if w <= h else (int(w * scale), 128)
        pil = pil.resize((new_w, new_h), Image.BILINEAR)
        left, top = round((new_w - 128) / 2), round((new_h - 128) / 2)
        pil = pil.crop((left, top, left + 128, top + 128))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)


def test_imagenette_decodes_train_and_val_at_128(fake_imagenette, monkeypatch):
    data_dir, folder = fake_imagenette

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although the extracted folder is there")

    monkeypatch.setattr(tv_utils, "download_url", no_download)
    images = data.load_images("imagenette", data_dir=data_dir, image_size=128)
    assert images.classes == NAMES and images.num_classes == 10
    assert images.train_x.shape == (20, 3, 128, 128) and images.train_x.dtype == torch.uint8
    assert images.test_x.shape == (10, 3, 128, 128) and images.test_x.dtype == torch.uint8
    assert images.train_y.dtype == torch.int64 and images.test_y.dtype == torch.int64
    assert torch.equal(images.train_y, torch.arange(10).repeat_interleave(2))
    assert torch.equal(images.test_y, torch.arange(10))  # the test set is the val/ folder
    # each tensor is its own file, resized and centre-cropped like torchvision's Resize(128) + CenterCrop(128)
    train_files = [f for wnid in WNIDS for f in sorted((folder / "train" / wnid).glob("*.JPEG"))]
    val_files = [next((folder / "val" / wnid).glob("*.JPEG")) for wnid in WNIDS]
    for tensor, file in list(zip(images.train_x, train_files)) + list(zip(images.test_x, val_files)):
        diff = (tensor.float() - reference_128(file).float()).abs()
        assert diff.mean() < 1.5 and diff.max() < 16, (file.name, diff.mean(), diff.max())
    assert (images.test_x.float().mean((1, 2, 3)) - images.train_x[::2].float().mean((1, 2, 3))).abs().max() > 1


def test_imagenette_is_cached_per_image_size(fake_imagenette, monkeypatch):
    data_dir, _ = fake_imagenette
    first = data.load_images("imagenette", data_dir=data_dir, image_size=128)
    assert (data_dir / "cache" / "imagenette-160-128.pt").exists()
    assert not list((data_dir / "cache").glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(data, "_decode_folder", no_decoding)
    second = data.load_images("imagenette", data_dir=data_dir, image_size=128)
    assert torch.equal(second.train_x, first.train_x) and second.classes == NAMES
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another cache
        data.load_images("imagenette", data_dir=data_dir, image_size=64)


@pytest.mark.parametrize("patch", ["urlopen", "download_url"])
@pytest.mark.parametrize("error", [urllib.error.URLError("no internet"), OSError(101, "Network is unreachable")])
def test_offline_imagenette_names_the_url_and_the_folder(tmp_path, monkeypatch, patch, error):
    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(urllib.request if patch == "urlopen" else tv_utils, patch, offline)
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    with pytest.raises(DataUnavailable) as err:
        data.load_images("imagenette", image_size=128)
    message = str(err.value)
    assert IMAGENETTE_URL in message
    assert str(tmp_path / "imagenette") in message and "imagenette2-160" in message
    assert "smoke" in message and type(error).__name__ in message
    assert not (tmp_path / "cache").exists()  # nothing cached
    assert not list(tmp_path.glob("imagenette/*.tgz*"))  # no half-downloaded archive left to trust later


def test_a_cut_download_is_not_kept(tmp_path, monkeypatch):
    def cut(url, root, filename, *args, **kwargs):
        (tmp_path / "imagenette").mkdir(exist_ok=True)
        (tmp_path / "imagenette" / filename).write_bytes(b"\x1f\x8b half an archive")
        raise OSError("connection reset")

    monkeypatch.setattr(tv_utils, "download_url", cut)
    with pytest.raises(DataUnavailable, match="OSError"):
        data.load_images("imagenette", data_dir=tmp_path, image_size=128)
    assert not list((tmp_path / "imagenette").iterdir())


def test_a_broken_archive_says_to_delete_it(tmp_path):
    root = tmp_path / "imagenette"
    root.mkdir()
    (root / "imagenette2-160.tgz").write_bytes(b"not a tar file")
    with pytest.raises(DataUnavailable) as err:
        data.load_images("imagenette", data_dir=tmp_path, image_size=128)
    assert "imagenette2-160.tgz" in str(err.value) and "delete" in str(err.value)


def test_unknown_source_lists_imagenette(tmp_path):
    with pytest.raises(ValueError, match="imagenette"):
        data.load_images("imagenet", data_dir=tmp_path)


def test_synthetic_images_at_128_px_are_quick_and_learnable():
    start = time.perf_counter()
    images = data.load_images("synthetic", num_classes=10, image_size=128, synthetic_sizes=(300, 100), seed=0)
    seconds = time.perf_counter() - start
    assert images.train_x.shape == (300, 3, 128, 128) and images.test_x.shape == (100, 3, 128, 128)
    assert images.train_x.dtype == torch.uint8 and images.num_classes == 10
    assert torch.equal(images.train_y.unique(), torch.arange(10))
    assert images.train_x.float().std() > 10
    assert seconds < 3, f"{seconds:.1f} s for 400 images of 128 px"
    # the classes carry signal at this size too: nearest class-mean colour beats chance by far
    colour = images.train_x.float().mean((2, 3))
    means = torch.stack([colour[images.train_y == k].mean(0) for k in range(10)])
    predicted = torch.cdist(images.test_x.float().mean((2, 3)), means).argmin(1)
    assert (predicted == images.test_y).float().mean() > 0.5
