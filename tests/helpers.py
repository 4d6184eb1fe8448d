"""Functions the test files share (import them as `from helpers import micro`)."""

import contextlib
from unittest import mock

from common import recipes, train


def micro(profile="smoke", variant="basic", **changes):
    """A Level E run shrunk to a few dozen synthetic images and three epochs."""
    cfg = recipes.level_e(variant, profile=profile, source="synthetic")
    return cfg.replace(**{**dict(synthetic_sizes=(48, 32), epochs=3, batch_size=16, eval_batch_size=32), **changes})


class Interrupted(Exception):
    """What cuts a run short in a test, where a user's Ctrl-C or a lost machine would."""


def fit_until(epochs: int, *args, **kwargs) -> None:
    """train.fit(*args, **kwargs) interrupted as epoch `epochs` + 1 begins, its first `epochs` checkpointed."""
    real = train.Trainer.train_epoch

    def train_epoch(trainer, loader, epoch, *rest):
        if epoch > epochs:
            raise Interrupted(f"interrupted before epoch {epoch}")
        return real(trainer, loader, epoch, *rest)
    with mock.patch.object(train.Trainer, "train_epoch", train_epoch), contextlib.suppress(Interrupted):
        train.fit(*args, **kwargs)
