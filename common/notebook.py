"""The notebooks' own calls: the one setup (where outputs go, how runs execute, its parameters checked) and
showing a chapter's code."""

import inspect
import numbers
import os
import sys

from . import paths
from .config import Execution

DRIVE_ROOT = "/content/drive/MyDrive/cifar-report-repro"


def setup(profile: str, use_drive: bool = False, compile: bool = False, sync_bn: bool = False, parallel: str = "off",
          gpus: int = 0, *, epochs=None, seed=0) -> Execution:
    """Check the parameters, keep outputs on Google Drive when asked (Colab), and return the runs' Execution."""
    paths.check_profile(profile)
    check_parameters(epochs, seed)
    if use_drive and "google.colab" in sys.modules:  # data, checkpoints and results survive the Colab session
        from google.colab import drive  # exists only in Colab

        drive.mount("/content/drive")
        os.makedirs(DRIVE_ROOT, exist_ok=True)
        os.environ[paths.ROOT_ENV] = DRIVE_ROOT
        print(f"Data, checkpoints and results are kept in {DRIVE_ROOT}: a new session resumes from there.")
    return Execution(compile=compile, sync_bn=sync_bn, parallel=parallel, gpus=gpus)


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_parameters(epochs, seed) -> None:
    """Refuse EPOCHS and SEED that no run could use (2.5 epochs would silently train 2), in one sentence."""
    if epochs is not None and not (_whole(epochs) and epochs >= 1):
        raise ValueError(f"EPOCHS = {epochs!r} is not a number of epochs: set it to a whole number of at least 1 "
                         "(e.g. EPOCHS = 3), or None for the recipe's own.")
    if not (_whole(seed) and seed >= 0):
        raise ValueError(f"SEED = {seed!r} is not a seed: set it to a whole number of at least 0, e.g. SEED = 0.")


def show_source(obj) -> None:
    """Show a function's or class's code in a notebook, where a chapter explains it (plain text elsewhere)."""
    code = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display  # a notebook's; a plain script prints instead
    except ImportError:
        print(code)
        return
    display(Markdown(f"```python\n{code}```"))
