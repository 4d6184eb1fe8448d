"""A progress bar that reads well in a notebook, a terminal and a CI log."""

import sys
import time

try:
    from tqdm.auto import tqdm
except ImportError:  # a fresh GPU box may have only torch and torchvision: plain lines then
    tqdm = None


class PlainBar:
    """The part of tqdm that fit() uses, as a plain line at most every `interval` seconds."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", disable: bool = False, interval: float = 60):
        self.total, self.n, self.desc, self.disable, self.interval = total, initial, desc, disable, interval
        self.postfix, self.shown = "", time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.disable and time.monotonic() - self.shown >= self.interval:
            self.show()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def write(self, s: str) -> None:
        print(s, flush=True)

    def show(self) -> None:
        self.shown = time.monotonic()
        print(f"{self.desc}: {self.n}/{self.total} steps" + (f" | {self.postfix}" if self.postfix else ""), flush=True)

    def close(self) -> None:
        if not self.disable:
            self.show()


def progress_bar(total: int, desc: str = "", initial: int = 0, disable: bool = False):
    """tqdm that redraws often where a person watches, and rarely where output is stored; plain lines without tqdm."""
    watched = sys.stderr.isatty() or "ipykernel" in sys.modules
    if tqdm is None:
        return PlainBar(total, initial, desc, disable, interval=10 if watched else 60)
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disable, leave=True,
                dynamic_ncols=True, mininterval=0.5 if watched else 60, maxinterval=600)
