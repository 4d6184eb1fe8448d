"""The one setup call of every notebook: where outputs go (Google Drive in Colab, if asked) and how runs execute."""

import os
import sys

from . import paths
from .config import Execution

DRIVE_ROOT = "/content/drive/MyDrive/cifar-report-repro"


def setup(profile: str, use_drive: bool = False, compile: bool = False, sync_bn: bool = False, parallel: str = "off",
          gpus: int = 0) -> Execution:
    """Check the profile, keep outputs on Google Drive when asked (Colab), and return the runs' Execution."""
    paths.check_profile(profile)
    if use_drive and "google.colab" in sys.modules:  # data, checkpoints and results survive the Colab session
        from google.colab import drive  # exists only in Colab

        drive.mount("/content/drive")
        os.makedirs(DRIVE_ROOT, exist_ok=True)
        os.environ[paths.ROOT_ENV] = DRIVE_ROOT
        print(f"Data, checkpoints and results are kept in {DRIVE_ROOT}: a new session resumes from there.")
    return Execution(compile=compile, sync_bn=sync_bn, parallel=parallel, gpus=gpus)
