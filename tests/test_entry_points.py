"""Every command line of the package and of tools/ answers --help, and each quick run of one works: every
benchmark of tools/bench.py on tiny sizes, as a new user types them."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the command of each file with a __main__ block, and the words its --help must show
COMMANDS = {"tools/reproduce.py": (["tools/reproduce.py"], "--profile"),
            "common/evaluate.py": (["-m", "common.evaluate"], "--images"),
            "common/experiment.py": (["-m", "common.experiment", "worker"], "--gpu"),
            "tools/bench.py": (["tools/bench.py"], "--only"),
            "tools/gpucheck.py": (["tools/gpucheck.py"], "--commit"),
            "tools/cpu_queue.py": (["tools/cpu_queue.py"], "NAME:SEED"),
            "tools/set_repo_url.py": (["tools/set_repo_url.py"], "--check")}
# tiny sizes: each benchmark in seconds on a CPU
TINY = ["--quick", "--repeats", "1", "--workers", "0", "--n-train", "100", "--fit-images", "100", "--models",
        "vgg_basic", "--model-batch", "2", "--epoch-batch", "4", "--threads", "1"]


def command(args: list, **env) -> subprocess.CompletedProcess:
    """`python ARGS` in the repository, as typed there, outside pytest (the package not installed)."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_every_command_line_is_listed_here():
    mains = {str(path.relative_to(REPO)) for folder in ("common", "tools") for path in (REPO / folder).glob("*.py")
             if re.search(r'^if __name__ == "__main__":', path.read_text(), re.MULTILINE)}
    assert mains == set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_line_answers_help(path):
    args, shown = COMMANDS[path]
    done = command([*args, "--help"])
    assert done.returncode == 0 and shown in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "usage:" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("benchmark", ["loader", "training", "models", "epoch"])
def test_every_benchmark_runs_from_the_command_line(benchmark, tmp_path):
    out = tmp_path / "bench.csv"
    done = command(["tools/bench.py", "--only", benchmark, *TINY, "--out", str(out)], REPRO_ROOT=str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with open(out) as f:
        rows = list(csv.DictReader(f))
    expected = {"loader": "loader ", "training": "training ", "models": "train ", "epoch": "resnet18 epoch"}[benchmark]
    assert rows and all(row["benchmark"].startswith(expected) for row in rows)
    assert all(float(row["images_per_s"]) > 0 for row in rows)
    if benchmark == "loader":  # every chain, the torchvision baseline first
        assert [row["benchmark"] for row in rows[::2]] == ["loader flip+translate", "loader flip+translate+cutout8",
                                                           "loader level A"]
        assert all(row["variant"].startswith("torchvision DataLoader") for row in rows[::2])


def test_the_repository_address_check_runs():
    done = command(["tools/set_repo_url.py", "--check"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_repro_allow_cpu_other_than_1_or_0_is_refused_in_a_sentence(value):
    done = command(["tools/reproduce.py", "--profile", "full"], REPRO_ALLOW_CPU=value, CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 2 and f"REPRO_ALLOW_CPU={value!r} is not a switch" in done.stdout, done.stdout
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr
