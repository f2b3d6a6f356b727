"""Training data indexed by the global step, so a resumed run sees exactly the batches it would have seen.

Batch k is a slice of the permutation of epoch k // steps_per_epoch, drawn from (seed, epoch); the
flips of batch k come from (seed, k). The stream is endless and starts at the run's current global
step whenever Lightning iterates it, so Lightning's notion of epochs never replays or skips a batch;
`trainer.max_steps` ends the run.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, IterableDataset

from diffrep.data import ImageSet, hflip_batch, to_float


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, step, stream): per-step randomness survives resumes."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


class StepBatches(IterableDataset):
    def __init__(self, data: ImageSet, batch_size: int, start: Callable[[], int], seed: int, hflip: bool):
        if len(data) == 0:
            raise ValueError("cannot train on an empty dataset")
        self.data, self.batch_size, self.seed, self.hflip = data, min(batch_size, len(data)), seed, hflip
        self.start = start
        self.steps_per_epoch = len(data) // self.batch_size

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        return perm[pos * self.batch_size: (pos + 1) * self.batch_size]

    def batch(self, step: int):
        idx = self.indices(step)
        images = self.data.images[idx]
        if self.hflip:
            images = hflip_batch(images, step_generator(self.seed, step, stream=1))
        return to_float(images), self.data.labels[idx]

    def __iter__(self):
        step = self.start()
        while True:
            yield self.batch(step)
            step += 1


def step_loader(data: ImageSet, batch_size: int, start: Callable[[], int], seed: int, hflip: bool) -> DataLoader:
    """An endless loader of whole batches, starting at step start() each time it is iterated."""
    return DataLoader(StepBatches(data, batch_size, start, seed, hflip), batch_size=None, num_workers=0)
