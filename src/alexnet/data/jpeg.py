"""JPEGs decoded in batches on the training device (``--decode-on-device``).

On a GPU a CPU core decodes a few hundred ImageNet JPEGs a second, far fewer than AlexNet
trains on. Here the workers only read each file's bytes; the main process hands a whole
batch of them to ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA), then
resizes, crops, flips and normalises on the device. Unlike ``--cache`` nothing is written
to disk first, so the first epoch is as fast as the rest.

The augmentation is the cache's (``fast``): each image becomes its central ``resize``
square, a ``Crops`` is drawn from each sample's own seed and ``Finish`` does the rest,
so resume and DDP stay exact. Only the resize differs from the other paths: torch's
antialiased bilinear on the device rather than Pillow's, a difference of a few pixel levels.

Files the device decoder does not take (PNG and the other formats, CMYK JPEGs) are decoded
by Pillow in the worker and sent as their square, so every folder still works. A file that
is unreadable is reported and left out of its batch, as on the plain path.
"""

from __future__ import annotations

import io
import itertools
import warnings
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from ..errors import first_line
from .datasets import BadSample, FolderSubset
from .fast import Crops, Finish, cut_torch
from .images import DEFAULT_MAX_PIXELS, ImageReadError, load_rgb, pillow_allows
from .loading import Batch, ignore_sigint
from .transforms import MAX_ASPECT, Preprocess, square_transform

ORIENTATION = 0x0112  # the EXIF tag; 1 is upright


def read_for_device(path: str, size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """A JPEG that the device can decode: its bytes, 1-D uint8. Anything else: its central
    ``size`` square decoded here by Pillow, ``(size, size, 3)`` uint8. ``ImageReadError`` if
    the file cannot be used; a JPEG whose data is corrupt is only found when decoded."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        with pillow_allows(max_pixels), Image.open(io.BytesIO(data)) as image:  # parses the header only
            w, h = image.size
            # The device decodes plain JPEGs only: one turned by its EXIF Orientation, or too
            # thin to resize whole (transforms.MAX_ASPECT), goes the Pillow way below.
            upright = image.getexif().get(ORIENTATION, 1) == 1
            if (image.format == "JPEG" and image.mode in ("RGB", "L") and upright and max(w, h) <= MAX_ASPECT * min(w, h)
                    and not (max_pixels and w * h > max_pixels)):
                return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    except Exception:  # noqa: BLE001 - load_rgb below names what is wrong
        pass
    square = square_transform(size)(load_rgb(path, max_pixels))
    return torch.from_numpy(np.asarray(square).copy())


class _FileBatches(Dataset):
    """Item = one batch, given the sampler's list of ``(index, seed)``: per sample the
    ``read_for_device`` tensor or a ``BadSample``; the labels; the list itself (its seeds
    draw the crops in the main process)."""

    def __init__(self, subset: FolderSubset, size: int, max_pixels: int | None):
        self.paths, self.targets = subset.paths, subset.targets
        self.size, self.max_pixels = size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, batch: list[tuple[int, int]]):
        items = []
        for i, _ in batch:
            try:
                items.append(read_for_device(self.paths[i], self.size, self.max_pixels))
            except ImageReadError as e:
                items.append(BadSample(str(e)))
        return items, torch.tensor([self.targets[i] for i, _ in batch]), batch


def decode_squares(items: list, paths: list[str], size: int, device: torch.device) -> tuple[torch.Tensor, list[int], list[str]]:
    """``read_for_device`` results -> ``(B', size, size, 3)`` uint8 squares on ``device``,
    the positions in ``items`` they came from, and the problems of the rest."""
    jpegs = [k for k, item in enumerate(items) if isinstance(item, torch.Tensor) and item.dim() == 1]
    problems = [item.reason for item in items if isinstance(item, BadSample)]
    decoded = dict(zip(jpegs, _decode(items, jpegs, paths, device, problems)))
    squares: dict[int, torch.Tensor] = {}
    # One batched resize per distinct image size (a dataset's images are often all one size).
    by_size = sorted((tuple(img.shape[1:]), k) for k, img in decoded.items() if img is not None)
    for _, group in itertools.groupby(by_size, key=lambda t: t[0]):
        ks = [k for _, k in group]
        chw = TF.center_crop(TF.resize(torch.stack([decoded[k] for k in ks]), [size], antialias=True), [size])
        squares.update(zip(ks, chw.permute(0, 2, 3, 1)))
    for k, item in enumerate(items):
        if isinstance(item, torch.Tensor) and item.dim() == 3:  # decoded by Pillow in the worker
            squares[k] = item.to(device, non_blocking=True)
    keep = sorted(squares)
    pixels = torch.stack([squares[k] for k in keep]) if keep else torch.empty(0, size, size, 3, dtype=torch.uint8, device=device)
    return pixels, keep, problems


def _decode(items: list, jpegs: list[int], paths: list[str], device: torch.device, problems: list[str]) -> list:
    """The JPEGs at ``jpegs``, decoded together; if the batch call fails, one by one, so a
    corrupt file costs its own image only (``None`` in its place, its problem appended)."""
    if not jpegs:
        return []
    data = [items[k] for k in jpegs]
    try:
        return _decode_jpeg(data, device)
    except RuntimeError:
        pass
    out = []
    for k, d in zip(jpegs, data):
        try:
            out.append(_decode_jpeg(d, device))
        except RuntimeError as e:
            out.append(None)
            problems.append(str(ImageReadError(paths[k], f"corrupt or truncated JPEG ({first_line(e).rsplit(', ', 1)[-1]})")))
    return out


def _decode_jpeg(data, device: torch.device):
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image decoders in favour of TorchCodec's; they are
        # still the only batched nvJPEG decoder that ships with torchvision, so keep them.
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


class DeviceDecodeLoader:
    """Finished batches (``loading.Batch`` on ``device``) of an image folder, its JPEGs
    decoded on ``device`` a batch at a time, in ``sampler``'s order."""

    def __init__(self, subset: FolderSubset, p: Preprocess, sampler: Sampler, *, train: bool, device: torch.device,
                 workers: int = 2, channels_last: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        if p.resize == p.crop:
            raise ValueError("decoding on the device serves crops from larger images; these images are used whole")
        self.subset, self.p, self.sampler, self.train, self.device = subset, p, sampler, train, device
        self.workers = workers
        self.finish = Finish(p, device, channels_last)
        self.dataset = _FileBatches(subset, p.resize, max_pixels)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        loader = DataLoader(self.dataset, sampler=self.sampler, batch_size=None, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator(),
                            worker_init_fn=ignore_sigint, prefetch_factor=4 if self.workers else None,
                            persistent_workers=False)
        for items, labels, batch in loader:
            yield self._finish(batch, items, labels)

    def _finish(self, batch: list[tuple[int, int]], items: list, labels: torch.Tensor) -> Batch:
        paths = [self.dataset.paths[i] for i, _ in batch]
        pixels, keep, problems = decode_squares(items, paths, self.p.resize, self.device)
        if not keep:
            return Batch(None, None, tuple(problems))
        crops = Crops.for_batch([batch[k] for k in keep], self.p.resize, self.p, self.train).to(self.device)
        index = torch.arange(len(keep), device=self.device)
        images = self.finish(cut_torch(pixels, index, crops, self.p.crop), crops)
        return Batch(images, labels[keep].to(self.device, non_blocking=True), tuple(problems))

    def preview(self, batch: list[tuple[int, int]]) -> torch.Tensor:
        """The samples of ``batch`` as training sees them (on the CPU)."""
        items, labels, _ = self.dataset[batch]
        return self._finish(batch, items, labels).images.cpu()
