"""Data sources, the on-disk cache, the seeded split, augmentation and the device loader."""

import math
import os
import urllib.error

import pytest
import torch
import torchvision
from PIL import Image

from common import data, recipes
from common.augment import Compose, Cutout, RandomFlip, RandomTranslate, build_augment, normalize, op
from common.config import CIFAR10_MEAN, CIFAR10_STD, HALF_MEAN, HALF_STD
from common.data import DataUnavailable, ImageSet
from common.loader import DeviceLoader

# torchvision 0.29 deprecates its image codecs (common/data.py decodes with them): one note in the
# report is enough, not one warning per image



# ----------------------------------------------------------------------------- split

def fake_images(n_train, n_test=10):
    """Images whose single pixel holds their own index, so identity survives the split."""
    train_y = torch.arange(n_train)
    return ImageSet(train_y.view(-1, 1, 1, 1).clone(), train_y.clone(),
                    torch.zeros(n_test, 1, 1, 1), torch.zeros(n_test, dtype=torch.int64), ["a", "b"])


def test_split_sizes_and_partition():
    images = fake_images(50_000)
    parts = data.split(images, val_size=500, seed=42)
    assert len(parts.train_y) == 49_500 and len(parts.val_y) == 500
    assert len(parts.train_x) == 49_500 and len(parts.val_x) == 500
    # images stay with their labels
    assert torch.equal(parts.train_x.flatten(), parts.train_y)
    assert torch.equal(parts.val_x.flatten(), parts.val_y)
    # disjoint, and together every training image exactly once
    together = torch.cat([parts.train_y, parts.val_y]).sort().values
    assert torch.equal(together, torch.arange(50_000))
    # the test set is left alone
    assert parts.test_x is images.test_x and parts.test_y is images.test_y
    # the split is random, not the first or last 500
    assert not torch.equal(parts.val_y.sort().values, torch.arange(500))
    assert not torch.equal(parts.val_y.sort().values, torch.arange(49_500, 50_000))


def test_split_is_deterministic_in_seed():
    images = fake_images(1000)
    a, b = data.split(images, 100, seed=3), data.split(images, 100, seed=3)
    c = data.split(images, 100, seed=4)
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.val_y.sort().values, c.val_y.sort().values)


def test_split_without_validation_keeps_every_training_image():
    parts = data.split(fake_images(100), 0, seed=0)
    assert len(parts.val_y) == 0 and parts.val_x.shape == (0, 1, 1, 1)
    assert torch.equal(parts.train_y.sort().values, torch.arange(100))


@pytest.mark.parametrize("val_size", [-1, 100, 101])
def test_split_rejects_impossible_val_size(val_size):
    with pytest.raises(ValueError, match="val_size"):
        data.split(fake_images(100), val_size)


# ----------------------------------------------------------------------------- synthetic

@pytest.mark.parametrize("num_classes,n_train,n_test", [(10, 120, 40), (100, 300, 200)])
def test_synthetic_images_shape_dtype_and_classes(num_classes, n_train, n_test):
    images = data.synthetic_images(num_classes, n_train, n_test, image_size=32, seed=0)
    assert images.train_x.shape == (n_train, 3, 32, 32) and images.train_x.dtype == torch.uint8
    assert images.test_x.shape == (n_test, 3, 32, 32) and images.test_x.dtype == torch.uint8
    assert images.train_y.dtype == torch.int64 and images.test_y.dtype == torch.int64
    assert images.num_classes == num_classes == len(images.classes)
    for labels in (images.train_y, images.test_y):
        assert torch.equal(labels.unique(), torch.arange(num_classes))  # every class present
    # real images, not a constant
    assert images.train_x.float().std() > 10


def test_synthetic_images_size_option():
    images = data.synthetic_images(10, 20, 10, image_size=16, seed=0)
    assert images.train_x.shape == (20, 3, 16, 16) and images.test_x.shape == (10, 3, 16, 16)


def test_synthetic_images_are_deterministic_in_seed():
    a, b = data.synthetic_images(10, 64, 32, seed=5), data.synthetic_images(10, 64, 32, seed=5)
    c = data.synthetic_images(10, 64, 32, seed=6)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.train_x, c.train_x)


def test_synthetic_classes_carry_signal():
    """A nearest-class-mean colour classifier already beats chance by far: the classes are learnable."""
    images = data.synthetic_images(10, 500, 300, seed=0)
    colour = lambda x: x.float().mean(dim=(2, 3))  # noqa: E731
    means = torch.stack([colour(images.train_x[images.train_y == k]).mean(0) for k in range(10)])
    predicted = torch.cdist(colour(images.test_x), means).argmin(1)
    assert (predicted == images.test_y).float().mean() > 0.5


def test_load_images_synthetic_passes_options():
    images = data.load_images("synthetic", num_classes=100, image_size=16, synthetic_sizes=(200, 100), seed=2)
    assert images.train_x.shape == (200, 3, 16, 16) and images.test_x.shape == (100, 3, 16, 16)
    assert images.num_classes == 100
    assert torch.equal(images.train_x, data.synthetic_images(100, 200, 100, 16, seed=2).train_x)


def test_unknown_source_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError) as err:
        data.load_images("svhn", data_dir=tmp_path)
    for known in ("svhn", "cifar10", "cifar100", "imagefolder", "synthetic"):
        assert known in str(err.value)


# ----------------------------------------------------------------------------- image folder and cache

def pattern(seed, h=8, w=8):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def to_pil(image):
    """A C x H x W uint8 tensor (1 or 3 channels) as a PIL image."""
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path, format="PNG")


@pytest.fixture
def image_tree(tmp_path):
    """tmp/imgs/{train,test}/{cat,dog}/*.png with known 8x8 contents; returns the root and the tensors."""
    root = tmp_path / "imgs"
    expected, seed = {}, 0
    for split, per_class in (("train", 3), ("test", 2)):
        xs, ys = [], []
        for label, name in enumerate(["cat", "dog"]):  # sorted class names give the labels
            for i in range(per_class):
                seed += 1
                image = pattern(seed)
                write_png(root / split / name / f"{i}.png", image)
                xs.append(image)
                ys.append(label)
        expected[split] = (torch.stack(xs), torch.tensor(ys))
    (root / "train" / "cat" / "notes.txt").write_text("not an image: ignored")
    return root, expected


def test_imagefolder_decodes_pngs_and_writes_a_cache(image_tree, tmp_path):
    root, expected = image_tree
    images = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    assert images.classes == ["cat", "dog"]
    assert images.train_x.dtype == torch.uint8 and images.train_y.dtype == torch.int64
    assert torch.equal(images.train_x, expected["train"][0])
    assert torch.equal(images.train_y, expected["train"][1])
    assert torch.equal(images.test_x, expected["test"][0])
    assert torch.equal(images.test_y, expected["test"][1])
    caches = list((tmp_path / "data" / "cache").glob("*.pt"))
    assert len(caches) == 1 and "imgs" in caches[0].name
    assert not list((tmp_path / "data" / "cache").glob("*.tmp"))


def test_imagefolder_second_load_reads_the_cache(image_tree, tmp_path, monkeypatch):
    root, expected = image_tree
    first = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(data, "_decode_folder", no_decoding)
    second = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    assert torch.equal(second.train_x, first.train_x) and torch.equal(second.test_y, first.test_y)
    assert second.classes == ["cat", "dog"]


def test_imagefolder_changed_tree_is_decoded_again(image_tree, tmp_path):
    root, expected = image_tree
    data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    extra = pattern(99)
    write_png(root / "train" / "dog" / "9.png", extra)
    images = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    assert len(images.train_y) == 7 and torch.equal(images.train_x[-1], extra)


def test_imagefolder_truncated_cache_is_rebuilt(image_tree, tmp_path):
    root, expected = image_tree
    data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    (cache,) = (tmp_path / "data" / "cache").glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:100])
    images = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    assert torch.equal(images.train_x, expected["train"][0])


def test_imagefolder_jpeg_and_grayscale(tmp_path):
    root = tmp_path / "mixed"
    ramp = torch.arange(16, dtype=torch.float32)
    smooth = torch.stack([ramp.view(1, 16).expand(16, 16) * 8 + 40,
                          ramp.view(16, 1).expand(16, 16) * 6 + 60,
                          torch.full((16, 16), 128.0)]).round().to(torch.uint8)
    (root / "train" / "a").mkdir(parents=True)
    to_pil(smooth).save(root / "train" / "a" / "x.jpg", format="JPEG", quality=95)
    gray = pattern(7, 16, 16)[:1]
    write_png(root / "test" / "a" / "g.png", gray)
    images = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=16)
    assert images.train_x.shape == (1, 3, 16, 16)
    assert (images.train_x[0].float() - smooth.float()).abs().mean() < 3  # lossy but close
    assert images.test_x.shape == (1, 3, 16, 16)
    assert torch.equal(images.test_x[0], gray.expand(3, 16, 16))  # grey becomes three equal channels


def test_imagefolder_non_square_images_are_centre_cropped(tmp_path):
    root = tmp_path / "shapes"
    # 8 rows x 16 columns, each column its own value: the shorter side is already 8, so the
    # centre crop must keep columns 4..11 exactly
    columns = (torch.arange(16) * 15 + 5).to(torch.uint8)
    wide = columns.view(1, 1, 16).expand(3, 8, 16).contiguous()
    write_png(root / "train" / "a" / "wide.png", wide)
    # 16 x 16 of one colour: resized down to 8 x 8, the colour stays
    flat = torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1).expand(3, 16, 16).contiguous()
    write_png(root / "train" / "a" / "zflat.png", flat)
    # an awkward tall shape still comes out size x size
    write_png(root / "test" / "a" / "tall.png", pattern(3, 29, 13))
    images = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    assert images.train_x.shape == (2, 3, 8, 8) and images.test_x.shape == (1, 3, 8, 8)
    assert torch.equal(images.train_x[0], wide[:, :, 4:12])
    assert torch.equal(images.train_x[1], flat[:, :8, :8])


def test_imagefolder_corrupt_image_names_the_file(tmp_path):
    root = tmp_path / "bad"
    write_png(root / "train" / "a" / "ok.png", pattern(1))
    write_png(root / "test" / "a" / "ok.png", pattern(2))
    (root / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataUnavailable, match="broken.jpg"):
        data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)


def test_imagefolder_bmp_files_are_decoded(tmp_path):
    """A .bmp image folder decodes (PIL reads every format in IMAGE_SUFFIXES)."""
    Image = pytest.importorskip("PIL.Image")

    root = tmp_path / "bmps"
    image = pattern(4)
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / split / "a" / "x.bmp")
    images = data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)
    assert torch.equal(images.train_x[0], image)


def test_missing_image_folder_names_folder_and_ways_out(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataUnavailable) as err:
        data.load_images(f"imagefolder:{missing}", data_dir=tmp_path / "data")
    message = str(err.value)
    assert str(missing) in message and "imagefolder" in message and "smoke" in message
    assert not list(tmp_path.glob("data/cache/*"))  # nothing cached


def test_image_folder_without_test_split_is_refused(tmp_path):
    root = tmp_path / "half"
    write_png(root / "train" / "a" / "x.png", pattern(1))
    with pytest.raises(DataUnavailable, match="test"):
        data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data")


@pytest.mark.parametrize("source,cls_name", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100")])
@pytest.mark.parametrize("error", [urllib.error.URLError("no internet"), OSError(101, "Network is unreachable")])
def test_missing_cifar_download_names_data_set_folder_and_ways_out(tmp_path, monkeypatch, source, cls_name, error):
    def offline(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", offline)
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "__init__", offline)
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    with pytest.raises(DataUnavailable) as err:
        data.load_images(source)
    message = str(err.value)
    assert cls_name in message.upper().replace("-", "")
    assert str(tmp_path / source) in message
    assert "imagefolder" in message and "smoke" in message
    assert not (tmp_path / "cache").exists()  # nothing half-written


# ----------------------------------------------------------------------------- augmentation

def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def shifted(image, dy, dx):
    """Independent reference: out[y, x] = in[y - dy, x - dx], zero where that falls outside."""
    out = torch.roll(image, shifts=(dy, dx), dims=(-2, -1)).clone()
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


@pytest.mark.parametrize("h,w", [(32, 32), (20, 40)])
def test_translate_moves_a_pixel_by_at_most_a_tenth(h, w):
    n = 400
    dot = torch.zeros(n, 3, h, w)
    cy, cx = h // 2, w // 2
    dot[:, :, cy, cx] = 1.0
    out = RandomTranslate(0.1)(dot, gen(1))
    assert out.shape == dot.shape
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.full((n,), 3.0))  # the dot is moved, never lost
    where = out[:, 0].flatten(1).argmax(1)
    dy, dx = where // w - cy, where % w - cx
    max_y, max_x = round(0.1 * h), round(0.1 * w)
    assert dy.abs().max() <= max_y and dx.abs().max() <= max_x
    assert set(dy.tolist()) == set(range(-max_y, max_y + 1))  # every shift occurs, both extremes
    assert set(dx.tolist()) == set(range(-max_x, max_x + 1))


def test_translate_equals_an_independent_shift_with_black_border():
    n, h, w = 64, 32, 32
    dot = torch.zeros(n, 3, h, w)
    dot[:, :, 16, 16] = 1.0
    where = RandomTranslate(0.1)(dot, gen(7))[:, 0].flatten(1).argmax(1)
    dys, dxs = (where // w - 16).tolist(), (where % w - 16).tolist()
    # the shifts depend only on the generator, so the same seed moves real images the same way
    images = torch.rand(n, 3, h, w, generator=gen(8)) + 0.01  # no zeros of their own
    out = RandomTranslate(0.1)(images, gen(7))
    for i in range(n):
        assert torch.equal(out[i], shifted(images[i], dys[i], dxs[i])), (i, dys[i], dxs[i])
    assert any(dy != 0 for dy in dys) and any(dx != 0 for dx in dxs)


def test_flip_flips_about_half_and_only_horizontally():
    n = 2000
    image = torch.rand(1, 3, 4, 5, generator=gen(0))
    out = RandomFlip(0.5)(image.expand(n, -1, -1, -1), gen(1))
    same = (out == image).flatten(1).all(1)
    flipped = (out == image.flip(3)).flatten(1).all(1)
    assert torch.all(same ^ flipped)  # each one is the image or its mirror
    assert 0.45 < flipped.float().mean() < 0.55
    assert not RandomFlip(0.0)(image.expand(50, -1, -1, -1), gen(2)).ne(image).any()
    assert torch.equal(RandomFlip(1.0)(image.expand(50, -1, -1, -1), gen(2)), image.flip(3).expand(50, -1, -1, -1))


def test_cutout_zeroes_one_8x8_square_inside_every_image():
    n, h, w = 300, 32, 32
    images = torch.rand(n, 3, h, w, generator=gen(0)) + 0.01  # no zeros of their own
    out = Cutout(8)(images, gen(1))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])  # all channels
    tops, lefts = [], []
    for i in range(n):
        rows = zero[i, 0].any(1).nonzero().flatten()
        cols = zero[i, 0].any(0).nonzero().flatten()
        assert zero[i, 0].sum() == 64
        top, left = int(rows[0]), int(cols[0])
        assert rows.tolist() == list(range(top, top + 8)) and cols.tolist() == list(range(left, left + 8))
        assert zero[i, 0, top:top + 8, left:left + 8].all()  # a full square, fully inside
        tops.append(top)
        lefts.append(left)
    assert torch.equal(out[~zero], images[~zero])  # the rest is untouched
    assert min(tops) == 0 and max(tops) == h - 8 and min(lefts) == 0 and max(lefts) == w - 8


def test_build_augment_parses_spec_and_rejects_unknown_names():
    assert build_augment(None) is None and build_augment(()) is None
    chain = build_augment((op("flip"), op("translate", fraction=0.1), op("cutout", size=8)))
    assert isinstance(chain, Compose)
    assert [type(step) for step in chain.ops] == [RandomFlip, RandomTranslate, Cutout]
    assert chain.ops[1].fraction == 0.1 and chain.ops[2].size == 8
    assert build_augment((op("flip", p=0.25),)).ops[0].p == 0.25
    with pytest.raises(ValueError) as err:
        build_augment((op("flip"), {"op": "blur", "kernel": 3}))
    for known in ("rotate", "flip", "translate", "cutout"):
        assert known in str(err.value)


def test_normalize_per_channel():
    x = torch.rand(2, 3, 4, 4, generator=gen(0))
    out = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    for c in range(3):
        assert torch.allclose(out[:, c], (x[:, c] - CIFAR10_MEAN[c]) / CIFAR10_STD[c])


# ----------------------------------------------------------------------------- loader

def loader_data(n=50, h=8, w=8, seed=0):
    x = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=gen(seed))
    return x, torch.arange(n)


@pytest.mark.parametrize("augment", [None, (op("flip"), op("translate", fraction=0.1), op("cutout", size=4))])
def test_loader_sees_every_sample_once_per_epoch(augment):
    x, y = loader_data(50)
    loader = DeviceLoader(x, y, batch_size=8, mean=HALF_MEAN, std=HALF_STD, augment=build_augment(augment))
    assert len(loader) == 7
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert [len(labels) for _, labels in batches] == [8] * 6 + [2]
        seen = torch.cat([labels for _, labels in batches])
        assert torch.equal(seen.sort().values, torch.arange(50))


def test_loader_batches_hold_the_right_images_normalised():
    x, y = loader_data(30)
    loader = DeviceLoader(x, y, batch_size=7, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    for images, labels in loader:
        assert images.dtype == torch.float32 and images.shape == (len(labels), 3, 8, 8)
        expected = x[labels].float() / 255
        for c in range(3):
            expected[:, c] = (expected[:, c] - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        assert torch.allclose(images, expected, atol=1e-6)


def test_loader_order_depends_on_epoch_and_seed_only():
    x, y = loader_data(64)
    spec = build_augment((op("flip"), op("translate", fraction=0.1)))
    make = lambda seed: DeviceLoader(x, y, 16, HALF_MEAN, HALF_STD, augment=spec, seed=seed)  # noqa: E731
    loader = make(0)

    def epoch_of(ld, epoch):
        ld.set_epoch(epoch)
        batches = list(ld)
        return torch.cat([b[1] for b in batches]), torch.cat([b[0] for b in batches])

    order1, images1 = epoch_of(loader, 1)
    order2, _ = epoch_of(loader, 2)
    again, images_again = epoch_of(loader, 1)
    other_loader, _ = epoch_of(make(0), 1)
    other_seed, _ = epoch_of(make(1), 1)
    assert not torch.equal(order1, order2)
    assert torch.equal(order1, again) and torch.equal(images1, images_again)  # augmentation too
    assert torch.equal(order1, other_loader)
    assert not torch.equal(order1, other_seed)


def test_loader_without_shuffle_keeps_order():
    x, y = loader_data(20)
    loader = DeviceLoader(x, y, 6, HALF_MEAN, HALF_STD, shuffle=False)
    assert torch.equal(torch.cat([labels for _, labels in loader]), torch.arange(20))


def test_loader_output_range_matches_unit_inputs():
    x = torch.tensor([0, 255], dtype=torch.uint8).repeat(40 * 3 * 8 * 4).view(40, 3, 8, 8)
    loader = DeviceLoader(x, torch.arange(40), 16, HALF_MEAN, HALF_STD,
                          augment=build_augment((op("flip"), op("translate", fraction=0.1), op("cutout", size=4))))
    values = torch.cat([images for images, _ in loader])
    assert values.min() == -1.0 and values.max() == 1.0  # [0, 1] -> [-1, 1] with mean = std = 0.5
    loader = DeviceLoader(x, torch.arange(40), 16, CIFAR10_MEAN, CIFAR10_STD)
    values = torch.cat([images for images, _ in loader])
    for c in range(3):
        low, high = (0 - CIFAR10_MEAN[c]) / CIFAR10_STD[c], (1 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        assert math.isclose(values[:, c].min().item(), low, rel_tol=1e-5)
        assert math.isclose(values[:, c].max().item(), high, rel_tol=1e-5)


def test_loader_augments_each_sample_differently():
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8, generator=gen(3))
    x = image.expand(64, -1, -1, -1).contiguous()
    loader = DeviceLoader(x, torch.arange(64), 64, HALF_MEAN, HALF_STD,
                          augment=build_augment((op("flip"), op("translate", fraction=0.1))))
    (images, _), = list(loader)
    distinct = torch.unique(images.flatten(1), dim=0)
    assert len(distinct) >= 10  # per-sample parameters, not one draw per batch


def test_loader_channels_last():
    x, y = loader_data(10)
    loader = DeviceLoader(x, y, 4, HALF_MEAN, HALF_STD, channels_last=True,
                          augment=build_augment((op("flip"), op("translate", fraction=0.1))))
    for images, _ in loader:
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert not images.is_contiguous()
    plain = DeviceLoader(x, y, 4, HALF_MEAN, HALF_STD)
    assert all(images.is_contiguous() for images, _ in plain)


def test_loader_rejects_mismatched_inputs():
    x, y = loader_data(10)
    with pytest.raises(ValueError):
        DeviceLoader(x, y[:9], 4, HALF_MEAN, HALF_STD)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(x, y, 0, HALF_MEAN, HALF_STD)


def test_an_unwritable_data_folder_configures_and_loads_without_caching(image_tree, tmp_path, monkeypatch):
    root, expected = image_tree
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data folder should be")  # nothing can be written under it, as if read-only
    monkeypatch.setenv("REPRO_DATA", str(blocked))
    cfg = recipes.level_e("basic", source=f"imagefolder:{root}")  # the identity is taken at config time
    assert cfg.source == "imagefolder:" + data.folder_identity(root)
    with pytest.warns(UserWarning, match="Cannot keep the decoded images .* decoded again next time"):
        images = data.load_images(cfg.source, image_size=8, folder=cfg.source_path)
    assert torch.equal(images.train_x, expected["train"][0])
    assert blocked.read_text() == "a file where the data folder should be"


def test_an_image_edited_in_place_with_its_time_restored_is_seen_after_forgetting_the_identities(image_tree, tmp_path,
                                                                                                 monkeypatch):
    root, _ = image_tree
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    before = data.folder_identity(root)
    image = root / "train" / "cat" / "0.png"
    times = image.stat()
    edited = bytearray(image.read_bytes())
    edited[-20] ^= 0xFF  # same size
    image.write_bytes(bytes(edited))
    os.utime(image, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert data.folder_identity(root) == before  # the documented limit: sizes and times are trusted
    assert data.forget_folder_identities() == 1
    assert data.folder_identity(root) != before
