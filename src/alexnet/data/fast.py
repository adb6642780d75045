"""The fast path: batches cut from an ``ImageCache`` and finished on the training device.

Per batch, worker processes copy each image's crop out of the uint8 cache (mirrored where
it is flipped): memory copies, no decoding. The uint8 crops travel to the device, a
quarter of the bytes of float32, and there become the network's input in one batched pass:
scale, PCA lighting, normalisation. When the whole cache fits in GPU memory it lives there
and the crops are gathered on the GPU too (``resident``), with no worker at all.

The augmentation is the plain path's (``transforms.train_transform``): a random ``crop``
square from the central ``resize`` square, a horizontal flip with probability 1/2, lighting
``alpha ~ N(0, lighting)``; evaluation takes the centre crop. Each sample's draws come from
its own seed (``loading.sample_seed``), so resume and DDP stay exact here as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .cache import ImageCache
from .loading import Batch, eval_shard, ignore_sigint
from .augment import Augment
from .transforms import Preprocess, square_train_transform


@dataclass
class Crops:
    """Where each sample of a batch is cut: top-left corner, mirrored or not, lighting alphas."""

    top: torch.Tensor  # (B,) int64
    left: torch.Tensor  # (B,) int64
    flip: torch.Tensor  # (B,) bool
    alpha: torch.Tensor  # (B, 3) float32, zeros without lighting

    @classmethod
    def draw(cls, seeds: list[int], square: int, crop: int, flip: bool, lighting: float) -> "Crops":
        u = sample_uniforms(seeds, 7)  # (B, 7): top, left, flip, and two Box-Muller pairs
        span = square - crop + 1
        top, left = (u[:, 0] * span).astype(np.int64), (u[:, 1] * span).astype(np.int64)
        flips = (u[:, 2] < 0.5) & flip
        radius = np.sqrt(-2.0 * np.log1p(-u[:, [3, 3, 5]]))  # 1 - u is in (0, 1]: no log(0)
        angle = 2.0 * np.pi * u[:, [4, 4, 6]] + np.array([0.0, np.pi / 2, 0.0])  # cos and sin of the first pair
        alpha = (lighting * radius * np.cos(angle)).astype(np.float32)
        return cls(torch.from_numpy(top), torch.from_numpy(left), torch.from_numpy(flips), torch.from_numpy(alpha))

    @classmethod
    def for_batch(cls, batch: list[tuple[int, int]], square: int, p: Preprocess, train: bool) -> "Crops":
        """A batch of ``(index, sample seed)``'s crops: drawn from the seeds in training, centred otherwise."""
        if train:
            return cls.draw([seed for _, seed in batch], square, p.crop, p.flip, p.lighting)
        return cls.centre(len(batch), square, p.crop)

    @classmethod
    def centre(cls, n: int, square: int, crop: int) -> "Crops":
        offset = int(round((square - crop) / 2.0))  # torchvision's CenterCrop
        return cls(torch.full((n,), offset), torch.full((n,), offset), torch.zeros(n, dtype=torch.bool),
                   torch.zeros(n, 3))

    def to(self, device: torch.device) -> "Crops":
        return Crops(*(t.to(device, non_blocking=True) for t in (self.top, self.left, self.flip, self.alpha)))


def sample_uniforms(seeds: list[int], count: int) -> np.ndarray:
    """``(len(seeds), count)`` uniforms in [0, 1), each row a function of its seed alone.

    splitmix64 on (seed, k): a counter-based generator, so a whole batch is drawn in a few
    vectorised passes, where one ``numpy.random.Generator`` per sample would cost its
    construction for every image, in the main process, between a GPU's training steps.
    """
    state = np.asarray(seeds, dtype=np.uint64)[:, None] + \
        np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # wraps mod 2^64
    z = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty CPU tensor in shared memory, allocated there (as the DataLoader's own collate
    does) rather than copied there, so that handing it to the main process copies nothing."""
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape), device="cpu")
    return torch.empty(0, dtype=dtype).new(storage).view(shape)


def cut_slices(images: np.ndarray, index: list[int], crops: Crops, crop: int, shared: bool = False) -> torch.Tensor:
    """``(B, crop, crop, 3)`` uint8 copied out of ``images`` ``(N, S, S, 3)`` one slice per sample:
    a memory-mapped cache is read only where the crops are.

    numpy, single-threaded, does the copies: torch's element-wise copy of these 3-byte-pixel
    strides is an order of magnitude slower, and worse still when its threads compete with
    DataLoader workers. Pixels are viewed as single 3-byte items so a mirrored row is one
    reversed-stride copy.
    """
    shape = (len(index), crop, crop, 3)
    out = shared_empty(shape, torch.uint8) if shared else torch.empty(shape, dtype=torch.uint8)
    rgb = np.dtype((np.void, 3))
    src, dst = images.view(rgb)[..., 0], out.numpy().view(rgb)[..., 0]  # (N, S, S), (B, crop, crop)
    for k, i in enumerate(index):
        t, l = int(crops.top[k]), int(crops.left[k])
        patch = src[i, t : t + crop, l : l + crop]
        dst[k] = patch[:, ::-1] if crops.flip[k] else patch
    return out


def cut_torch(images: torch.Tensor, index: torch.Tensor, crops: Crops, crop: int) -> torch.Tensor:
    """The same as ``cut_slices``, as one gather on ``images``' device: ``(N, S, S, C)`` -> ``(B, crop, crop, C)``."""
    steps = torch.arange(crop, device=images.device)
    rows = crops.top[:, None] + steps  # (B, crop)
    cols = torch.where(crops.flip[:, None], crops.left[:, None] + crop - 1 - steps, crops.left[:, None] + steps)
    return images[index[:, None, None], rows[:, :, None], cols[:, None, :]]


class Finish:
    """uint8 ``(B, crop, crop, 3)`` crops -> the float ``(B, 3, crop, crop)`` network input:
    what the plain path's transforms compute per image (``(x / 255 + lighting - mean) / std``),
    folded into one subtraction and one multiplication on 0-255 values, in place."""

    def __init__(self, p: Preprocess, device: torch.device, channels_last: bool = False):
        self.p, self.device, self.channels_last = p, device, channels_last
        self.mean255 = torch.tensor(p.mean, device=device) * 255
        self.scale = 1 / (255 * torch.tensor(p.std, device=device))
        self.eigval = torch.tensor(p.eigval, device=device)
        self.eigvec = torch.tensor(p.eigvec, device=device)
        # The mean image is cut with each sample's own crop, so it stays (S, S, 3) like the cache.
        self.mean_image255 = None if p.mean_image is None else \
            (p.mean_image.to(device) * 255).permute(1, 2, 0).contiguous()

    def __call__(self, crops_u8: torch.Tensor, crops: Crops, out: torch.Tensor | None = None) -> torch.Tensor:
        """``out``: a ``(B, 3, crop, crop)`` float tensor to write into (NCHW only)."""
        # Subtracted per sample and channel: the mean, less the lighting shift (the same for
        # every pixel of an image, so it can move across the subtraction).
        offset = self.mean255.expand(len(crops_u8), 3)
        if self.p.lighting:
            offset = offset - 255 * (crops.alpha * self.eigval) @ self.eigvec.T  # eigvec @ (alpha * eigval)
        if self.channels_last:  # NHWC in memory: the crops' own layout, no transposing copy
            x = crops_u8.float().sub_(offset[:, None, None, :])
            if self.mean_image255 is not None:
                x.sub_(self._mean_crops(crops) - self.mean255)
            return x.mul_(self.scale).permute(0, 3, 1, 2)
        x = out if out is not None else torch.empty(crops_u8.shape[0], 3, *crops_u8.shape[1:3], device=crops_u8.device)
        x.copy_(crops_u8.permute(0, 3, 1, 2)).sub_(offset[:, :, None, None])
        if self.mean_image255 is not None:
            x.sub_((self._mean_crops(crops) - self.mean255).permute(0, 3, 1, 2))
        return x.mul_(self.scale[:, None, None])

    def _mean_crops(self, crops: Crops) -> torch.Tensor:
        index = torch.zeros(len(crops.top), dtype=torch.long, device=self.mean_image255.device)
        return cut_torch(self.mean_image255[None], index, crops, self.p.crop)  # (B, crop, crop, 3)


class _CropBatches(Dataset):
    """Item = one whole batch, given the sampler's list of ``(index, seed)``: uint8 crops (or,
    with ``finish``, the finished float batch), labels, crops.

    In a worker, batches go into shared memory. Finished float batches are large, and a fresh
    shared block costs a page fault per 4 KiB (about as much as finishing the batch), so
    each worker cycles through a ring of ``ring`` blocks it allocates once. A DataLoader
    worker is never more than ``prefetch_factor`` batches ahead of what the main process has
    handed on, so with ``ring = prefetch_factor + 2`` a block is reused only after the batch
    in it was followed by two more: the loop's batch must not be kept beyond that (the
    training and evaluation loops keep none).
    """

    def __init__(self, cache: ImageCache, p: Preprocess, train: bool, finish: Finish | None = None, ring: int = 0,
                 augment: Augment = Augment()):
        self.cache, self.p, self.train, self.finish, self.ring = cache, p, train, finish, ring
        self._blocks: dict[tuple[int, ...], list[torch.Tensor]] = {}
        self._turn = 0
        # Augmentations beyond crop and flip run per sample, with the plain path's own
        # transform on the cached square (the same tensor from the same seed).
        self.each = square_train_transform(p, augment) if train and augment.beyond_crop_and_flip else None

    def __len__(self) -> int:
        return self.cache.n

    def __getitem__(self, batch: list[tuple[int, int]]):
        index = [i for i, _ in batch]
        if self.each is not None:
            pixels = torch.stack([self._augment_one(i, seed) for i, seed in batch])
            return pixels, torch.from_numpy(self.cache.labels[index]), None
        crops = Crops.for_batch(batch, self.cache.size, self.p, self.train)
        in_worker = torch.utils.data.get_worker_info() is not None
        pixels = cut_slices(self.cache.images, index, crops, self.p.crop, shared=in_worker and self.finish is None)
        if self.finish is not None:
            out = self._block((len(index), 3, self.p.crop, self.p.crop)) if in_worker and self.ring else None
            pixels = self.finish(pixels, crops, out)
        return pixels, torch.from_numpy(self.cache.labels[index]), crops

    def _augment_one(self, i: int, seed: int) -> torch.Tensor:
        square = torch.from_numpy(self.cache.images[i]).permute(2, 0, 1)
        with torch.random.fork_rng(devices=[]):  # as loading.Transformed draws a sample's augmentation
            torch.default_generator.manual_seed(seed)
            return self.each(square)

    def _block(self, shape: tuple[int, ...]) -> torch.Tensor:
        blocks = self._blocks.setdefault(shape, [])
        self._turn += 1
        if len(blocks) < self.ring:
            blocks.append(shared_empty(shape, torch.float32))
            return blocks[-1]
        return blocks[self._turn % self.ring]



class EvalBatches(Sampler[list]):
    """In order, ``batch_size`` at a time; with ``world`` > 1 each rank takes its ``eval_shard``."""

    def __init__(self, n: int, batch_size: int, world: int = 1, rank: int = 0):
        self.indices = list(eval_shard(n, world, rank))
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[list]:
        for k in range(0, len(self.indices), self.batch_size):
            yield [(i, 0) for i in self.indices[k : k + self.batch_size]]


class CachedLoader:
    """Finished batches (``loading.Batch`` on ``device``) of a cache, in ``sampler``'s order.

    With workers on the CPU a batch lives in a reused shared block (see ``_CropBatches``):
    use it, or ``clone()`` it, before drawing two more."""

    def __init__(self, cache: ImageCache, p: Preprocess, sampler: Sampler, *, train: bool, device: torch.device,
                 workers: int = 2, channels_last: bool = False, resident: bool = False, augment: Augment = Augment()):
        if p.resize == p.crop:
            raise ValueError("the image cache serves crops from larger images; these images are used whole (resize == crop)")
        if cache.size != p.resize:
            raise ValueError(f"cache holds {cache.size}px squares but preprocessing needs {p.resize}px")
        self.cache, self.p, self.sampler, self.train, self.device = cache, p, sampler, train, device
        self.augment = augment
        per_sample = train and augment.beyond_crop_and_flip
        self.workers, self.resident = workers, resident and not per_sample
        self.finish = Finish(p, device, channels_last)
        # Training on the CPU: the workers finish the batches too (into shared memory), and
        # the main process only trains. On a GPU they send uint8, a quarter of the bytes,
        # and the GPU finishes the batch.
        self.finish_in_workers = device.type == "cpu" and workers > 0
        self.prefetch = 4
        self.dataset = _CropBatches(cache, p, train, self.finish if self.finish_in_workers else None,
                                    ring=self.prefetch + 2, augment=augment)
        if self.resident:  # the whole uint8 set in device memory, gathered there
            self.images = torch.from_numpy(np.ascontiguousarray(cache.images)).to(device)
            self.labels = torch.from_numpy(cache.labels).to(device)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        if self.resident:
            for batch in self.sampler:
                crops = Crops.for_batch(batch, self.cache.size, self.p, self.train).to(self.device)
                index = torch.tensor([i for i, _ in batch], device=self.device)
                pixels = cut_torch(self.images, index, crops, self.p.crop)
                yield Batch(self.finish(pixels, crops), self.labels[index])
            return
        pin = self.device.type == "cuda"
        loader = DataLoader(self.dataset, sampler=self.sampler, batch_size=None, num_workers=self.workers,
                            pin_memory=pin, generator=torch.Generator(), worker_init_fn=ignore_sigint,
                            prefetch_factor=self.prefetch if self.workers else None)
        for pixels, labels, crops in loader:
            if crops is None:  # finished per sample already
                pixels = pixels.to(self.device, non_blocking=True)
                if self.finish.channels_last:
                    pixels = pixels.contiguous(memory_format=torch.channels_last)
            elif not self.finish_in_workers:
                pixels = self.finish(pixels.to(self.device, non_blocking=True), crops.to(self.device))
            yield Batch(pixels, labels.to(self.device, non_blocking=True))

    def preview(self, batch: list[tuple[int, int]]) -> torch.Tensor:
        """The samples of ``batch`` as training sees them (on the CPU)."""
        pixels, _, crops = _CropBatches(self.cache, self.p, self.train, Finish(self.p, torch.device("cpu")),
                                        augment=self.augment)[batch]
        return pixels
