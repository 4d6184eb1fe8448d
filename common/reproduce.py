"""Run the whole report headless: every notebook in order with papermill, then the summary.

    python -m common.reproduce --profile smoke          # CPU, offline, a few minutes
    python -m common.reproduce --profile full           # the report's recipes, on a GPU
    python -m common.reproduce --only 01 08             # a subset, by number or name

Executed copies go to runs/<profile>/ (git-ignored). A failing notebook is reported and the
others still run. Runs resume from their checkpoints and finished runs load their recorded
results, so re-running the command finishes what an interruption left.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from . import paths
from .experiment import ALLOW_CPU_ENV


def notebooks(only=None) -> list:
    """The report's notebooks in order (the summary is numbered last); `only` filters by number or name."""
    found = sorted(p for p in (paths.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(key in (p.stem, p.stem.split("_")[0]) for key in only)]
    return found


def run_notebook(source: Path, output: Path, profile: str) -> None:
    import papermill

    papermill.execute_notebook(str(source), str(output), parameters={"PROFILE": profile},
                               cwd=str(source.parent), progress_bar=False, kernel_name="python3")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=paths.default_profile(), choices=paths.PROFILES,
                        help="full: the report's recipes on the real data; smoke: generated data on a CPU")
    parser.add_argument("--only", nargs="+", metavar="NB", help="run only these notebooks, e.g. 01 08")
    args = parser.parse_args(argv)

    import torch

    if args.profile == "full" and not torch.cuda.is_available() and not os.environ.get(ALLOW_CPU_ENV):
        print("The full profile needs a GPU and none was found: run it on a GPU machine or in Colab, use "
              f"--profile smoke, or set {ALLOW_CPU_ENV}=1 to train on the CPU anyway (hours per notebook).")
        return 2
    selected = notebooks(args.only)
    if not selected:
        print(f"No notebook matches --only {' '.join(args.only)}: see the notebooks/ folder for their numbers.")
        return 2
    out_dir = paths.repo_root() / "runs" / args.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ[paths.PROFILE_ENV] = args.profile  # the kernels inherit it
    failed = []
    for i, notebook in enumerate(selected, start=1):
        started = time.time()
        print(f"[{i}/{len(selected)}] {notebook.name} ({args.profile}) ...", flush=True)
        try:
            run_notebook(notebook, out_dir / notebook.name, args.profile)
        except Exception as err:  # papermill raises with the failing cell's error; keep going
            reason = str(err).strip().splitlines()
            failed.append(notebook.name)
            print(f"    FAILED after {time.time() - started:.0f} s: {reason[-1] if reason else type(err).__name__}"
                  f" (executed copy: {out_dir / notebook.name})", flush=True)
            continue
        print(f"    ok in {time.time() - started:.0f} s", flush=True)
    summary = paths.results_dir(args.profile) / "summary.md"
    print(f"\n{len(selected) - len(failed)} of {len(selected)} notebooks ran; summary: {summary}")
    if failed:
        print("Failed: " + ", ".join(failed) + ". Fix the cause and run the same command again: finished runs "
              "are loaded, interrupted ones resume.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
