"""Several GPUs for a notebook's training: one run over all of them (torchrun), or one run per GPU.

$REPRO_PARALLEL picks the way (python -m common.reproduce --parallel sets it for every notebook):
- ddp: run_experiment launches `torchrun --nproc_per_node=N` for its run; each process trains a share
  of every batch (common.distributed) and the main one records the result.
- spread: run_experiments hands a notebook's independent runs to N worker processes, one per GPU,
  each taking the next run nobody has claimed yet.
Either way the notebook then loads the recorded results as if it had trained them itself, so what it
shows does not depend on how the training was done. $REPRO_GPUS sets N (default: every visible GPU).
Under ddp, Co-teaching runs (which rank whole batches) and runs with a custom network builder train in
the notebook's own process, on one GPU.
"""

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import distributed, paths

PARALLEL_ENV = "REPRO_PARALLEL"  # "ddp" | "spread" | unset: one process, one GPU
GPUS_ENV = "REPRO_GPUS"
MODES = ("off", "ddp", "spread")


FAILED_MARK = "run failed:"  # how a worker reports its error, so the launcher can quote it


class LaunchFailed(RuntimeError):
    """A launched training process ended with an error."""


def mode() -> str:
    value = os.environ.get(PARALLEL_ENV) or "off"
    if value not in MODES:
        raise ValueError(f"{PARALLEL_ENV}={value!r} is not a way to run: use one of {', '.join(MODES)}.")
    return value


def gpus() -> int:
    """How many processes a parallel launch uses: $REPRO_GPUS, or every visible GPU."""
    value = os.environ.get(GPUS_ENV) or str(torch.cuda.device_count())
    if not value.isdigit():
        raise ValueError(f"{GPUS_ENV}={value!r} is not a number of GPUs: give a whole number, e.g. 4.")
    return int(value)


def splittable(cfg) -> bool:
    """Co-teaching ranks whole batches, so it keeps one process (SupCon gathers the batch: it splits)."""
    return not cfg.coteaching


def _pending(cfg, notebook: str, force: bool) -> bool:
    from .experiment import recorded_result

    return force or recorded_result(cfg, notebook) is None


def wants_torchrun(cfg, notebook: str, force: bool) -> bool:
    """True when run_experiment should hand this run to torchrun rather than train it in this process."""
    return (mode() == "ddp" and gpus() > 1 and not distributed.launched() and splittable(cfg)
            and _pending(cfg, notebook, force))


def run_experiments(configs: dict, notebook: str, force: bool = False, progress: bool = True) -> dict:
    """run_experiment for each named config, spread one per GPU when $REPRO_PARALLEL=spread; name -> RunResult."""
    from .experiment import run_experiment

    if mode() == "spread" and gpus() > 1 and not distributed.launched():
        pending = [cfg for cfg in configs.values() if _pending(cfg, notebook, force)]
        if len(pending) > 1:
            _spread(pending, notebook, force)
            force = False  # the workers trained and recorded them: load them
    return {name: run_experiment(cfg, notebook, force=force, progress=progress) for name, cfg in configs.items()}


def _job_file(configs: list, notebook: str, force: bool) -> Path:
    """The runs of one launch, pickled where the workers can read them."""
    folder = paths.checkpoints_dir(configs[0].profile)
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".launch-{notebook}-", suffix=".pkl", dir=folder)
    with os.fdopen(handle, "wb") as f:
        pickle.dump({"configs": configs, "notebook": notebook, "force": force}, f)
    return Path(name)


def torchrun_runs(configs: list, notebook: str, force: bool) -> None:
    """Train `configs` one after the other, each over all GPUs with torchrun; raise if the launch failed."""
    job = _job_file(configs, notebook, force)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus()}",
               "-m", "common.launch", "worker", str(job)]
    try:
        _run_logged([command], job, f"{', '.join(c.run_id for c in configs)} over {gpus()} processes (torchrun)")
    finally:
        job.unlink(missing_ok=True)


def _spread(configs: list, notebook: str, force: bool) -> None:
    """Train `configs` in gpus() worker processes, each claiming the next unclaimed run. Worker k uses GPU
    k modulo the GPUs there are, so more workers than GPUs share them (small networks leave a GPU idle)."""
    job = _job_file(configs, notebook, force)
    commands = [[sys.executable, "-m", "common.launch", "worker", str(job), "--gpu", str(k)] for k in range(gpus())]
    try:
        _run_logged(commands, job, f"{len(configs)} runs of {notebook} in {gpus()} worker processes")
    finally:
        for path in [job, *job.parent.glob(job.name + ".claim*")]:
            path.unlink(missing_ok=True)


def _run_logged(commands: list, job: Path, what: str) -> None:
    """Start the commands at once, each logging to a file beside the job; wait; on failure, raise with the log's end."""
    print(f"training {what} ...", flush=True)
    started, procs = time.time(), []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    for i, command in enumerate(commands):
        log = open(job.with_name(f"{job.name}.{i}.log"), "w")
        procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    failures = []
    for proc, log in procs:
        code = proc.wait()
        log.close()
        if code != 0:
            lines = Path(log.name).read_text().strip().splitlines()
            reported = [line for line in lines if FAILED_MARK in line]  # the worker's own sentence, if it got there
            failures.append(f"{reported[0] if reported else 'exit code ' + str(code)}; log: {log.name}")
    if failures:
        raise LaunchFailed(f"Training {what} failed ({failures[0]})\nFix the cause and run again (finished runs "
                           f"load, interrupted ones resume), or set {PARALLEL_ENV}=off to train in this process.")
    for _, log in procs:
        Path(log.name).unlink(missing_ok=True)
    print(f"trained {what} in {time.time() - started:.0f} s", flush=True)


def _claim(job: Path, index: int) -> bool:
    """True for the one worker that claims run `index` of the job first."""
    try:
        os.close(os.open(f"{job}.claim{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def worker(argv=None) -> None:
    """python -m common.launch worker JOB [--gpu K]: train a job's runs (under torchrun, or one GPU's share)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m common.launch worker")
    parser.add_argument("job", type=Path)
    parser.add_argument("--gpu", type=int, help="spread: this worker's GPU; it claims runs one at a time")
    args = parser.parse_args(argv)
    if args.gpu is not None and torch.cuda.is_available():
        os.environ["LOCAL_RANK"] = str(args.gpu % torch.cuda.device_count())  # setup() binds to it
    distributed.setup()
    with open(args.job, "rb") as f:
        job = pickle.load(f)
    from .experiment import run_experiment

    os.environ[PARALLEL_ENV] = "off"  # a worker trains in its own process(es), never launches again
    for index, cfg in enumerate(job["configs"]):
        if args.gpu is None or _claim(args.job, index):
            try:
                run_experiment(cfg, job["notebook"], force=job["force"], progress=False)
            except Exception as err:
                print(f"{FAILED_MARK} {cfg.run_id}: {type(err).__name__}: {err}", flush=True)
                raise
            if distributed.is_main():
                print(f"{cfg.run_id}: done", flush=True)
    distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("usage: python -m common.launch worker JOB [--gpu K] (started by run_experiment(s), not by hand)")
    worker(sys.argv[2:])
