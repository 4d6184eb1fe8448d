"""Where data, checkpoints, results and figures live for each profile."""

import os
from pathlib import Path

PROFILES = ("full", "smoke")
PROFILE_ENV = "REPRO_PROFILE"  # the default profile of every notebook
DATA_ENV = "REPRO_DATA"  # the data folder (default: <root>/data)
ROOT_ENV = "REPRO_ROOT"  # the repository root (default: found from here)


def default_profile() -> str:
    """The profile a notebook runs when no papermill parameter says otherwise: $REPRO_PROFILE, else full."""
    profile = os.environ.get(PROFILE_ENV, "full")
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={profile!r} is not a profile: set it to one of {', '.join(PROFILES)}, "
                         "or unset it.")
    return profile


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}: use one of {', '.join(PROFILES)}.")
    return profile


def repo_root() -> Path:
    """The repository root: $REPRO_ROOT, the checkout holding this package, or the cwd."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists() and (here / "notebooks").is_dir():
        return here
    return Path.cwd().resolve()  # installed from a wheel: work in the current folder


def pin_environment() -> None:
    """Make a relative $REPRO_ROOT or $REPRO_DATA absolute, against the current folder, for the processes started
    from here: notebook kernels run in notebooks/ and would resolve it there."""
    for name in (ROOT_ENV, DATA_ENV):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).expanduser().resolve())


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or repo_root() / "data")


def output_root(profile: str) -> Path:
    """Full runs write into the repository; smoke runs into the git-ignored smoke/."""
    root = repo_root()
    return root if check_profile(profile) == "full" else root / "smoke"


def results_dir(profile: str) -> Path:
    return output_root(profile) / "results"


def figures_dir(profile: str) -> Path:
    return output_root(profile) / "figures"


def checkpoints_dir(profile: str) -> Path:
    return output_root(profile) / "checkpoints"
