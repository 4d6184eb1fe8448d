"""Every random stream of a run derives its seed here, from the run's seed, the epoch and the process."""

STREAMS = ("shuffle", "augment", "dropout")


def derive_seed(seed: int, epoch: int, stream: str, rank: int = 0) -> int:
    """The seed of one stream in one epoch of one process: resume is exact (it depends on nothing else), and
    the processes of a data-parallel run draw augmentation and dropout of their own (process 0 as one alone)."""
    if stream not in STREAMS:
        raise ValueError(f"Unknown random stream {stream!r}: use one of {', '.join(STREAMS)}.")
    base = seed * 1_000_003 + epoch  # distinct for every (seed, epoch) of any run shorter than a million epochs
    if stream == "shuffle" or rank == 0:  # every process draws the same batches; process 0 the same as one alone
        return base
    if stream == "augment":
        return base * 1_009 + rank
    return base + 7_919 * rank  # dropout
