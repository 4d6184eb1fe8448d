"""Functions the test files share (import them as `from helpers import micro`)."""

from common import recipes


def micro(profile="smoke", variant="basic", **changes):
    """A Level E run shrunk to a few dozen synthetic images and three epochs."""
    cfg = recipes.level_e(variant, profile=profile, source="synthetic")
    return cfg.replace(**{**dict(synthetic_sizes=(48, 32), epochs=3, batch_size=16, eval_batch_size=32), **changes})
