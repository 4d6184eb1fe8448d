"""Test-wide settings: every notebook and test runs the smoke profile in a scratch folder."""

import os
import shutil
import tempfile

import pytest

# nbval cannot pass papermill parameters, so the notebooks read their profile from here.
os.environ["REPRO_PROFILE"] = "smoke"
# Smoke output of the test run goes to a scratch root, never into the checkout's smoke/ or results/.
SCRATCH = None
if "REPRO_ROOT" not in os.environ:
    SCRATCH = os.environ["REPRO_ROOT"] = tempfile.mkdtemp(prefix="repro-tests-")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    """Notebooks run through nbval in lax mode where nbval is installed; without it the unit tests still run."""
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (tools/gpucheck.py runs these: pytest -m gpu)")
    if config.pluginmanager.hasplugin("nbval") and not config.option.nbval:
        config.option.nbval_lax = True


def pytest_collection_modifyitems(config, items):
    """Every test skipped without a GPU (a skipif whose reason names one) is marked gpu."""
    for item in items:
        if any("GPU" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.gpu)


def pytest_unconfigure(config):
    """Remove the scratch root: the smoke checkpoints of one test run take several GB (ConvNeXt's alone ~1.5 GB).
    Set REPRO_KEEP_TEST_OUTPUT=1 to keep it for a look."""
    if SCRATCH and not os.environ.get("REPRO_KEEP_TEST_OUTPUT"):
        shutil.rmtree(SCRATCH, ignore_errors=True)
