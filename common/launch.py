"""Processes for a list of runs on several GPUs: each run over all of them (torchrun), or one run per GPU.

Execution.parallel picks the way: "ddp" trains each run in `torchrun --nproc_per_node=N` processes, each on a
share of every batch (common.distributed); "spread" gives a notebook's runs to N workers, one per GPU, each
taking the next run nobody has claimed. The caller then loads the recorded results as if it had trained them.
The workers run `python -m common.experiment worker JOB`: this module starts processes and never trains.
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
from .config import Execution
from .results import recorded_result

FAILED_MARK = "run failed:"  # how a worker reports its error, so the launcher can quote it


class LaunchFailed(RuntimeError):
    """A launched training process ended with an error."""


def processes(execution: Execution) -> int:
    """How many processes a parallel launch uses: execution.gpus, or every visible GPU (spread workers may share)."""
    return execution.gpus or torch.cuda.device_count()


def pending(cfg, notebook: str, force: bool) -> bool:
    """True when the run must be trained: forced, or not recorded yet."""
    return force or recorded_result(cfg, notebook) is None


def wants_torchrun(cfg, notebook: str, force: bool, execution: Execution) -> bool:
    """True when this run should be handed to torchrun rather than trained in this process."""
    # Co-teaching ranks whole batches, so it keeps one process (SupCon gathers the batch: it splits)
    return (execution.parallel == "ddp" and processes(execution) > 1 and not distributed.launched()
            and not cfg.coteaching and pending(cfg, notebook, force))


def wants_spread(configs: list, notebook: str, force: bool, execution: Execution) -> list:
    """The runs to hand to worker processes, one per GPU (none unless spreading pays)."""
    if execution.parallel != "spread" or processes(execution) < 2 or distributed.launched():
        return []
    waiting = [cfg for cfg in configs if pending(cfg, notebook, force)]
    return waiting if len(waiting) > 1 else []


def write_job(configs: list, notebook: str, force: bool, execution: Execution, allow_cpu: bool = False) -> Path:
    """The runs of one launch, pickled where the workers can read them."""
    folder = paths.checkpoints_dir(configs[0].profile)
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".launch-{notebook}-", suffix=".pkl", dir=folder)
    with os.fdopen(handle, "wb") as f:
        pickle.dump({"configs": configs, "notebook": notebook, "force": force, "execution": execution,
                     "allow_cpu": allow_cpu}, f)
    return Path(name)


def read_job(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def torchrun_runs(configs: list, notebook: str, force: bool, execution: Execution, allow_cpu: bool = False) -> None:
    """Train `configs` one after the other, each over all GPUs with torchrun; raise if the launch failed."""
    n = distributed.check_gpus(processes(execution))  # each data-parallel process needs a GPU of its own
    job = write_job(configs, notebook, force, execution, allow_cpu)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               "-m", "common.experiment", "worker", str(job)]
    try:
        _run_logged([command], job, f"{', '.join(c.run_id for c in configs)} over {n} processes (torchrun)")
    finally:
        job.unlink(missing_ok=True)


def spread_runs(configs: list, notebook: str, force: bool, execution: Execution, allow_cpu: bool = False) -> None:
    """Train `configs` in worker processes, each claiming the next unclaimed run. Worker k uses GPU k modulo
    the GPUs there are, so more workers than GPUs share them (small networks leave a GPU idle)."""
    n = processes(execution)
    job = write_job(configs, notebook, force, execution, allow_cpu)
    commands = [[sys.executable, "-m", "common.experiment", "worker", str(job), "--gpu", str(k)] for k in range(n)]
    try:
        _run_logged(commands, job, f"{len(configs)} runs of {notebook} in {n} worker processes")
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
                           "load, interrupted ones resume), or use parallel='off' to train in this process.")
    for _, log in procs:
        Path(log.name).unlink(missing_ok=True)
    print(f"trained {what} in {time.time() - started:.0f} s", flush=True)


def claim(job: Path, index: int) -> bool:
    """True for the one worker that claims run `index` of the job first."""
    try:
        os.close(os.open(f"{job}.claim{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False
