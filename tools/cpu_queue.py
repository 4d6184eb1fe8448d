"""Train a list of the report's full-profile runs one after another on a CPU, resuming each from its checkpoints.

    REPRO_ROOT=~/repro python tools/cpu_queue.py --cifar10 ~/data/cifar10-jpeg --imagenette ~/data/imagenette-224 \\
        table2-clean:42 table2-noise:42 table2-coteach:42 e-ls_cutout:1 a-resnet18:42

A run is NAME:SEED: table2-clean, table2-noise, table2-coteach (notebook 06's ImageNette runs), e-VARIANT
(a Level E variant of notebook 02, or e-basic of notebook 01) or a-MODEL (Level A on CIFAR-10, notebooks 03
and 04; a-resnet18_imagenet_stem is notebook 03's stem test). Each is recorded under REPRO_ROOT as its notebook
records it; a finished run is loaded, not trained again, so the same command after an interruption carries on
where it stopped. Run it from a checkout pinned at one commit: every row records the commit of the code that
trained it. --compile trains through torch.compile (its history's compile_seconds says so). With --status it
trains nothing and prints, for each run, whether it is recorded, the epoch its checkpoint reached, or that it has
not started.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from this checkout, installed or not

import torch  # noqa: E402

from common import recipes, results  # noqa: E402
from common.checkpoints import run_folder  # noqa: E402
from common.config import Execution  # noqa: E402
from common.experiment import run_experiment  # noqa: E402
from common.summary import duration  # noqa: E402

LEVEL_A_NOTEBOOKS = {"resnet18": "03_resnet18_baselines", "se_resnet18": "04_se_convnext", "convnext": "04_se_convnext"}
TABLE2 = {"table2-clean": dict(rate=0.0), "table2-noise": dict(kind="symmetric", rate=0.3),
          "table2-coteach": dict(kind="symmetric", rate=0.3, coteaching=True)}


def configure(spec: str, cifar10: str, imagenette: str):
    """(config, notebook) of one NAME:SEED."""
    name, _, seed = spec.partition(":")
    if not seed.isdigit():
        raise SystemExit(f"{spec!r}: write a run as NAME:SEED, e.g. e-gap:1 or table2-clean:42.")
    seed = int(seed)
    if name in TABLE2:
        source = _folder(imagenette, "--imagenette")
        return recipes.noisy_labels("imagenette", **TABLE2[name], seed=seed, source=source), "06_noisy_labels"
    if name.startswith("e-") and name[2:] in recipes.LEVEL_E_VARIANTS:
        variant = name[2:]
        return recipes.level_e(variant, seed=seed, source=_folder(cifar10, "--cifar10")), \
            "01_basic_vgg" if variant == "basic" else "02_regularization"
    if name == "a-resnet18_imagenet_stem":  # the stem test of notebook 03 (claim C19)
        return recipes.imagenet_stem(seed=seed, source=_folder(cifar10, "--cifar10")), "03_resnet18_baselines"
    if name.startswith("a-") and name[2:] in LEVEL_A_NOTEBOOKS:
        return recipes.level_a(name[2:], "cifar10", seed=seed, source=_folder(cifar10, "--cifar10")), \
            LEVEL_A_NOTEBOOKS[name[2:]]
    raise SystemExit(f"Unknown run {name!r}: use {', '.join(TABLE2)}, e-VARIANT "
                     f"({', '.join(recipes.LEVEL_E_VARIANTS)}) or a-MODEL ({', '.join(LEVEL_A_NOTEBOOKS)}, "
                     "resnet18_imagenet_stem).")


def _folder(path: str, flag: str) -> str:
    if not path:
        raise SystemExit(f"This run trains on an image folder: give it with {flag} PATH.")
    return f"imagefolder:{path}"


def status(cfg, notebook: str) -> str:
    """Where one run stands under REPRO_ROOT: recorded, checkpointed at some epoch, or not started."""
    recorded = results.recorded_result(cfg, notebook)
    if recorded is not None:
        row = recorded.row
        return f"recorded: test acc {row['test_acc_final']:.4f} at the final epoch ({row['device']})"
    for path in (run_folder(cfg) / name for name in ("last.pt", "prev.pt")):
        try:  # mmap: the epoch and the config's hash without reading the weights
            state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # noqa: BLE001  missing, or being replaced: the run resumes from the one before
            continue
        if state.get("config_hash") != cfg.fingerprint():
            return (f"a checkpoint of another config (epoch {state.get('epoch')}) in {path.parent}: the run refuses "
                    "it; move that folder away to train this config")
        recent = [epoch["seconds"] for epoch in state["history"][-3:]]  # this machine's pace, load included
        pace = f" (about {duration(sum(recent) / len(recent) * (cfg.epochs - state['epoch']))} left at the pace " \
            f"of its last {len(recent)} epochs)" if recent and state["epoch"] < cfg.epochs else ""
        return f"epoch {state['epoch']} of {cfg.epochs} checkpointed{pace}: the next call resumes after it"
    return "not started"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME:SEED")
    parser.add_argument("--cifar10", help="the CIFAR-10 image folder (train/ and test/)")
    parser.add_argument("--imagenette", help="the ImageNette image folder (train/ and test/ = its val split)")
    parser.add_argument("--status", action="store_true", help="train nothing: say where each run stands")
    parser.add_argument("--compile", action="store_true",
                        help="train through torch.compile (faster for the ResNets on a CPU with AMX; start and resume "
                             "a run the same way, since its rounding follows the choice)")
    args = parser.parse_args(argv)
    planned = [configure(spec, args.cifar10, args.imagenette) for spec in args.runs]  # every name checked first
    if args.status:
        for spec, (cfg, notebook) in zip(args.runs, planned):
            print(f"{spec}: {status(cfg, notebook)}")
        return 0
    execution = Execution(compile=args.compile)
    for cfg, notebook in planned:
        started = time.time()
        print(f"{time.strftime('%H:%M:%S')} start {cfg.run_id}", flush=True)
        result = run_experiment(cfg, notebook, progress=False, allow_cpu=True, execution=execution)
        print(f"{time.strftime('%H:%M:%S')} {result!r} ({time.time() - started:.0f} s in this call)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
