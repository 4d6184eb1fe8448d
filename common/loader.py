"""The device-resident loader: the whole uint8 set on the device, batches by index."""

import torch

from .augment import normalize
from .seeds import derive_seed


class DeviceLoader:
    """(images, labels) batches, plus the true labels of a noisy-label run, from tensors kept on `device`.

    Each epoch is a fresh permutation seeded by (seed, epoch): every sample is seen once per epoch, and an interrupted
    run that resumes at epoch k draws exactly what it would have. Under data parallelism every process draws the same
    batches and keeps its own `rank`-th share of each: together they see each sample once."""

    def __init__(self, x, y, batch_size, mean, std, augment=None, shuffle=True,
                 device="cpu", channels_last=False, seed=0, rank=0, world_size=1, clean=None):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels.")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        last = len(y) % batch_size
        if world_size > 1 and (batch_size < world_size or 0 < last < world_size):
            raise ValueError(f"A batch of {min(batch_size, last or batch_size)} images cannot be shared by "
                             f"{world_size} processes: use a batch size (and a set size) that leaves every "
                             "process at least one image of each batch.")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.clean = None if clean is None else clean.to(self.device)
        self.batch_size, self.mean, self.std = batch_size, mean, std
        self.augment, self.shuffle, self.channels_last, self.seed = augment, shuffle, channels_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, stream: str = "shuffle") -> torch.Generator:
        """This epoch's generator of one stream: the batches (shuffle) or this process's augmentation."""
        return torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, self.epoch, stream, self.rank))

    def batch_indices(self, gen=None) -> list:
        """This process's sample indices of every batch of the current epoch (`gen`: the epoch's generator)."""
        n = len(self.y)
        gen = gen or self.generator()
        order = (torch.randperm(n, device=self.device, generator=gen) if self.shuffle
                 else torch.arange(n, device=self.device))
        return [order[start:start + self.batch_size].tensor_split(self.world_size)[self.rank]
                for start in range(0, n, self.batch_size)]

    def share_sizes(self) -> list:
        """Per batch, how many of its images each process takes (tensor_split's shares, known without asking)."""
        n, size, world = len(self.y), self.batch_size, self.world_size
        return [[len(range(min(size, n - start))[r::world]) for r in range(world)] for start in range(0, n, size)]

    def shard_weights(self) -> list:
        """Per batch, this process's share of it times the number of processes: 1.0 when the batch divides
        evenly. Scaling a process's mean loss by it makes the averaged gradient the whole batch's mean."""
        return [sizes[self.rank] * self.world_size / sum(sizes) for sizes in self.share_sizes()]

    def __iter__(self):
        gen = self.generator()
        batches = self.batch_indices(gen)
        if self.rank > 0:  # the other processes augment their shares with draws of their own
            gen = self.generator("augment")
        for idx in batches:
            images = self.x[idx].float().div_(255)
            if self.augment is not None:
                images = self.augment(images, gen)
            images = normalize(images, self.mean, self.std)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield (images, self.y[idx]) if self.clean is None else (images, self.y[idx], self.clean[idx])
