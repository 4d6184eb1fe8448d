"""Benchmark: the device-resident data path and fit() against their plain alternatives.

    python -m common.bench                      # synthetic data, a few minutes on a 2-core CPU
    python -m common.bench --quick              # a smoke check in well under a minute
    python -m common.bench --source imagefolder:/work/cifar10jpg --out bench-real.csv

It measures, side by side in one run and on one machine:
1. loader: images/s of DeviceLoader with the Level E augmentation (flip + translate 0.1),
   with Cutout 8 added, and with the Level A chain (crop, flip, translate, colour jitter,
   rotation, Cutout), against a torchvision DataLoader doing the same per image on PIL
   images in 2 worker processes (the report's original data path); target >= 3x.
2. training: images/s of common.train.fit, without and with per-epoch checkpoints, against
   the simplest correct loop over the same model, recipe and batches; target >= 0.9x.
3. models: training images/s of every report network (random batches, AdamW, label smoothing),
   fp32 with channels_last off and on, and on CUDA the fast path (bf16 autocast, channels_last).
Variants run in turn (A B A B ...) and each reports its median, so a drift in background load
hits all of them alike. The table is printed and written to smoke/bench.csv (or --out).
"""

import argparse
import csv
import datetime
import itertools
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from . import paths, recipes
from .augment import LEVEL_A_AUGMENT, build_augment
from .data import DataUnavailable, load_images, synthetic_images
from .loader import DeviceLoader
from .models import build_model
from .train import fit

CHAINS = {"flip+translate": ("flip", "translate=0.1"),
          "flip+translate+cutout8": ("flip", "translate=0.1", "cutout=8"),
          "level A": LEVEL_A_AUGMENT}
DEFAULTS = dict(n_train=10000, fit_images=2000, repeats=3)
QUICK = dict(n_train=1000, fit_images=200, repeats=2, model_batch=8, model_steps=1)


class TensorCutout:
    """Baseline Cutout on a C x H x W tensor: one size x size hole fully inside, filled with 0."""

    def __init__(self, size: int = 8):
        self.size = size

    def __call__(self, img):
        _, h, w = img.shape
        top = int(torch.randint(0, h - self.size + 1, ()))  # torch RNG: seeded per worker
        left = int(torch.randint(0, w - self.size + 1, ()))
        img = img.clone()
        img[:, top:top + self.size, left:left + self.size] = 0
        return img


class PilDataset(torch.utils.data.Dataset):
    """(PIL image, label) pairs transformed per item, as a torchvision data set does."""

    def __init__(self, x, y, transform):
        from PIL import Image

        # decoded once, up front and untimed, as torchvision's CIFAR10 holds its arrays
        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
        self.labels, self.transform = y.tolist(), transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def pil_transform(spec, size):
    """The torchvision transforms that do per PIL image what build_augment(spec) does per batch."""
    from torchvision import transforms as T

    pil = {"crop": lambda padding=4: T.RandomCrop(size, padding=int(padding)),
           "flip": T.RandomHorizontalFlip,
           "translate": lambda f=0.1: T.RandomAffine(degrees=0, translate=(f, f)),
           "jitter": T.ColorJitter,
           "rotate": T.RandomRotation}
    before, after = [], []  # PIL ops, then ToTensor, then Cutout on the tensor
    for item in spec:
        name, _, arg = item.partition("=")
        args = [float(a) for a in arg.split(",")] if arg else []
        if name == "cutout":
            after.append(TensorCutout(*map(int, args)))
        else:
            before.append(pil[name](*args))
    return T.Compose(before + [T.ToTensor()] + after + [T.Normalize((0.5,) * 3, (0.5,) * 3)])


def torchvision_loader(x, y, spec, workers: int, device):
    """The original path: PIL transforms per image in DataLoader worker processes."""
    dataset = PilDataset(x, y, pil_transform(spec, size=tuple(x.shape[-2:])))
    return torch.utils.data.DataLoader(dataset, batch_size=100, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, pin_memory=device.type == "cuda")


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def drain(loader, device) -> int:
    """Pull one epoch of batches onto `device`; the number of images seen."""
    n = 0
    for images, labels in loader:
        images.to(device, non_blocking=True)
        n += len(labels)
    return n


def alternate(variants: dict, repeats: int, device, warmup: bool = True) -> dict:
    """Run the variants in turn `repeats` times; each one's median images/s."""
    if warmup:  # first epochs start workers and allocators: not what is measured
        for run in variants.values():
            run()
    rates = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            sync(device)
            started = time.perf_counter()
            n = run()
            sync(device)
            rates[name].append(n / (time.perf_counter() - started))
    return {name: statistics.median(r) for name, r in rates.items()}


def bench_loader(x, y, repeats: int, workers: int, device) -> list:
    """Rows of the loader benchmark: per chain, the torchvision baseline then DeviceLoader."""
    rows = []
    for chain, spec in CHAINS.items():
        baseline = torchvision_loader(x, y, spec, workers=workers, device=device)
        ours = DeviceLoader(x, y, 100, (0.5,) * 3, (0.5,) * 3, augment=build_augment(spec), device=device)
        rates = alternate({f"torchvision DataLoader, PIL, {workers} workers": lambda: drain(baseline, device),
                           f"DeviceLoader ({device.type})": lambda: drain(ours, device)}, repeats, device)
        rows += table_rows(f"loader {chain}", rates, target=3.0, images=len(y))
        del baseline  # ends its persistent workers before the next chain starts its own
    return rows


def bare_loop(model, loader, cfg) -> int:
    """The simplest correct loop of the recipe: Adam, CrossEntropy, grad clip, CyclicLR per batch."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    s = cfg.schedule
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=s["base_lr"], max_lr=s["max_lr"], mode="triangular2", cycle_momentum=False,
        step_size_up=max(1, round(s["up_fraction"] * len(loader) * cfg.epochs)))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    n = 0
    for epoch in range(1, cfg.epochs + 1):
        loader.set_epoch(epoch)
        for images, labels in loader:
            loss = loss_fn(model(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            n += len(labels)
    return n


def fit_images(model, loader, cfg, checkpoint_dir=None) -> int:
    """common.train.fit with its progress bar off; the number of images trained on."""
    fit(model, loader, None, cfg, checkpoint_dir=checkpoint_dir, progress=False)
    return len(loader.y) * cfg.epochs


def bench_training(x, y, repeats: int, device) -> list:
    """Rows of the training benchmark: bare loop, fit, fit with checkpoints, same batches."""
    cfg = recipes.level_e("basic", profile="smoke").replace(epochs=1)
    loader = DeviceLoader(x, y, cfg.batch_size, cfg.mean, cfg.std, augment=build_augment(cfg.augment),
                          device=device, seed=cfg.seed)
    runs = itertools.count()

    def fresh_model():  # the same initial weights for every variant; built in a few ms
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, cfg.num_classes, **cfg.model_options).to(device)

    bare_loop(fresh_model(), loader, cfg)  # warm-up: the first conv calls pick their kernels
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        # a fresh checkpoint folder per run: in an old one fit() would resume, not train
        rates = alternate({
            "bare loop": lambda: bare_loop(fresh_model(), loader, cfg),
            "fit, no checkpoints": lambda: fit_images(fresh_model(), loader, cfg),
            "fit, checkpoint per epoch": lambda: fit_images(fresh_model(), loader, cfg, Path(tmp) / str(next(runs))),
        }, repeats, device, warmup=False)
    return table_rows(f"training {cfg.model}", rates, target=0.9, images=len(y))


MODELS = ("vgg_basic", "resnet18", "se_resnet18", "convnext")


def train_steps(model, batch, labels, steps: int, amp_dtype=None) -> int:
    """`steps` Level A training steps (AdamW, label smoothing 0.1) on one batch; images trained on."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    for _ in range(steps):
        with torch.autocast(batch.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(model(batch).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * len(labels)


def bench_models(names, batch_size: int, steps: int, repeats: int, device) -> list:
    """Rows of the model benchmark: per network, fp32 NCHW (the baseline), fp32 channels_last, CUDA's fast path."""
    rows = []
    labels = torch.randint(0, 10, (batch_size,), device=device)
    nchw = torch.rand(batch_size, 3, 32, 32, device=device)
    nhwc = nchw.contiguous(memory_format=torch.channels_last)
    for name in names:
        torch.manual_seed(0)
        plain = build_model(name, 10).to(device)
        last = build_model(name, 10).to(device).to(memory_format=torch.channels_last)
        variants = {"fp32, NCHW": lambda: train_steps(plain, nchw, labels, steps),
                    "fp32, channels_last": lambda: train_steps(last, nhwc, labels, steps)}
        if device.type == "cuda":
            variants["bf16 autocast, channels_last"] = lambda: train_steps(last, nhwc, labels, steps, torch.bfloat16)
        rates = alternate(variants, repeats, device)
        rows += table_rows(f"train {name} (batch {batch_size})", rates, target=None, images=batch_size * steps)
    return rows


def table_rows(benchmark: str, rates: dict, target: float, images: int) -> list:
    """One row per variant, each ratio against the first (the baseline)."""
    base = next(iter(rates.values()))
    return [{"benchmark": benchmark, "variant": name, "images_per_s": round(rate, 1),
             "ratio": round(rate / base, 2), "target": "" if i == 0 or target is None else f">={target}",
             "images": images}
            for i, (name, rate) in enumerate(rates.items())]


def machine(device) -> str:
    """CPU model and threads (and the GPU where one is used), for the table and the CSV."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return text + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")


def load_data(source: str, n: int, seed: int = 0):
    """n training images (uint8) and labels from the source, a seeded random subset of a real set."""
    if source == "synthetic":
        images = synthetic_images(10, n, 1, seed=seed)
        return images.train_x, images.train_y
    images = load_images(source)  # decoded once, then read from the cache in data/cache
    idx = torch.randperm(len(images.train_y), generator=torch.Generator().manual_seed(seed))[:n]
    return images.train_x[idx], images.train_y[idx]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m common.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="synthetic", help="synthetic (default) or imagefolder:PATH")
    parser.add_argument("--n-train", type=int, help=f"images of the loader benchmark ({DEFAULTS['n_train']})")
    parser.add_argument("--fit-images", type=int, help=f"images of the training benchmark ({DEFAULTS['fit_images']})")
    parser.add_argument("--repeats", type=int, help=f"timed runs of each variant; the median counts ({DEFAULTS['repeats']})")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline (2)")
    parser.add_argument("--only", choices=("loader", "training", "models"), help="run one of the three benchmarks")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                        help="networks of the model benchmark (all)")
    parser.add_argument("--model-batch", type=int, help="batch of the model benchmark (256 on CUDA, 32 on a CPU)")
    parser.add_argument("--model-steps", type=int, help="timed steps per variant and repeat (20 on CUDA, 2 on a CPU)")
    parser.add_argument("--threads", type=int, help="torch threads of the main process (torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check in well under a minute")
    parser.add_argument("--out", type=Path, help="CSV to write (default: smoke/bench.csv, git-ignored)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:  # explicit sizes win over --quick
            setattr(args, key, value)
    if args.n_train < 100 or args.fit_images < 100:
        parser.error(f"--n-train ({args.n_train}) and --fit-images ({args.fit_images}) must be at least 100, one batch.")
    if args.repeats < 1 or args.workers < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats and --threads must be at least 1 and --workers must not be negative.")
    if args.source != "synthetic" and not args.source.startswith("imagefolder:"):
        parser.error(f"Unknown --source {args.source!r}: use synthetic or imagefolder:PATH.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device} was asked for but no CUDA GPU is available: use --device cpu.")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as fit() does: denormals once made CPU epochs 4x slower
    try:
        x, y = load_data(args.source, max(args.n_train, args.fit_images))
    except (DataUnavailable, ValueError) as err:
        raise SystemExit(f"bench: {err}") from None
    rows = []
    if args.only in (None, "loader"):
        rows += bench_loader(x[:args.n_train], y[:args.n_train], args.repeats, args.workers, device)
    if args.only in (None, "training"):
        rows += bench_training(x[:args.fit_images], y[:args.fit_images], args.repeats, device)
    if args.only in (None, "models"):
        on_gpu = device.type == "cuda"
        rows += bench_models(args.models, args.model_batch or (256 if on_gpu else 32),
                             args.model_steps or (20 if on_gpu else 2), args.repeats, device)
    stamp = {"source": args.source, "repeats": args.repeats, "machine": machine(device),
             "torch": torch.__version__, "device": str(device),
             "date": datetime.datetime.now().isoformat(timespec="seconds")}
    rows = [{**row, **stamp} for row in rows]
    print(f"{stamp['machine']} | torch {stamp['torch']} | device {device} | source {args.source} | "
          f"median of {args.repeats}")
    for row in rows:
        print(f"{row['benchmark']:<36} {row['variant']:<40} {row['images_per_s']:>10.1f} img/s "
              f"{row['ratio']:>6.2f}x {row['target']}")
    out = args.out or paths.repo_root() / "smoke" / "bench.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
