"""Batches for training and evaluation, reproducible to the sample and shardable across ranks.

Two decisions make a run resumable at any step and make N processes see exactly the
batches one process would:

* the order of an epoch is a function of (seed, epoch) only, and a resumed epoch skips
  the batches it already did;
* each sample's augmentation is drawn from its own seed, a function of (seed, epoch,
  index), so it does not depend on which worker or rank loads it, or on what came before.
"""

from __future__ import annotations

import signal
from typing import Callable, Iterator, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from .datasets import BadSample
from .images import ImageReadError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    # A fixed mixing of the three numbers (Python's hash() is salted per process for str,
    # and must not be used here); any two different triples give different seeds in practice.
    return ((seed * 1_000_003 + epoch) * 2_147_483_629 + index) & 0x7FFF_FFFF_FFFF


class Transformed(Dataset):
    """``base`` through ``transform``; an index ``(i, seed)`` makes the transform's randomness
    come from ``seed`` alone (the caller's random state is left as it was)."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        i, seed = index if isinstance(index, tuple) else (index, None)
        item = self.base[i]
        if isinstance(item, BadSample):
            return item
        image, label = item
        if seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            # Only the CPU generator: torch.manual_seed would also reseed CUDA's, which
            # fork_rng(devices=[]) does not restore, and dropout on the GPU draws from it.
            torch.default_generator.manual_seed(seed)
            return self.transform(image), label


class Indexed(Dataset):
    """``base``'s ``(image, label)`` as ``(image, label, index)``, so that what is kept of a
    batch can be traced to its samples (features, per-image analysis); a ``BadSample`` as is."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        item = self.base[i]
        return item if isinstance(item, BadSample) else (*item, i)


class Batch(NamedTuple):
    """What the loaders yield. ``skipped``: the unreadable files left out of this batch
    (path and reason each); ``images`` and ``target`` are None if none was readable.
    ``index``: each kept sample's index in the dataset, where it is :class:`Indexed`."""

    images: torch.Tensor | None
    target: torch.Tensor | None
    skipped: tuple[str, ...] = ()
    index: torch.Tensor | None = None


def collate(items: list) -> Batch:
    good = [item for item in items if not isinstance(item, BadSample)]
    skipped = tuple(item.reason for item in items if isinstance(item, BadSample))
    if not good:
        return Batch(None, None, skipped)
    images, target, *index = default_collate(good)
    return Batch(images, target, skipped, index[0] if index else None)


class EpochBatchSampler(Sampler[list]):
    """Shuffled training batches of ``(index, sample seed)`` for one rank of ``world``.

    Global batch k of an epoch is ``perm[k*B*world : (k+1)*B*world]``; rank r takes its
    r-th slice of B. So N ranks with batch B see exactly the batches of one process with
    batch N*B. The last incomplete global batch is dropped (DDP needs equal batches).
    """

    def __init__(self, n: int, batch_size: int, seed: int, world: int = 1, rank: int = 0):
        if n < batch_size * world:
            raise ValueError(f"{n} training images are fewer than one batch of {batch_size * world}; lower --batch-size")
        self.n, self.batch_size, self.seed, self.world, self.rank = n, batch_size, seed, world, rank
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Draw the order of ``epoch``; begin at batch ``start_batch`` (to resume mid-epoch)."""
        self.epoch, self.start = epoch, start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        global_batch = self.batch_size * self.world
        for k in range(self.start, self.batches_per_epoch):
            lo = k * global_batch + self.rank * self.batch_size
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in perm[lo : lo + self.batch_size]]


def ignore_sigint(_worker_id: int) -> None:
    # Data workers share the terminal's process group; Ctrl-C is the main process's to handle
    # (it saves the run), so a worker must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_loader(dataset: Transformed, sampler: EpochBatchSampler, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin_memory,
        # Our own generator, so creating an iterator does not draw from the global RNG
        # (dropout's), which would make a resumed run diverge from an uninterrupted one.
        generator=torch.Generator(),
        worker_init_fn=ignore_sigint,
    )


def eval_shard(n: int, world: int = 1, rank: int = 0) -> range:
    """The indices of ``n`` evaluation samples that rank ``rank`` of ``world`` takes: every
    world-th, in order, without padding, so sums reduced over ranks count each image once."""
    return range(rank, n, world)


def eval_loader(dataset: Dataset, batch_size: int, workers: int, pin_memory: bool = False,
                world: int = 1, rank: int = 0) -> DataLoader:
    """In order; with ``world`` > 1 each rank takes its :func:`eval_shard`."""
    if world > 1:
        dataset = torch.utils.data.Subset(dataset, eval_shard(len(dataset), world, rank))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, generator=torch.Generator(), worker_init_fn=ignore_sigint)


class _Check(Dataset):
    def __init__(self, paths: list[str], loader: Callable):
        self.paths, self.loader = paths, loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> str:
        try:
            self.loader(self.paths[i])
            return ""
        except ImageReadError as e:
            return str(e)


def find_unreadable(paths: list[str], loader: Callable, workers: int) -> list[str]:
    """Decode every file (in ``workers`` processes); the problems found, one per bad file."""
    check = DataLoader(_Check(paths, loader), batch_size=64, num_workers=workers, collate_fn=list,
                       worker_init_fn=ignore_sigint)
    return [problem for batch in check for problem in batch if problem]
