"""Flush denormal floats to zero on every CPU thread: weights that drift into denormals make CPU epochs several
times slower, and the flag is per thread, inherited only by threads created after it is set."""

import warnings

import torch


def flush_denormals() -> None:
    """Set flush-to-zero and denormals-are-zero on this thread; threads torch creates later inherit them."""
    torch.set_flush_denormal(True)


def every_thread_flushes() -> bool:
    """True when every intra-op CPU thread flushes denormals: one op spread over all of them on denormal inputs
    gives exact zeros (read as integers, since a float comparison would itself flush)."""
    smallest = torch.ones(torch.get_num_threads() * 65536, dtype=torch.int32).view(torch.float32)  # 1.4e-45
    return not bool((smallest * 1.0).view(torch.int32).any())


def check_flush_denormal() -> None:
    """Warn, in one sentence, when some CPU thread computes with denormals (it was created before the flag)."""
    flush_denormals()
    if not every_thread_flushes():
        warnings.warn("A CPU thread of torch does not flush denormal floats, because torch computed in parallel "
                      "before `common` was imported: import common first (restart the kernel), or CPU epochs can "
                      "slow down several times late in training.", stacklevel=3)
