"""Where a run's batches come from: the plain per-epoch decoding path or the image cache,
and what happens to unreadable files on either."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data.augment import Augment
from ..data.cache import ImageCache, cache_split
from ..data.datasets import DataError, FolderSubset, Splits
from ..data.fast import CachedLoader, EvalBatches
from ..data.images import load_rgb
from ..data.jpeg import DeviceDecodeLoader
from ..data.loading import EpochBatchSampler, Transformed, collate, eval_loader, find_unreadable, train_loader
from ..data.transforms import Preprocess, eval_transform, stats_transform, train_transform
from . import distributed
from .config import ConfigError, TrainConfig

log = logging.getLogger(__name__)


def check_all_images(cfg: TrainConfig, splits: Splits) -> None:
    """``--strict``: decode every file of every split now; any failure stops the run before it starts."""
    paths = [p for name in splits.available if isinstance(ds := splits.get(name), FolderSubset) for p in ds.paths]
    if not paths:
        return
    log.info(f"--strict: reading all {len(paths)} images")
    problems = find_unreadable(paths, functools.partial(load_rgb, max_pixels=cfg.max_image_pixels), cfg.workers)
    if problems:
        for problem in problems:
            log.info(f"  unreadable: {problem}")
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more (listed above)" if len(problems) > 3 else "")
        raise DataError(f"--strict: {len(problems)} of {len(paths)} images cannot be read: {shown}; "
                        "fix or remove them, or drop --strict to skip them")


def augment_of(cfg: TrainConfig) -> Augment:
    return Augment(cfg.crop_scale, cfg.color_jitter, cfg.auto_augment, cfg.random_erasing)


def check_fast_paths(cfg: TrainConfig, splits: Splits) -> None:
    """--cache and --decode-on-device serve random crops from larger images: refuse them,
    before anything is made, for data that cannot use them."""
    whole = splits.preprocess.resize == splits.preprocess.crop
    if cfg.cache and whole:
        raise ConfigError(f"--cache serves random crops from larger images; {cfg.data} images are used whole "
                          "at the network size (digits; CIFAR at 32 px), so there is nothing to cache; drop --cache")
    if cfg.decode_on_device and (whole or not all(isinstance(splits.get(name), FolderSubset) for name in ("train", "val"))):
        raise ConfigError(f"--decode-on-device decodes image files; {cfg.data} is not a folder of images "
                          "to crop from; drop the flag")
    if cfg.decode_on_device and augment_of(cfg).beyond_crop_and_flip:
        raise ConfigError("--decode-on-device augments whole batches with crops, flips and lighting only; "
                          "--crop-scale, --color-jitter, --auto-augment and --random-erasing need --cache or the plain path")


@dataclass
class Caches:
    train: ImageCache
    val: ImageCache


def open_caches(cfg: TrainConfig, splits: Splits, size: int, d: distributed.Dist) -> Caches | None:
    """With ``--cache``: the train and val caches at ``size`` (rank 0 builds what is missing)."""
    if not cfg.cache:
        return None
    name = Path(cfg.data).name or "data"
    caches = {}
    for split in ("train", "val"):
        ds = splits.get(split)
        if d.main or not isinstance(ds, FolderSubset):
            caches[split] = cache_split(ds, size, f"{name}-{split}", cfg.cache_dir, cfg.workers)
    distributed.barrier(d)  # the other ranks map what rank 0 wrote
    for split in ("train", "val"):
        if split not in caches:
            caches[split] = cache_split(splits.get(split), size, f"{name}-{split}", cfg.cache_dir, build=False)
    for split, c in caches.items():
        for problem in c.skipped:
            log.info(f"skipped unreadable image ({split}): {problem}")
    return Caches(caches["train"], caches["val"])


class _CachedSquares(Dataset):
    """The cache's squares as [0, 1] floats: what ``stats_transform`` makes of the files."""

    def __init__(self, cache: ImageCache):
        self.cache = cache

    def __len__(self) -> int:
        return self.cache.n

    def __getitem__(self, i: int):
        pixels = torch.from_numpy(self.cache.images[i].copy()).permute(2, 0, 1)
        return pixels.float().div_(255), int(self.cache.labels[i])


def stats_source(splits: Splits, base: Preprocess, caches: Caches | None) -> Dataset:
    """Training images for the statistics: from the cache when there is one (no decoding)."""
    if caches is not None:
        return _CachedSquares(caches.train)
    return Transformed(splits.train, stats_transform(base))


def train_size(splits: Splits, caches: Caches | None) -> int:
    return caches.train.n if caches is not None else len(splits.train)


def make_loaders(splits: Splits, caches: Caches | None, preprocess: Preprocess, sampler: EpochBatchSampler,
                 d: distributed.Dist, *, batch_size: int, workers: int, augment: Augment, channels_last: bool,
                 decode_on_device: bool, max_pixels: int | None):
    """(train loader, val loader), each yielding ``loading.Batch``: from the image cache when
    there is one, else decoded on the device with ``decode_on_device``, else the plain path."""
    device = d.device
    if caches is not None:
        # A cache that fits comfortably in GPU memory lives there: crops are then gathered
        # on the GPU and no worker process is needed.
        resident = device.type == "cuda" and \
            caches.train.nbytes + caches.val.nbytes < 0.4 * torch.cuda.mem_get_info(device)[0]
        kw = dict(device=device, workers=workers, channels_last=channels_last, resident=resident)
        return (CachedLoader(caches.train, preprocess, sampler, train=True, augment=augment, **kw),
                CachedLoader(caches.val, preprocess, EvalBatches(caches.val.n, batch_size, d.world, d.rank),
                             train=False, **kw))
    if decode_on_device:
        kw = dict(device=device, workers=workers, channels_last=channels_last, max_pixels=max_pixels)
        return (DeviceDecodeLoader(splits.train, preprocess, sampler, train=True, **kw),
                DeviceDecodeLoader(splits.val, preprocess, EvalBatches(len(splits.val), batch_size, d.world, d.rank),
                                   train=False, **kw))
    pin = device.type == "cuda"
    return (train_loader(Transformed(splits.train, train_transform(preprocess, augment)), sampler, workers, pin),
            eval_loader(Transformed(splits.val, eval_transform(preprocess)), batch_size, workers, pin,
                        d.world, d.rank))


def preview(loader, splits: Splits, preprocess: Preprocess, sampler: EpochBatchSampler, augment: Augment,
            n: int = 32) -> torch.Tensor:
    """Up to ``n`` images of the first batch, augmented exactly as training will see them
    (per-sample seeds, so drawing them changes nothing in the run)."""
    probe = EpochBatchSampler(sampler.n, sampler.batch_size, sampler.seed, sampler.world, sampler.rank)
    probe.set_epoch(1)
    batch = next(iter(probe))[:n]
    if isinstance(loader, (CachedLoader, DeviceDecodeLoader)):
        return loader.preview(batch)
    dataset = Transformed(splits.train, train_transform(preprocess, augment))
    items = [dataset[index] for index in batch]
    return collate(items).images


@dataclass
class SkipReport:
    """Unreadable files met during training: each reported once, counted per epoch."""

    log: object
    seen: set[str] = field(default_factory=set)
    this_epoch: int = 0

    def __call__(self, problems: tuple[str, ...]) -> None:
        self.this_epoch += len(problems)
        for problem in problems:
            if problem not in self.seen:
                self.seen.add(problem)
                self.log(f"skipped unreadable image: {problem}")

    def end_epoch(self) -> str:
        n, self.this_epoch = self.this_epoch, 0
        return f"  ({n} unreadable images skipped)" if n else ""
