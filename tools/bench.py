"""Benchmark: the device-resident data path, fit() and every report network, against plain alternatives.

    python tools/bench.py                      # synthetic data, about five minutes on a 2-core CPU
    python tools/bench.py --quick              # a smoke check in well under a minute
    python tools/bench.py --compile            # adds torch.compile, default against dynamic=False
    python tools/bench.py --source imagefolder:/path/to/cifar10-jpeg --out bench-real.csv

It measures, side by side in one run and on one machine:
1. loader: images/s of DeviceLoader with the Level E augmentation (flip + translate 0.1),
   with Cutout 8 added, and with the Level A chain (crop, flip, translate, colour jitter,
   rotation, Cutout), against a torchvision DataLoader doing the same per image on PIL
   images in 2 worker processes (the report's original data path); target >= 3x.
2. training: images/s of common.train.fit, without and with per-epoch checkpoints, against
   the simplest correct loop with the same model, batches, optimiser, schedule and precision;
   target >= 0.95x (fit costs at most 5 %).
3. models: training images/s of every report network (random batches, AdamW, label smoothing),
   fp32 with channels_last off and on, and the fast path where it differs: autocast as fit()
   runs precision "auto" (bf16 where the device computes it natively, fp16 on an older GPU),
   channels_last. With --compile, per network, the fast path under torch.compile with its
   default (shapes turn dynamic once a second batch shape is seen) and with dynamic=False (a
   static graph per shape): each first sees the full batch and an epoch's uneven last batch
   (both compilations reported as compile_s), then trains on full batches, as the next epoch does.
4. epoch: seconds per CIFAR-10 epoch (50,000 images, 196 steps) of ResNet18 at batch 256 with
   the Level A chain on DeviceLoader, through fit() on the fast path. On CUDA it times one whole
   epoch; on a CPU a few steps, extrapolated to 196 (the variant says from how many). An untimed
   first pass trains on every batch shape the timed epoch has (cuDNN tunes each new shape).
Variants run in turn (A B A B ...) and each reports its median, so a drift in background load
hits all of them alike (the two torch.compile variants run one after the other, each with its own
compiler state). The table is printed and written, every row naming the machine, to
results/bench.csv (or --out).
"""

import argparse
import csv
import datetime
import functools
import itertools
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from this checkout, installed or not

from common import paths, recipes  # noqa: E402
from common.augment import build_augment  # noqa: E402
from common.data import DataUnavailable, Split, load_images, synthetic_images  # noqa: E402
from common.device import AUTOCAST, auto_precision, autocast_dtype, cpu_bf16_kind, flush_denormals, precision_name  # noqa: E402
from common.experiment import build_for, make_loaders  # noqa: E402
from common.loader import DeviceLoader  # noqa: E402
from common.models import build_model  # noqa: E402
from common.schedules import build_schedule  # noqa: E402
from common.train import Loaders, build_optimizer, fit  # noqa: E402

CHAINS = {"flip+translate": recipes.LEVEL_E["augment"], "flip+translate+cutout8": recipes.CUTOUT_AUGMENT,
          "level A": recipes.LEVEL_A_AUGMENT}
MODELS = ("vgg_basic", "resnet18", "se_resnet18", "convnext", "vit")  # every network the report trains
EPOCH_IMAGES = 50_000  # CIFAR-10's training set: one epoch of the epoch benchmark
DEFAULTS = dict(n_train=10000, fit_images=2000, repeats=3, epoch_batch=256)
QUICK = dict(n_train=1000, fit_images=200, repeats=2, model_batch=8, model_steps=1, epoch_batch=16, epoch_steps=1)
COLUMNS = ("benchmark", "variant", "images_per_s", "ratio", "target", "images", "seconds_per_epoch", "compile_s")
BENCHMARKS = ("loader", "training", "models", "epoch")


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
        # decoded once, up front and untimed, as torchvision's CIFAR10 holds its arrays
        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
        self.labels, self.transform = y.tolist(), transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


# torchvision's transform for each augmentation step (common.augment.op) that has one, from the step's parameters
PIL_OPS = {"crop": lambda size, padding: T.RandomCrop(size, padding=int(padding)),
           "flip": lambda size, p: T.RandomHorizontalFlip(p),
           "translate": lambda size, fraction: T.RandomAffine(degrees=0, translate=(fraction, fraction)),
           "jitter": lambda size, **strengths: T.ColorJitter(**strengths),
           "rotate": lambda size, degrees: T.RandomRotation(degrees)}


def pil_transform(spec, size):
    """The torchvision transforms that do per PIL image what build_augment(spec) does per batch."""
    before, after = [], []  # PIL ops, then ToTensor, then Cutout on the tensor
    for step in spec:
        name, params = step["op"], {key: value for key, value in step.items() if key != "op"}
        if name == "cutout":
            after.append(TensorCutout(int(params["size"])))
        elif name in PIL_OPS:
            before.append(PIL_OPS[name](size, **params))
        else:
            raise ValueError(f"The loader benchmark has no torchvision baseline for the augmentation {name!r}: "
                             f"its chains may use {', '.join([*PIL_OPS, 'cutout'])}.")
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


def alternate(variants: dict, repeats: int, device, first_pass: bool = True) -> dict:
    """Run the variants in turn `repeats` times, after an untimed `first_pass` of each; each one's median images/s."""
    if first_pass:  # first epochs start workers and allocators: not what is measured
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
        variants = {f"torchvision DataLoader, PIL, {workers} workers": functools.partial(drain, baseline, device),
                    f"DeviceLoader ({device.type})": functools.partial(drain, ours, device)}
        rates = alternate(variants, repeats, device)
        rows += table_rows(f"loader {chain}", rates, target=3.0, images=len(y))
        del baseline  # ends its persistent workers before the next chain starts its own
    return rows


def bare_loop(model, loader, cfg) -> int:
    """The simplest correct loop of the recipe, with fit()'s optimiser, schedule, loss and precision."""
    device = loader.device
    amp_dtype = autocast_dtype(cfg, device)
    opt = build_optimizer(model, cfg)  # fit's own builder: fused on CUDA for both, or the comparison is unfair
    schedule = build_schedule(opt, cfg.schedule, len(loader), cfg.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)  # fp16 is incorrect without it
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    model.train()
    n = 0
    for epoch in range(1, cfg.epochs + 1):
        loader.set_epoch(epoch)
        for images, labels in loader:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = loss_fn(model(images).float(), labels)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if schedule.unit == "batch":
                schedule.scheduler.step()
            n += len(labels)
        if schedule.unit == "epoch":
            schedule.scheduler.step()
    return n


def fit_images(model, loader, cfg, checkpoint_dir=None) -> int:
    """common.train.fit with its progress bar off; the number of images trained on."""
    fit(model, Loaders(loader), cfg, checkpoint_dir, progress=False)
    return len(loader.y) * cfg.epochs


def recipe_loader(x, y, cfg, device) -> DeviceLoader:
    """The run's augmented training loader on the images `x`, as run_experiment makes it."""
    none = x[:0], y[:0]  # no validation or test images
    return make_loaders(cfg, Split(x, y, *none, *none, classes=[]), device).train


def bench_training(x, y, repeats: int, device) -> list:
    """Rows of the training benchmark: bare loop, fit, fit with checkpoints; same model, batches and optimiser."""
    cfg = recipes.level_e("basic", profile="smoke").replace(epochs=1)
    loader = recipe_loader(x, y, cfg, device)
    runs = itertools.count()
    bare_loop(build_for(cfg, device), loader, cfg)  # untimed: the first conv calls pick their kernels
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        # a fresh model per run (the same initial weights, built in a few ms), and a fresh checkpoint
        # folder per run: in an old one fit() would resume, not train
        rates = alternate({
            "bare loop": lambda: bare_loop(build_for(cfg, device), loader, cfg),
            "fit, no checkpoints": lambda: fit_images(build_for(cfg, device), loader, cfg),
            "fit, checkpoint per epoch": lambda: fit_images(build_for(cfg, device), loader, cfg,
                                                            Path(tmp) / str(next(runs))),
        }, repeats, device, first_pass=False)
    return table_rows(f"training {cfg.model}", rates, target=0.95, images=len(y))


def train_steps(model, batch, labels, steps: int, amp_dtype=None) -> int:
    """`steps` Level A training steps (AdamW, label smoothing 0.1) on one batch; images trained on."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    scaler = torch.amp.GradScaler(batch.device.type, enabled=amp_dtype == torch.float16)  # as fit() does for fp16
    model.train()
    for _ in range(steps):
        with torch.autocast(batch.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(model(batch).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return steps * len(labels)


def fast_path(device) -> tuple:
    """(autocast dtype or None, name) of fit's precision "auto" (common.device) with channels_last."""
    amp_dtype = AUTOCAST[auto_precision(device)]
    return amp_dtype, (f"{precision_name(amp_dtype)} autocast" if amp_dtype else "fp32") + ", channels_last"


def random_batch(batch_size: int, device, channels_last: bool = False) -> tuple:
    """A random CIFAR-shaped batch and its labels."""
    images = torch.rand(batch_size, 3, 32, 32, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, torch.randint(0, 10, (batch_size,), device=device)


def model_variants(name: str, batch_size: int, device) -> dict:
    """Each variant's name and its run(steps), on one random batch; the baseline first."""
    nchw, labels = random_batch(batch_size, device)
    nhwc = nchw.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    plain = build_model(name, 10).to(device)
    last = build_model(name, 10).to(device).to(memory_format=torch.channels_last)
    variants = {"fp32, NCHW": functools.partial(train_steps, plain, nchw, labels),
                "fp32, channels_last": functools.partial(train_steps, last, nhwc, labels)}
    amp_dtype, fast = fast_path(device)
    if amp_dtype is not None:
        variants[fast] = functools.partial(train_steps, last, nhwc, labels, amp_dtype=amp_dtype)
    return variants


def timed(run, device) -> float:
    """Seconds that run() takes, the device finished."""
    sync(device)
    started = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - started


def bench_models(names, batch_size: int, steps: int, repeats: int, device, compiled: bool = False) -> list:
    """Rows of the model benchmark: per network, fp32 NCHW (the baseline), fp32 channels_last and the fast path;
    with `compiled`, then the compile benchmark's rows of that network."""
    rows = []
    for name in names:
        variants = model_variants(name, batch_size, device)
        for run in variants.values():  # one untimed step each (not `steps`: a CPU step of ConvNeXt takes seconds)
            run(1)
        rates = alternate({variant: functools.partial(run, steps) for variant, run in variants.items()},
                          repeats, device, first_pass=False)
        rows += table_rows(f"train {name} (batch {batch_size})", rates, target=None, images=batch_size * steps)
        if compiled:
            rows += bench_compile(name, batch_size, steps, repeats, device)
    return rows


def bench_compile(name: str, batch_size: int, steps: int, repeats: int, device) -> list:
    """Rows of a network's fast path under torch.compile: default against dynamic=False, after an uneven batch."""
    amp_dtype, fast = fast_path(device)
    last = EPOCH_IMAGES % batch_size or max(1, batch_size // 2)  # the last batch of a CIFAR-10 epoch
    full, labels = random_batch(batch_size, device, channels_last=True)
    rates, compiling = {}, {}
    for variant, options in ((f"{fast}, torch.compile (default)", {}),
                             (f"{fast}, torch.compile(dynamic=False)", {"dynamic": False})):
        torch._dynamo.reset()  # each variant compiles from scratch: no graph or shape decision of the other
        torch.manual_seed(0)
        model = torch.compile(build_model(name, 10).to(device).to(memory_format=torch.channels_last), **options)
        # the two shapes of an epoch, full batches and the last one: what a compiled run has seen after epoch 1
        compiling[variant] = sum(timed(functools.partial(train_steps, model, full[:n], labels[:n], 1, amp_dtype),
                                       device) for n in (batch_size, last))
        run = functools.partial(train_steps, model, full, labels, steps, amp_dtype)
        rates[variant] = statistics.median(steps * batch_size / timed(run, device) for _ in range(repeats))
    torch._dynamo.reset()
    return table_rows(f"compile {name} (batch {batch_size}, last batch {last})", rates, target=None,
                      images=batch_size * steps, compile_s=compiling)


def bench_epoch(x, y, batch_size: int, steps: int, device) -> list:
    """The row of the epoch benchmark: seconds per 50,000-image epoch of Level A ResNet18 through fit().

    A whole epoch where `steps` covers one, else `steps` steps extrapolated to an epoch's; one untimed step first.
    """
    cfg = recipes.level_a("resnet18").replace(epochs=1, batch_size=batch_size)
    model = build_for(cfg, device)
    n = min(steps * batch_size, EPOCH_IMAGES)
    # the first pass sees every batch shape of the timed epoch, its uneven last batch too: cuDNN tunes each new shape
    first = batch_size + n % batch_size
    fit(model, Loaders(recipe_loader(x[:first], y[:first], cfg, device)), cfg, progress=False)
    loader = recipe_loader(x[:n], y[:n], cfg, device)
    seconds = fit(model, Loaders(loader), cfg, progress=False).history[0]["train_seconds"]
    epoch_steps = math.ceil(EPOCH_IMAGES / batch_size)
    how = ("one whole epoch" if len(loader) == epoch_steps else
           f"extrapolated from {len(loader)} step{'s' * (len(loader) != 1)}")
    variant = f"fit + level A DeviceLoader, {fast_path(device)[1]}, {how}"
    return [row(f"{cfg.model} epoch (batch {batch_size})", variant, n / seconds, images=n,
                seconds_per_epoch=round(seconds * epoch_steps / len(loader), 1))]


def row(benchmark: str, variant: str, rate: float, **values) -> dict:
    """One table row with every column; what a benchmark does not measure stays empty."""
    return {**dict.fromkeys(COLUMNS, ""), "benchmark": benchmark, "variant": variant,
            "images_per_s": round(rate, 1), **values}


def table_rows(benchmark: str, rates: dict, target: float, images: int, compile_s=None) -> list:
    """One row per variant, each ratio against the first (the baseline); compilation seconds where given."""
    base = next(iter(rates.values()))
    compile_s = compile_s or {}
    return [row(benchmark, name, rate, ratio=round(rate / base, 2), images=images,
                target="" if i == 0 or target is None else f">={target}",
                compile_s=round(compile_s[name], 1) if name in compile_s else "")
            for i, (name, rate) in enumerate(rates.items())]


def machine(device) -> str:
    """CPU model and bf16 instructions, cores and torch threads, the GPU where one is used, and the torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    kind = cpu_bf16_kind()  # AMX or AVX512-BF16: the CPU's bf16 speed follows it
    text = f"{cpu}{f' ({kind})' if kind else ''}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text + f", torch {torch.__version__}"


def load_data(source: str, n: int, seed: int = 0):
    """n training images (uint8) and labels from the source, a seeded random subset of a real set."""
    if source == "synthetic":
        images = synthetic_images(10, n, 1, seed=seed)
        return images.train_x, images.train_y
    images = load_images(source)  # decoded once, then read from the cache in data/cache
    idx = torch.randperm(len(images.train_y), generator=torch.Generator().manual_seed(seed))[:n]
    return images.train_x[idx], images.train_y[idx]


def default_out() -> Path:
    """Where the table goes without --out: the repository's results, beside the runs it speaks for."""
    return paths.repo_root() / "results" / "bench.csv"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="synthetic", help="synthetic (default) or imagefolder:PATH")
    parser.add_argument("--n-train", type=int, help=f"images of the loader benchmark ({DEFAULTS['n_train']})")
    parser.add_argument("--fit-images", type=int, help=f"images of the training benchmark ({DEFAULTS['fit_images']})")
    parser.add_argument("--repeats", type=int,
                        help=f"timed runs of each variant; the median counts ({DEFAULTS['repeats']})")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline (2)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these of the four benchmarks")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                        help="networks of the model benchmark (all)")
    parser.add_argument("--model-batch", type=int, help="batch of the model benchmark (256 on CUDA, 32 on a CPU)")
    parser.add_argument("--model-steps", type=int, help="timed steps per variant and repeat (20 on CUDA, 2 on a CPU)")
    parser.add_argument("--compile", action="store_true",
                        help="add to the model benchmark the fast path under torch.compile, default against "
                             "dynamic=False, compilation timed apart as compile_s (minutes per network on a small "
                             "CPU; needs a C++ compiler there)")
    parser.add_argument("--epoch-batch", type=int, help=f"batch of the epoch benchmark ({DEFAULTS['epoch_batch']})")
    parser.add_argument("--epoch-steps", type=int,
                        help="steps timed by the epoch benchmark, extrapolated to an epoch (a whole epoch on CUDA, "
                             "2 on a CPU)")
    parser.add_argument("--threads", type=int, help="torch threads of the main process (torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check in well under a minute")
    parser.add_argument("--out", type=Path, help="CSV to write (default: results/bench.csv in the repository)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:  # explicit sizes win over --quick
            setattr(args, key, value)
    if args.n_train < 100 or args.fit_images < 100:
        parser.error(f"--n-train ({args.n_train}) and --fit-images ({args.fit_images}) must be at least 100, "
                     "one batch.")
    if args.repeats < 1 or args.workers < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats and --threads must be at least 1 and --workers must not be negative.")
    sizes = (args.model_batch, args.model_steps, args.epoch_batch, args.epoch_steps)
    if any(value is not None and value < 1 for value in sizes):
        parser.error("--model-batch, --model-steps, --epoch-batch and --epoch-steps must be at least 1.")
    if args.source != "synthetic" and not args.source.startswith("imagefolder:"):
        parser.error(f"Unknown --source {args.source!r}: use synthetic or imagefolder:PATH.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device} was asked for but no CUDA GPU is available: use --device cpu.")
    args.out = args.out or default_out()
    try:  # before minutes of benchmarking, not after
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out.parent).close()
    except OSError as err:
        parser.error(f"--out {args.out} cannot be written ({err.strerror}): give a file in a writable folder.")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder: give a file name, e.g. --out {args.out / 'bench.csv'}.")
    return args


def run_benchmarks(args, device) -> list:
    """The rows of every benchmark asked for, in the order of the module docstring."""
    on_gpu = device.type == "cuda"
    epoch_steps = args.epoch_steps or (math.ceil(EPOCH_IMAGES / args.epoch_batch) if on_gpu else 2)
    epoch_images = min(epoch_steps * args.epoch_batch, EPOCH_IMAGES)
    try:
        x, y = load_data(args.source, max(args.n_train, args.fit_images, epoch_images))
    except (DataUnavailable, ValueError) as err:
        raise SystemExit(f"bench: {err}") from None
    wanted = args.only or BENCHMARKS
    if "epoch" in wanted and len(y) < epoch_images:
        raise SystemExit(f"bench: the epoch benchmark needs {epoch_images} images but {args.source} has {len(y)}: "
                         "lower --epoch-steps or --epoch-batch.")
    rows = []
    if "loader" in wanted:
        rows += bench_loader(x[:args.n_train], y[:args.n_train], args.repeats, args.workers, device)
    if "training" in wanted:
        rows += bench_training(x[:args.fit_images], y[:args.fit_images], args.repeats, device)
    if "models" in wanted:
        rows += bench_models(args.models, args.model_batch or (256 if on_gpu else 32),
                             args.model_steps or (20 if on_gpu else 2), args.repeats, device, args.compile)
    if "epoch" in wanted:
        rows += bench_epoch(x, y, args.epoch_batch, epoch_steps, device)
    return rows


def print_table(rows: list, header: str) -> None:
    """The rows as aligned text: rate, ratio and target, then seconds per epoch or compilation where measured."""
    width = max(len(r["benchmark"]) for r in rows), max(len(r["variant"]) for r in rows)
    print(header)
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] != "" else ""
        extra = (f"{r['seconds_per_epoch']} s/epoch" if r["seconds_per_epoch"] != "" else
                 f"compiling {r['compile_s']} s" if r["compile_s"] != "" else "")
        print(f"{r['benchmark']:<{width[0]}}  {r['variant']:<{width[1]}}  {r['images_per_s']:>9.1f} img/s "
              f"{ratio:>6} {r['target']:<6} {extra}".rstrip())


def write_csv(rows: list, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> list:
    """Run the benchmarks that argv asks for, print their table and write it; the rows."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cpu":
        flush_denormals()  # as fit() does, on the threads --threads may just have started
    else:
        torch.backends.cudnn.benchmark = True  # as fit() does, set before the bare loop runs first
    rows = run_benchmarks(args, device)
    stamp = {"source": args.source, "repeats": args.repeats, "machine": machine(device),
             "torch": torch.__version__, "device": str(device),
             "date": datetime.datetime.now().isoformat(timespec="seconds")}
    rows = [{**r, **stamp} for r in rows]
    print_table(rows, f"{stamp['machine']} | device {device} | source {args.source} | median of {args.repeats}")
    write_csv(rows, args.out)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
