"""The prepared GPU check: the GPU tests, the speed benchmark, then as many of the report's CIFAR-10 runs as fit.

    python tools/gpucheck.py /path/to/cifar10-jpeg      # one GPU, about 6 minutes (--budget-s 360)
    python tools/gpucheck.py --dry-run                  # the same path on the CPU: tiny sizes, a few minutes

DATA is an image folder, train/<class>/*.jpg and test/<class>/*.jpg. Within the budget the check
1. runs the GPU-only tests (pytest -m gpu) if pytest is installed;
2. benchmarks with tools/bench.py, shortened: training images/s of every report network in fp32 and on the
   fast path (bf16 where native), fit() against the bare loop, one ResNet18 epoch (results/bench.csv);
3. trains on DATA, in this order, ResNet18 Level A (notebook 03), SE-ResNet18 (04), the CIFAR-10
   noisy-label runs (06) and ConvNeXt (04), through run_experiment. A run already recorded is skipped, so a
   later window goes on with the next; a run starts only when the speeds just measured say it ends in the
   time left; one that runs out of time all the same is stopped right after an epoch's checkpoint, which
   resumes it in the next window;
4. packs what the repository commits (results/*.csv, results/history/*.csv, figures/*.png) and the log into
   runs/gpucheck/gpucheck-<time>.tar.gz, and prints a summary: each network's images/s, each finished run
   beside the report, and the whole report's time projected from the measured speeds. A failing step
   (the tests, the benchmark, a run) is reported and the archive is still written.

Outputs go where common.paths says ($REPRO_ROOT). A full run on a machine without a GPU needs REPRO_ALLOW_CPU=1;
--dry-run trains the smoke profile on generated data, on the CPU with one thread, in a scratch root
($REPRO_ROOT if set, else a new one). In a copy of the repository without .git, --commit names the commit
that the results rows record.
"""

import _thread
import argparse
import contextlib
import datetime
import gc
import importlib.util
import math
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from this checkout, installed or not

import bench  # noqa: E402  tools/bench.py, beside this file

from common import checkpoints, paths, recipes, results  # noqa: E402
from common.data import DataUnavailable, folder_identity  # noqa: E402
from common.device import allow_cpu_from_env  # noqa: E402
from common.experiment import load_split, run_experiment  # noqa: E402
from common.published import published_accuracy  # noqa: E402
from common.results import history_csv, read_history, recorded_result  # noqa: E402

BUDGET_S = 360  # about 6 minutes of GPU work: a lent machine's 15-minute window holds a start, this and a retry
ARCHIVE_LIMIT = 16 * 2**20  # bytes
MARGIN = 1.15  # a run starts only if this many times its estimate fits in the time left
SETUP_S = 15.0  # per run, beyond its epochs: network, data to the device, cuDNN's first tuning
TAIL_S = 10.0  # kept free at the end: the last run's test and records, the archive, the summary
EPOCH_MARGIN = 1.2  # after an epoch, the next one must end before the deadline at this many times its duration
EVAL_COST = 1 / 3  # an evaluated image costs about a third of a trained one (forward only)
# the network whose benchmarked speed stands for each registered model's training
NETWORKS = {"vgg_basic": "vgg_basic", "resnet18": "resnet18", "se_resnet18": "se_resnet18", "convnext": "convnext",
            "vit": "vit", "supcon_resnet18": "resnet18", "supcon_mlp": "resnet18", "supcon_linear": "resnet18",
            # 128 px through the ImageNet stem (stride 4) meets the same 32 x 32 maps as CIFAR's stem at 32 px
            "resnet18_imagenet": "resnet18"}
DATASET_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "imagenette": (9_469, 3_925)}
DRY_RUN_SIZES = dict(synthetic_sizes=(12, 8), val_size=4, epochs=1)  # one batch of 8 images, one epoch


def check_runs(data=None, profile: str = "full") -> list:
    """(notebook, label, config) of the runs the check trains, in order, on the image folder `data` (else on each
    recipe's own data set)."""
    runs = [("03_resnet18_baselines", "ResNet18", recipes.level_a("resnet18", "cifar10", profile)),
            ("04_se_convnext", "SE-ResNet18", recipes.level_a("se_resnet18", "cifar10", profile))]
    runs += [("06_noisy_labels", label, cfg) for label, cfg in recipes.cifar10_noise_runs(profile).items()]
    runs.append(("04_se_convnext", "ConvNeXt", recipes.level_a("convnext", "cifar10", profile)))
    if data is None:
        return runs
    # the folder's identity hashes its images (a pass over 60,000 files): once, not once per run
    folder = Path(data).expanduser().resolve()
    images = {"source": f"imagefolder:{folder_identity(folder)}", "source_path": str(folder)}
    return [(notebook, label, cfg.replace(**images)) for notebook, label, cfg in runs]


def report_runs() -> list:
    """(notebook, config) of every run of every notebook, full profile, default data: what the report trains."""
    runs = [("01_basic_vgg", recipes.level_e("basic"))]
    runs += [("02_regularization", recipes.level_e(variant)) for variant in recipes.REGULARIZATION_VARIANTS]
    for notebook, models in (("03_resnet18_baselines", ["resnet18"]), ("04_se_convnext", ["se_resnet18", "convnext"])):
        runs += [(notebook, recipes.level_a(model, dataset)) for model in models for dataset in ("cifar10", "cifar100")]
    runs.append(("03_resnet18_baselines", recipes.imagenet_stem()))
    pretrain = recipes.supcon_pretrain()
    runs += [("05_supcon", pretrain), ("05_supcon", recipes.supcon_classifier(pretrain))]
    runs += [("06_noisy_labels", recipes.noisy_labels("imagenette", rate=0.0)),
             ("06_noisy_labels", recipes.noisy_labels("imagenette", "symmetric", 0.3)),
             ("06_noisy_labels", recipes.noisy_labels("imagenette", "symmetric", 0.3, coteaching=True))]
    runs += [("06_noisy_labels", cfg) for cfg in recipes.cifar10_noise_runs().values()]
    runs.append(("07_vit", recipes.level_a("vit", "cifar100")))
    return runs


@dataclass
class Speeds:
    """Measured training images/s per network (fit's fast path, fp32) and the seconds per image an epoch adds."""
    rate: dict
    fp32: dict
    extra_s: float = 0.0
    rows: list = field(default_factory=list)

    def seconds_per_image(self, cfg) -> float:
        """Seconds to train on one image of this run, all its forward and backward passes included (NaN where
        its network's speed was not measured)."""
        return cost(cfg) / self.images_per_s(cfg) + self.extra_s

    def images_per_s(self, cfg) -> float:
        return self.rate.get(NETWORKS.get(cfg.model, "resnet18"), math.nan)

    def run_seconds(self, cfg, n_train: int, n_test: int, done: int = 0) -> float:
        """The estimated seconds of a run's epochs after the first `done`, its evaluations and its final test."""
        eval_s = EVAL_COST / self.images_per_s(cfg)
        per_epoch = n_train * self.seconds_per_image(cfg) + (cfg.val_size + n_test * cfg.monitor_test) * eval_s
        return (cfg.epochs - done) * per_epoch + n_test * eval_s


def cost(cfg) -> float:
    """A training image's passes relative to one forward and backward pass of the run's network."""
    if cfg.coteaching:
        return 2.0  # two networks
    if cfg.encoder:
        return EVAL_COST  # a head on a frozen encoder: the encoder only runs forward
    views = cfg.augment and all(isinstance(view, (tuple, list)) for view in cfg.augment)
    return float(len(cfg.augment)) if views else 1.0  # contrastive pretraining: every view passes


def data_sizes(cfg) -> tuple:
    """(training images without the validation split, test images) of a run on its data set's usual source."""
    train, test = cfg.synthetic_sizes if cfg.source == "synthetic" else DATASET_SIZES[cfg.dataset]
    return train - cfg.val_size, test


def speeds_from(rows: list, device) -> Speeds:
    """The speeds of a benchmark's rows: the model benchmark's fast path and fp32, and the epoch's extra cost."""
    fast = bench.fast_path(device)[1]
    rate, fp32 = {}, {}
    for row in rows:
        if row["benchmark"].startswith("train "):
            name = row["benchmark"].split()[1]
            if row["variant"] == fast:
                rate[name] = row["images_per_s"]
            if row["variant"] == "fp32, channels_last":
                fp32[name] = row["images_per_s"]
    epoch = next((row for row in rows if " epoch (" in row["benchmark"]), None)
    extra = max(0.0, 1 / epoch["images_per_s"] - 1 / rate["resnet18"]) if epoch and "resnet18" in rate else 0.0
    return Speeds(rate, fp32, extra, rows)


class Clock:
    """The check's time budget, on the monotonic clock."""

    def __init__(self, budget_s: float):
        self.started = time.monotonic()
        self.deadline = self.started + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.started


class EpochWatch:
    """After each new checkpoint of a run: whether the next one would land past the deadline (on a GPU a run
    checkpoints every few epochs, so the time between two checkpoints is what must still fit)."""

    def __init__(self, checkpoint: Path, deadline: float, epochs: int, done: int = 0):
        self.checkpoint, self.deadline, self.epochs, self.epoch = checkpoint, deadline, epochs, done
        self.mtime, self.since, self.fired = self._mtime(), time.monotonic(), False

    def _mtime(self):
        try:
            return self.checkpoint.stat().st_mtime_ns
        except OSError:  # not written yet, or being replaced by the next epoch's
            return None

    def poll(self, now: float) -> bool:
        """True once a checkpoint has just landed and another stretch of the last one's length would not fit."""
        mtime = self._mtime()
        if mtime is None or mtime == self.mtime:
            return False
        epoch = checkpoints.saved_epoch(self.checkpoint)
        if epoch is None:  # being replaced right now: look again at the next poll
            return False
        seconds, self.since, self.mtime, self.epoch = now - self.since, now, mtime, epoch
        return self.epoch < self.epochs and now + EPOCH_MARGIN * seconds > self.deadline


def checkpoint_epoch(cfg) -> int:
    """The epochs a run's checkpoint holds (0 without one): an interrupted run resumes after them."""
    folder = paths.checkpoints_dir(cfg.profile) / cfg.run_id
    epochs = (checkpoints.saved_epoch(folder / name) for name in ("last.pt", "prev.pt"))
    return next((epoch for epoch in epochs if epoch is not None), 0)


def recorded(cfg, notebook: str):
    """The run's recorded result, or None."""
    return recorded_result(cfg, notebook)


def train_within(cfg, notebook: str, deadline: float, poll_s: float = 0.2) -> dict:
    """run_experiment, stopped after the checkpoint of the last epoch that ends before `deadline`; its outcome."""
    watch = EpochWatch(paths.checkpoints_dir(cfg.profile) / cfg.run_id / "last.pt", deadline, cfg.epochs,
                       checkpoint_epoch(cfg))
    stop = threading.Event()

    def guard():
        while not stop.wait(poll_s):
            if watch.poll(time.monotonic()):
                watch.fired = True
                _thread.interrupt_main()  # a KeyboardInterrupt in the training thread, caught below
                return

    thread = threading.Thread(target=guard, daemon=True)
    # interrupt_main delivers through the SIGINT handler: one set to ignore (by a host process) would swallow it
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread.start()
    try:
        try:
            row = run_experiment(cfg, notebook, progress=True, allow_cpu=allow_cpu_from_env()).row
        finally:
            stop.set()
            thread.join()
            signal.signal(signal.SIGINT, previous)
    except KeyboardInterrupt:
        if not watch.fired:  # a person's Ctrl-C: theirs to handle
            raise
        done = recorded(cfg, notebook)  # the interrupt may have come as the run was being recorded
        if done is not None:
            return {"status": "finished", "row": done.row}
        return {"status": "cut", "epoch": checkpoint_epoch(cfg)}
    return {"status": "finished", "row": row}


def train_runs(runs: list, speeds: Speeds, sizes: tuple, clock: Clock) -> list:
    """Each check run in order: skipped if recorded, started only if its estimate fits; the outcomes."""
    outcomes = []
    for notebook, label, cfg in runs:
        outcome = {"notebook": notebook, "label": label, "cfg": cfg}
        outcomes.append(outcome)
        earlier = recorded(cfg, notebook)
        if earlier is not None:
            outcome.update(status="recorded", row=earlier.row)
            print(f"{cfg.run_id}: recorded earlier, skipped")
            continue
        done = checkpoint_epoch(cfg)
        need = MARGIN * speeds.run_seconds(cfg, sizes[0] - cfg.val_size, sizes[1], done) + SETUP_S
        left = clock.left() - TAIL_S
        if math.isnan(need):
            outcome.update(status="unmeasured")
            print(f"{cfg.run_id}: not started, the benchmark did not measure its network's speed")
            continue
        if need > left:
            outcome.update(status="waiting", need=need, left=left, epoch=done)
            print(f"{cfg.run_id}: not started, needs about {need:.0f} s and {max(left, 0):.0f} s are left")
            continue
        print(f"{cfg.run_id}: training ({notebook}, epochs {done + 1}-{cfg.epochs}, about {need:.0f} s)", flush=True)
        started = time.monotonic()
        try:
            outcome.update(train_within(cfg, notebook, clock.deadline - TAIL_S))
        except Exception as err:  # noqa: BLE001  a failing run is reported; the others still get their turn
            outcome.update(status="failed", error=f"{type(err).__name__}: {err}")
            print(f"{cfg.run_id}: failed, {outcome['error']}")
        outcome["seconds"] = time.monotonic() - started
        if outcome["status"] == "cut":
            print(f"{cfg.run_id}: out of time, stopped after epoch {outcome['epoch']} of {cfg.epochs}; "
                  "its checkpoint resumes it next time")
            break  # the time is spent
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return outcomes


def run_gpu_tests(timeout: float) -> str:
    """pytest -m gpu on the checkout's tests, its output logged; one line saying how it went."""
    tests = Path(__file__).resolve().parents[1] / "tests"
    if importlib.util.find_spec("pytest") is None:
        return "skipped: pytest is not installed (pip install pytest to run them)"
    if not tests.is_dir():
        return f"skipped: no tests folder at {tests} (installed without the repository)"
    env = {k: v for k, v in os.environ.items() if k != paths.ROOT_ENV}  # the tests use their own scratch root
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", str(tests)]
    try:
        done = subprocess.run(command, cwd=tests.parent, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"stopped after {timeout:.0f} s (python -m pytest -m gpu tests to run them alone)"
    print(done.stdout + done.stderr)
    last = (done.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
    return last if done.returncode in (0, 5) else f"FAILED: {last}"


def benchmark(device, out: Path, dry_run: bool) -> tuple:
    """tools/bench.py's training, model and epoch benchmarks, sized to take about a minute on a GPU; (rows, a line
    saying how it went): a failure is reported, not raised, so the runs and the archive still follow."""
    sizes = (["--quick", "--repeats", "1", "--model-batch", "2", "--fit-images", "100", "--epoch-batch", "4"]
             if dry_run else ["--repeats", "2", "--model-batch", "256", "--model-steps", "10", "--n-train", "100"])
    try:
        rows = bench.main(["--device", device.type, "--only", "training", "models", "epoch", "--out", str(out), *sizes])
    except (Exception, SystemExit) as err:  # noqa: BLE001  whatever broke, the check goes on to its archive
        return [], f"FAILED: {type(err).__name__}: {err}"
    return rows, "done"


def decode(runs: list) -> tuple:
    """Load the runs' images once (an image folder is decoded into the cache); (training images, test images)."""
    split = load_split(runs[0][2])
    return len(split.train_y) + len(split.val_y), len(split.test_y)


def pack(archive: Path, log: Path, profile: str) -> list:
    """Write the archive: every results CSV, history and figure of the profile, and the log; the files left out."""
    root = paths.repo_root()
    results, figures = paths.results_dir(profile), paths.figures_dir(profile)
    files = sorted(results.glob("*.csv")) + sorted((results / "history").glob("*.csv")) + [log]
    size = sum(f.stat().st_size for f in files)
    left_out = []
    for png in sorted(figures.glob("*.png")):  # already compressed: their sizes add up in the archive
        if size + png.stat().st_size > ARCHIVE_LIMIT - 2**20:
            left_out.append(png)
        else:
            files.append(png)
            size += png.stat().st_size
    with tarfile.open(archive, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(root)))
    return left_out


def published(cfg) -> str:
    """The report's test accuracy for a run, as text."""
    try:
        value = published_accuracy(cfg.experiment, cfg.dataset)
    except KeyError:
        return "n/a"
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def checkpoint_share(cfg) -> float:
    """What share of a finished run's time went into writing its checkpoints (NaN without its history)."""
    try:
        history = read_history(history_csv(cfg))
    except OSError:
        return math.nan
    writing = history["checkpoint_seconds"].fillna(0).sum()
    return writing / (history["seconds"].sum() + writing)


def summary(speeds: Speeds, outcomes: list, steps: dict, clock: Clock, device, sizes: tuple) -> str:
    """One screen: how each step went, speeds, the runs beside the report, the whole report's projected time."""
    fast = bench.fast_path(device)[1].split(",")[0]
    lines = [f"GPU check on {bench.machine(device)}, {clock.used():.0f} s",
             *(f"{step}: {how}" for step, how in steps.items()),
             f"training images/s per network (benchmark batches):      fp32 | {fast}"]
    for name in bench.MODELS:
        lines.append(f"  {name:<12} {speeds.fp32.get(name, math.nan):>38,.0f} | {speeds.rate.get(name, math.nan):,.0f}")
    for row in speeds.rows:
        if row["benchmark"].startswith("training ") and row["variant"] != "bare loop":
            lines.append(f"  {row['variant']} against the bare loop: {row['ratio']:.2f}x")
        if " epoch (" in row["benchmark"]:
            lines.append(f"  {row['benchmark']}: {row['seconds_per_epoch']} s per epoch ({row['variant']})")
    lines.append(f"runs on the check's data ({sizes[0]:,} training, {sizes[1]:,} test images):")
    for o in outcomes:
        cfg, name = o["cfg"], f"  {o['notebook'][:2]} {o['label']:<36}"
        if o["status"] in ("finished", "recorded"):
            best, final = float(o["row"]["test_acc_best"]), float(o["row"]["test_acc_final"])
            lines.append(f"{name} test acc {best:.4f} (final {final:.4f}), report {published(cfg)}" +
                         (" (recorded earlier)" if o["status"] == "recorded" else
                          f", {o['seconds']:.0f} s, checkpoints {100 * checkpoint_share(cfg):.1f} % of it"))
        elif o["status"] == "cut":
            lines.append(f"{name} CUT SHORT after epoch {o['epoch']} of {cfg.epochs}: the next window resumes it")
        elif o["status"] == "waiting":
            lines.append(f"{name} not started: needs about {o['need']:.0f} s, {max(o['left'], 0):.0f} s were left")
        elif o["status"] == "unmeasured":
            lines.append(f"{name} not started: its network's speed was not measured")
        else:
            lines.append(f"{name} FAILED: {o['error']}")
    totals = {}
    for notebook, cfg in report_runs():
        totals[notebook] = totals.get(notebook, 0.0) + speeds.run_seconds(cfg, *data_sizes(cfg))
    if not all(map(math.isfinite, totals.values())):
        lines.append("the whole report's time: unknown, the benchmark did not measure every network")
    else:
        lines.append("the whole report at these speeds (every run: epochs x training images / images/s, evaluation "
                     "included): " + ", ".join(f"{nb[:2]} {s / 60:,.0f} min" for nb, s in totals.items()) +
                     f"; total {sum(totals.values()) / 3600:,.1f} h")
    return "\n".join(lines)


class Tee:
    """A text stream writing to several others (the terminal and the log)."""

    encoding = "utf-8"

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


def commit_name(text: str) -> str:
    """--commit HASH: a commit as git names it (7 to 40 hex digits, -dirty where the tree had changes)."""
    if not re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a commit: give its hash, as `git rev-parse --short=12 HEAD` "
                                         "prints it where the repository's .git is")
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/gpucheck.py", description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", type=Path, help="image folder: train/<class>/*.jpg and test/<class>/*.jpg")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help=f"wall time of the whole check ({BUDGET_S})")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same path on the CPU: smoke profile, generated data, tiny sizes, a scratch root")
    parser.add_argument("--commit", type=commit_name,
                        help="the commit this copy of the repository holds, for the results rows where .git is absent")
    args = parser.parse_args(argv)
    if not args.dry_run and args.data is None:
        parser.error("give the image folder to train on (DATA), or --dry-run to check the path without one.")
    if not args.dry_run and not (args.data / "train").is_dir():
        parser.error(f"{args.data} has no train/ folder: DATA must hold train/<class>/*.jpg and test/<class>/*.jpg.")
    if args.budget_s <= 0:
        parser.error(f"--budget-s {args.budget_s:g}: give a positive number of seconds.")
    return args


def record_commit(commit) -> None:
    """Make the results rows name `commit` where git cannot say which commit this copy holds; say what they name."""
    known = results.git_commit()
    if commit and known == "unknown":
        os.environ[results.COMMIT_ENV] = commit  # read by results.git_commit, here and in any process started later
    elif commit and not known.startswith(commit.removesuffix("-dirty")):
        print(f"--commit {commit} is ignored: git says this checkout is at {known}, and the rows record that.")
    elif known == "unknown":
        print("No .git here and no --commit: the results rows will say git_commit 'unknown' (give --commit HASH).")


def main(argv=None) -> int:
    args = parse_args(argv)
    clock = Clock(args.budget_s)
    profile = "smoke" if args.dry_run else "full"
    try:
        allow_cpu = allow_cpu_from_env()
    except ValueError as err:
        print(err)
        return 2
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, for the training runs too (set before CUDA starts)
        if not os.environ.get(paths.ROOT_ENV):
            os.environ[paths.ROOT_ENV] = tempfile.mkdtemp(prefix="gpucheck-dry-run-")
        torch.set_num_threads(1)  # on a busy CPU, threads that wait for each other make a dry run many times slower
    elif not torch.cuda.is_available() and not allow_cpu:
        print("No CUDA GPU is visible: run this on the GPU machine, check the path on this one with --dry-run, or set "
              "REPRO_ALLOW_CPU=1 to train the full profile on the CPU anyway.")
        return 2
    record_commit(args.commit)
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    try:
        runs = check_runs(None if args.dry_run else args.data, profile)
    except DataUnavailable as err:
        print(err)
        return 2
    if args.dry_run:
        runs = [(notebook, label, cfg.replace(**DRY_RUN_SIZES)) for notebook, label, cfg in runs]
    out_dir = paths.repo_root() / "runs" / "gpucheck"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path, archive = out_dir / f"gpucheck-{stamp}.log", out_dir / f"gpucheck-{stamp}.tar.gz"
    steps, outcomes = {}, []
    with open(log_path, "w") as log, contextlib.redirect_stdout(Tee(sys.stdout, log)), \
            contextlib.redirect_stderr(Tee(sys.stderr, log)):
        print(f"gpucheck: {'dry run, ' if args.dry_run else ''}output root {paths.repo_root()}, "
              f"budget {args.budget_s:.0f} s")
        try:
            steps["GPU tests"] = run_gpu_tests(timeout=max(30.0, min(150.0, clock.left() / 4)))
            print(f"GPU tests: {steps['GPU tests']} ({clock.used():.0f} s)")
            rows, steps["benchmark"] = benchmark(device, paths.results_dir(profile) / "bench.csv", args.dry_run)
            print(f"benchmark: {steps['benchmark']} ({clock.used():.0f} s)")
            speeds = speeds_from(rows, device)
            sizes = decode(runs)
            print(f"data: {sizes[0]:,} training and {sizes[1]:,} test images ({clock.used():.0f} s)")
            outcomes = train_runs(runs, speeds, sizes, clock)
            print("\n" + summary(speeds, outcomes, steps, clock, device, sizes))
        except Exception:  # noqa: BLE001  the log, in the archive below, keeps the traceback
            traceback.print_exc()
            steps["check"] = "FAILED: stopped early, see the traceback above"
    left_out = pack(archive, log_path, profile)
    print(f"archive: {archive} ({archive.stat().st_size / 2**20:.1f} MB)" +
          (f"; {len(left_out)} figures left out to stay under 16 MB (each run's history CSV redraws it)"
           if left_out else ""))
    print("to commit it: tar -xzf ARCHIVE -C <your checkout>, then git add results figures and git commit")
    failed = any(how.startswith("FAILED") for how in steps.values()) or any(o["status"] == "failed" for o in outcomes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
