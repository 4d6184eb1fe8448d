"""Run the whole report headless: every notebook in order with papermill, then the summary.

    python tools/reproduce.py --profile smoke          # CPU, offline, a few minutes
    python tools/reproduce.py --profile full           # the report's recipes, on a GPU
    python tools/reproduce.py --only 01 08             # a subset, by number or name
    python tools/reproduce.py --epochs 3               # every run shortened to 3 epochs, for a quick look
    python tools/reproduce.py --profile full --no-train  # only what is recorded: tables, figures, no training
    python tools/reproduce.py --force                  # train again runs that already finished
    python tools/reproduce.py --rehash                 # hash the image folders' files again (see data.folder_identity)
    python tools/reproduce.py --parallel spread        # several GPUs: a notebook's runs one per GPU
    python tools/reproduce.py --parallel ddp --gpus 4  # several GPUs: each run over all of them (torchrun)

Executed copies go to runs/<profile>/ (runs/<profile>-<N>ep/ with --epochs; git-ignored). Runs given
other epochs than their recipe's by --epochs get their own run ids, and full ones are listed apart in the
summary, never beside the report's numbers. A relative REPRO_ROOT or REPRO_DATA means the folder the
command was typed in. A failing notebook is reported and the others still run. Runs resume from their
checkpoints and finished runs load their recorded results, so re-running the command finishes what an
interruption left.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from this checkout, installed or not
from common import data, distributed, paths  # noqa: E402
from common.config import PARALLEL_MODES  # noqa: E402
from common.device import ALLOW_CPU_ENV, allow_cpu_from_env  # noqa: E402
from common.summary import screen_summary  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"  # the repository's, wherever outputs go


def notebooks(only=None) -> list:
    """The report's notebooks in order (the summary is numbered last); `only` filters by number or name."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only and found:
        unknown = [key for key in only if not any(key in (p.stem, p.stem.split("_")[0]) for p in found)]
        if unknown:
            raise ValueError(f"No notebook {' '.join(unknown)}: --only takes the numbers or names of "
                             f"{', '.join(p.stem for p in found)}.")
        found = [p for p in found if any(key in (p.stem, p.stem.split("_")[0]) for key in only)]
    return found


def run_notebook(source: Path, output: Path, parameters: dict) -> None:
    """Execute one notebook with papermill, its parameters cell overridden by those of `parameters` it declares."""
    import papermill  # the notebooks' extra dependency: the training API works without it

    declared = papermill.inspect_notebook(str(source))  # the summary has no training switches: pass it none
    parameters = {name: value for name, value in parameters.items() if name in declared}
    papermill.execute_notebook(str(source), str(output), parameters=parameters, cwd=str(source.parent),
                               progress_bar=False, kernel_name="python3",
                               # the kernel's own log (e.g. ipykernel's TCP transport warning) is nothing a user acts on
                               extra_arguments=["--log-level=ERROR"])


def failure_line(err: Exception) -> str:
    """A failed notebook in one line: the cell (by its number among the notebook's cells) and the error."""
    if hasattr(err, "ename"):  # papermill's execution error names the failing cell
        count = f", In [{err.exec_count}]" if getattr(err, "exec_count", None) else ""
        value = str(err.evalue).strip().splitlines()
        return f"cell {err.cell_index + 1}{count}: {err.ename}: {value[0] if value else ''}".rstrip(": ")
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1]}" if lines else type(err).__name__


def positive_epochs(text: str) -> int:
    """--epochs N: a whole number of epochs, at least 1."""
    try:
        epochs = int(text)
    except ValueError:
        epochs = 0
    if epochs < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of epochs: give a whole number of at least 1, "
                                         "e.g. --epochs 3")
    return epochs


def positive_gpus(text: str) -> int:
    """--gpus N: a whole number of GPUs, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GPUs: give a whole number of at least 1")
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=paths.PROFILES,
                        help="full: the report's recipes on the real data; smoke: generated data on a CPU")
    parser.add_argument("--only", nargs="+", metavar="NB", help="run only these notebooks, e.g. 01 08")
    parser.add_argument("--epochs", type=positive_epochs, metavar="N",
                        help="train every run for N epochs, for a quick look; full runs are marked shortened, "
                             "get their own run ids and stay out of the summary's comparison with the report")
    parser.add_argument("--parallel", choices=PARALLEL_MODES, default="off",
                        help="several GPUs: spread = a notebook's runs one per GPU; ddp = each run over all GPUs with "
                             "torchrun (Co-teaching and SupCon runs stay on one); off (default) = one GPU")
    parser.add_argument("--gpus", type=positive_gpus, metavar="N", help="GPUs (processes) for --parallel (all visible)")
    parser.add_argument("--sync-bn", action="store_true", help="--parallel ddp: synchronise BatchNorm over the GPUs")
    parser.add_argument("--compile", action="store_true",
                        help="train through torch.compile (its warm-up is recorded apart, as compile_seconds)")
    parser.add_argument("--force", action="store_true", help="train again runs that already finished (FORCE)")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="show only what is recorded (TRAIN = False): no training, no download, no GPU needed")
    parser.add_argument("--rehash", action="store_true",
                        help="hash every image folder's files again instead of trusting their sizes and times")
    args = parser.parse_args(argv)
    paths.pin_environment()  # a relative REPRO_ROOT means the folder the command was typed in, for every notebook
    if args.profile is None:  # only now: a bad $REPRO_PROFILE must not matter when --profile is given
        try:
            args.profile = paths.default_profile()
        except ValueError as err:
            print(err)
            return 2

    try:
        allow_cpu = allow_cpu_from_env()
    except ValueError as err:
        print(err)
        return 2
    if args.profile == "full" and args.train and not torch.cuda.is_available() and not allow_cpu:
        print("The full profile needs a GPU and none was found: run it on a GPU machine or in Colab, use "
              f"--profile smoke, or set {ALLOW_CPU_ENV}=1 to train on the CPU anyway (hours per notebook).")
        return 2
    try:
        selected = notebooks(args.only)
    except ValueError as err:
        print(err)
        return 2
    if not selected:
        print(f"No notebook found in {NOTEBOOKS}: run this from a clone of the repository.")
        return 2
    shortened = "" if args.epochs is None else f"-{args.epochs}ep"
    out_dir = paths.repo_root() / "runs" / f"{args.profile}{shortened}"  # never over a full run's executed copies
    if args.epochs is not None and args.profile == "full":
        print(f"--epochs {args.epochs}: every run trains for {args.epochs} epochs, for a quick look. Runs shortened "
              f"this way are marked shortened, get their own run ids (ending in {shortened}) and are recorded apart: "
              "the summary lists them separately and never compares them with the report.")
    elif args.epochs is not None:
        print(f"--epochs {args.epochs}: every smoke run trains for {args.epochs} epochs, under its own run ids "
              f"(ending in {shortened}) unless that is the smoke recipe's own length (smoke runs test the code path "
              "and are never compared with the report).")
    gpus = args.gpus or torch.cuda.device_count()
    if args.parallel == "ddp" and args.gpus:  # only a number the user gave can ask for more GPUs than there are
        try:
            distributed.check_gpus(gpus)
        except ValueError as err:
            print(err)
            return 2
    if args.parallel != "off" and gpus < 2:
        print(f"--parallel {args.parallel} needs at least 2 GPUs and {gpus} {'is' if gpus == 1 else 'are'} visible: "
              "every run trains in its notebook's process.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()  # an existing read-only folder passes mkdir
    except OSError as err:
        print(f"Cannot write the outputs under {paths.repo_root()} ({err.strerror or err}): set {paths.ROOT_ENV} to a "
              "writable folder, or unset it to write into the repository.")
        return 2
    if args.rehash:
        print(f"--rehash: forgot {data.forget_folder_identities()} remembered image-folder identities; every image "
              "folder is hashed again.")
    parameters = {"PROFILE": args.profile, "COMPILE": args.compile, "SYNC_BN": args.sync_bn,
                  "PARALLEL": args.parallel, "GPUS": args.gpus or 0, "ALLOW_CPU": allow_cpu}
    if args.epochs is not None:
        parameters["EPOCHS"] = args.epochs
    if args.force:
        parameters["FORCE"] = True
    if not args.train:
        parameters["TRAIN"] = False
    started = time.time()
    failed = _run_all(selected, out_dir, parameters)
    print(f"{len(selected) - len(failed)} of {len(selected)} notebooks ran in {_minutes(time.time() - started)}.")
    summary = paths.results_dir(args.profile) / "summary.md"
    if summary.exists():
        print("\n" + screen_summary(args.profile))
        if args.profile == "smoke":
            print("Smoke numbers mean nothing: a few hundred generated images trained for an epoch or two prove "
                  "that the pipeline runs end to end, not how well anything learns.")
        print(f"Summary: {summary}\nExecuted notebooks: {out_dir}")
    else:
        print(f"Executed notebooks: {out_dir} (the summary notebook, 08, writes the summary)")
    if failed:
        print("Failed: " + ", ".join(failed) + ". Fix the cause and run the same command again: finished runs "
              "are loaded, interrupted ones resume.")
    return 1 if failed else 0


def _run_all(selected: list, out_dir: Path, parameters: dict) -> list:
    """Run the notebooks in order, one line each (name, status, time); the names of those that failed."""
    failed = []
    width = max(len(notebook.stem) for notebook in selected)
    for i, notebook in enumerate(selected, start=1):
        started = time.time()
        print(f"[{i}/{len(selected)}] {notebook.stem:<{width}} ", end="", flush=True)
        try:
            run_notebook(notebook, out_dir / notebook.name, parameters)
        except Exception as err:  # papermill raises with the failing cell's error; keep going
            failed.append(notebook.name)
            print(f"FAILED {time.time() - started:4.0f} s  {failure_line(err)} (executed copy: "
                  f"{out_dir / notebook.name})", flush=True)
            continue
        print(f"ok     {time.time() - started:4.0f} s", flush=True)
    return failed


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


if __name__ == "__main__":
    sys.exit(main())
