"""Every test module imports with the core dependencies alone (torch, torchvision, numpy, pandas, matplotlib,
pytest), as on a fresh GPU machine: the GPU check's `pytest -m gpu` must not die collecting a notebook test."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
OPTIONAL = ("nbformat", "papermill", "nbval", "nbclient", "jupyter", "jupyter_client", "ipykernel", "IPython",
            "seaborn", "scipy")

COLLECT = textwrap.dedent(f"""
    import importlib.abc, sys
    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {OPTIONAL!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, Absent())
    import pytest
    sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", {str(TESTS)!r}]))
""")


def run_collection():
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", COLLECT], cwd=TESTS.parent, env=env, capture_output=True,
                          text=True, timeout=300)


def test_every_test_module_imports_without_the_optional_packages():
    done = run_collection()
    assert done.returncode == 0 and " error" not in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert "test_gpucheck.py" in done.stdout  # the GPU tests themselves are collected


def test_the_blocker_really_hides_them():
    probe = COLLECT.split("import pytest")[0] + "import nbformat\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        pytest.fail("the optional-package blocker let nbformat through")
    assert "No module named 'nbformat'" in done.stderr
