"""The prepared GPU check (python -m common.gpucheck) through its dry run, and a fresh GPU box's bare install."""

import importlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from common import gpucheck, paths, progress

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def scratch(cpu_root):
    """A scratch root on the CPU (tests/conftest.py)."""
    return cpu_root


def test_dry_run_benchmarks_trains_every_check_run_and_packs_what_the_repository_commits(scratch, capsys):
    assert gpucheck.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints" in out and "% of it" in out  # each finished run says what its checkpoints cost
    [archive] = (scratch / "runs" / "gpucheck").glob("gpucheck-*.tar.gz")
    assert archive.stat().st_size <= gpucheck.ARCHIVE_LIMIT
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    runs = gpucheck.check_runs(profile="smoke")
    assert len(runs) == 10
    for notebook in ("03_resnet18_baselines", "04_se_convnext", "06_noisy_labels", "bench"):
        assert f"smoke/results/{notebook}.csv" in names
    for _, _, cfg in runs:
        run_id = cfg.replace(**gpucheck.DRY_RUN_SIZES).run_id
        assert {f"smoke/results/history/{run_id}.csv", f"smoke/figures/{run_id}.png"} <= names
    assert any(name.startswith("runs/gpucheck/") and name.endswith(".log") for name in names)
    assert not (scratch / "results").exists()  # the smoke profile never writes where full results go
    for name in ("vgg_basic", "resnet18", "se_resnet18", "convnext", "vit", "against the bare loop",
                 "resnet18 epoch", "report 0.9192", "the whole report at these speeds", "GPU tests:"):
        assert name in out
    # a later window skips what is recorded: nothing trains again
    speeds = gpucheck.Speeds(rate=dict.fromkeys(gpucheck.bench.MODELS, 1e-3), fp32={})
    dry = [(notebook, label, cfg.replace(**gpucheck.DRY_RUN_SIZES)) for notebook, label, cfg in runs]
    again = gpucheck.train_runs(dry, speeds, (12, 8), gpucheck.Clock(1))
    assert [o["status"] for o in again] == ["recorded"] * 10


def test_a_run_that_would_not_end_in_time_is_not_started(scratch):
    notebook, label, cfg = gpucheck.check_runs(profile="smoke")[0]
    slow = gpucheck.Speeds(rate=dict.fromkeys(gpucheck.bench.MODELS, 1.0), fp32={})  # one image a second
    [outcome] = gpucheck.train_runs([(notebook, label, cfg)], slow, (128, 64), gpucheck.Clock(60))
    assert outcome["status"] == "waiting" and outcome["need"] > 60
    assert not (paths.checkpoints_dir("smoke") / cfg.run_id).exists()


def test_a_run_out_of_time_stops_after_a_checkpoint_and_the_next_window_resumes_it(scratch):
    notebook, _, cfg = gpucheck.check_runs(profile="smoke")[0]
    cfg = cfg.replace(synthetic_sizes=(72, 8), val_size=8, epochs=2)
    cut = gpucheck.train_within(cfg, notebook, deadline=time.monotonic(), poll_s=0.01)  # no epoch fits
    assert cut == {"status": "cut", "epoch": 1}
    assert gpucheck.recorded(cfg, notebook) is None and gpucheck.checkpoint_epoch(cfg) == 1
    done = gpucheck.train_within(cfg, notebook, deadline=time.monotonic() + 3600)
    assert done["status"] == "finished" and done["row"]["epochs"] == 2
    assert len(gpucheck.recorded(cfg, notebook).history) == 2


def test_estimates_count_every_pass_and_the_report_counts_every_notebooks_runs():
    speeds = gpucheck.Speeds(rate=dict.fromkeys(gpucheck.bench.MODELS, 100.0), fp32={})
    plain, coteaching = (gpucheck.recipes.noisy_labels("cifar10", "symmetric", 0.3, coteaching=on) for on in (0, 1))
    assert speeds.seconds_per_image(coteaching) == 2 * speeds.seconds_per_image(plain)
    assert speeds.seconds_per_image(gpucheck.recipes.supcon_pretrain()) == 2 / 100  # two views
    whole, test_only = speeds.run_seconds(plain, 49_500, 10_000), speeds.run_seconds(plain, 49_500, 10_000, done=30)
    assert speeds.run_seconds(plain, 49_500, 10_000, done=29) == pytest.approx(test_only + (whole - test_only) / 30)
    per_notebook = {}
    for notebook, _ in gpucheck.report_runs():
        per_notebook[notebook] = per_notebook.get(notebook, 0) + 1
    variants = gpucheck.regularization_variants()  # as notebook 02's parameters cell lists them
    assert per_notebook == {"01_basic_vgg": 1, "02_regularization": len(variants), "03_resnet18_baselines": 2,
                            "04_se_convnext": 4, "05_supcon": 2, "06_noisy_labels": 10, "07_vit": 1}
    cells = json.loads((REPO / "notebooks" / "02_regularization.ipynb").read_text())["cells"]
    [parameters] = ["".join(cell["source"]) for cell in cells if "\nVARIANTS = " in "".join(cell["source"])]
    assert variants and all(f'"{variant}"' in parameters for variant in variants)
    assert set(variants) < set(gpucheck.recipes.LEVEL_E_VARIANTS)


def test_without_the_notebooks_the_report_counts_every_level_e_exploration(monkeypatch, tmp_path):
    monkeypatch.setattr(gpucheck, "NOTEBOOKS", tmp_path)
    assert gpucheck.regularization_variants() == [v for v in gpucheck.recipes.LEVEL_E_VARIANTS if v != "basic"]


BLOCKER = """
import importlib.abc, importlib.util, sys
blocked = {blocked!r}
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Missing())
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if name in blocked else find_spec(name, package)
"""


def bare(blocked: set, code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python where the `blocked` packages are not installed."""
    script = BLOCKER.format(blocked=sorted(blocked)) + code
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_bench_and_the_training_loop_import_with_torch_alone():
    done = bare({"tqdm", "pandas", "matplotlib", "seaborn", "pytest", "nbval", "papermill"},
                "import common.bench, common.train, common.progress\n"
                "assert common.progress.tqdm is None\n"
                "common.bench.parse_args(['--quick'])\n")
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_training_api_and_the_check_import_without_tqdm_pytest_or_nbval():
    done = bare({"tqdm", "seaborn", "pytest", "nbval", "papermill"},
                "import common.experiment, common.gpucheck\n"
                "print(common.gpucheck.run_gpu_tests(timeout=5))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pytest is not installed" in done.stdout


def test_without_tqdm_the_progress_bar_prints_plain_lines(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    try:
        importlib.reload(progress)
        assert progress.tqdm is None
        bar = progress.progress_bar(total=4, desc="a_run")
        bar.update(2)
        bar.set_postfix_str("loss 1.0", refresh=False)
        bar.write("epoch 1/2 loss 1.0")
        bar.update(2)
        bar.close()
        assert bar.n == 4
        out = capsys.readouterr().out
        assert "epoch 1/2 loss 1.0" in out and "a_run: 4/4 steps | loss 1.0" in out
        silent = progress.progress_bar(total=4, disable=True)
        silent.update(4)
        silent.close()
        assert capsys.readouterr().out == ""
    finally:
        monkeypatch.undo()
        importlib.reload(progress)
    assert progress.tqdm is not None


def test_the_unit_tests_run_without_nbval_and_the_notebooks_through_it_where_installed():
    env = {k: v for k, v in os.environ.items() if k != paths.ROOT_ENV}
    without = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:nbval", "--collect-only", "-q",
                              "tests/test_bench.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert without.returncode == 0, without.stdout[-2000:] + without.stderr[-2000:]
    if importlib.util.find_spec("nbval") is None:
        pytest.skip("nbval is not installed here")
    notebooks = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "notebooks/01_basic_vgg.ipynb"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert notebooks.returncode == 0 and "01_basic_vgg.ipynb::Cell" in notebooks.stdout, notebooks.stdout[-2000:]
