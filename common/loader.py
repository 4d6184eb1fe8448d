"""The device-resident loader: the whole uint8 set on the device, batches by index."""

import torch

from .augment import normalize


class DeviceLoader:
    """Yield (images, labels) batches drawn from tensors kept on `device`.

    Each epoch is a fresh permutation seeded by (seed, epoch): every sample is seen once per
    epoch, and an interrupted run that resumes at epoch k draws exactly what it would have.
    """

    def __init__(self, x, y, batch_size, mean, std, augment=None, shuffle=True,
                 device="cpu", channels_last=False, seed=0):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels.")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size, self.mean, self.std = batch_size, mean, std
        self.augment, self.shuffle, self.channels_last, self.seed = augment, shuffle, channels_last, seed
        self.epoch = 0

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)

    def __iter__(self):
        gen = self.generator()
        n = len(self.y)
        order = (torch.randperm(n, device=self.device, generator=gen) if self.shuffle
                 else torch.arange(n, device=self.device))
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.x[idx].float().div_(255)
            if self.augment is not None:
                images = self.augment(images, gen)
            images = normalize(images, self.mean, self.std)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.y[idx]
