"""A progress bar that reads well in a notebook, a terminal and a CI log."""

import sys

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str = "", initial: int = 0, disable: bool = False):
    """tqdm that redraws often where a person watches, and rarely where output is stored."""
    watched = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disable, leave=True,
                dynamic_ncols=True, mininterval=0.5 if watched else 60, maxinterval=600)
