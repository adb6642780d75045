"""Decode once: every image of a split as uint8 pixels in one memory-mapped file.

An AlexNet on a GPU consumes images far faster than a CPU decodes JPEGs, so the fast path
decodes each image once, cuts the paper's central ``resize`` square (see
``transforms.square_transform``) and stores ``(N, S, S, 3)`` uint8 in ``<name>.u8`` with an
index ``<name>.json``. Later epochs only copy crops out of the mapped file.

The index keeps a fingerprint of the split's file list, sizes and modification times: a
file added, removed, replaced or touched makes the cache stale, and it is rebuilt. The
data file is written under a temporary name and the index last, each renamed into place,
so a build that dies half-way leaves no cache that looks complete.

In-memory sources (CIFAR pickles, digits) need no file: their squares are made in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..errors import AlexNetError
from .datasets import BadSample, FolderSubset
from .images import ImageReadError
from .loading import ignore_sigint
from .transforms import square_transform

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when what is stored changes (the resize, the loader)


def default_cache_dir() -> Path:
    """$ALEXNET_CACHE, else ~/.cache/alexnet/images."""
    return Path(os.environ.get("ALEXNET_CACHE") or "~/.cache/alexnet/images").expanduser()


@dataclass
class ImageCache:
    """``n`` images of side ``size`` with their labels; pixels mapped from ``path`` or held in ``array``."""

    n: int
    size: int
    labels: np.ndarray  # (n,) int64
    path: Path | None = None
    array: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)  # the unreadable files left out, with reasons

    @property
    def images(self) -> np.ndarray:
        """``(n, size, size, 3)`` uint8. Mapped on first use in each process (a DataLoader
        worker maps the file itself rather than being sent a copy of it)."""
        if self.array is None:
            # Copy-on-write: never written, but torch.from_numpy wants a writable array.
            self.array = np.memmap(self.path, dtype=np.uint8, mode="c", shape=(self.n, self.size, self.size, 3))
        return self.array

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["array"] = None
        return state

    @property
    def nbytes(self) -> int:
        return self.n * self.size * self.size * 3


def fingerprint(paths: list[str], size: int) -> str:
    """What makes a cache valid: each file's path, size and modification time, and the side."""
    h = hashlib.sha256(f"v{CACHE_VERSION} size={size}\n".encode())
    for path in paths:
        st = os.stat(path)
        # surrogateescape: file names that are not UTF-8 (bytes from another system) hash as their bytes
        h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class _Squares(Dataset):
    """``(index, uint8 square, label)`` or ``(index, BadSample, label)``."""

    def __init__(self, base: Dataset, size: int):
        self.base, self.square = base, square_transform(size)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        try:
            item = self.base[i]
        except ImageReadError as e:  # a base that raises instead of returning BadSample
            item = BadSample(str(e))
        if isinstance(item, BadSample):
            return i, item, -1
        image, label = item
        return i, np.asarray(self.square(image), dtype=np.uint8), label


def _decode_into(base: Dataset, size: int, out: np.ndarray, workers: int, what: str) -> tuple[np.ndarray, list[str]]:
    """Squares of ``base`` written to ``out`` in order, unreadable ones left out; labels and problems."""
    labels: list[int] = []
    skipped: list[str] = []
    loader = DataLoader(_Squares(base, size), batch_size=32, num_workers=workers, collate_fn=list,
                        worker_init_fn=ignore_sigint)
    with tqdm(total=len(base), desc=what, unit="img", leave=False, disable=None) as bar:
        for items in loader:
            for _, pixels, label in items:
                if isinstance(pixels, BadSample):
                    skipped.append(pixels.reason)
                    continue
                out[len(labels)] = pixels
                labels.append(int(label))
            bar.update(len(items))
    return np.asarray(labels, dtype=np.int64), skipped


def cache_split(dataset: Dataset, size: int, name: str, cache_dir: Path | None = None, workers: int = 0,
                build: bool = True) -> ImageCache:
    """The cache of ``dataset`` at side ``size``: opened if it is up to date, else built
    (``build``) or ``None``. ``name`` tells this split's files apart (e.g. ``flowers-train``)."""
    if not isinstance(dataset, FolderSubset):  # already decoded, in memory: squares in memory too
        out = np.empty((len(dataset), size, size, 3), np.uint8)
        labels, skipped = _decode_into(dataset, size, out, 0, f"squares {name}")
        return ImageCache(len(labels), size, labels, array=out[: len(labels)], skipped=skipped)

    cache_dir = Path(cache_dir or default_cache_dir())
    # One place per (data folder, split, side): a changed dataset replaces its stale cache
    # instead of leaving it behind.
    where = hashlib.sha1(str(dataset.root.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    stem = cache_dir / f"{name}-{size}px-{where}"
    index_path, data_path = stem.with_suffix(".json"), stem.with_suffix(".u8")
    key = fingerprint(dataset.paths, size)
    if index_path.is_file() and data_path.is_file():
        try:
            index = json.loads(index_path.read_text())
        except ValueError:
            index = {}
        if index.get("key") == key and data_path.stat().st_size == index["n"] * size * size * 3:
            return ImageCache(index["n"], size, np.asarray(index["labels"], np.int64), data_path,
                              skipped=index["skipped"])
        log.info(f"cache: {data_path} is stale (files changed since it was built); rebuilding")
    if not build:
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    tmp = data_path.with_suffix(f".u8.tmp{os.getpid()}")
    start = time.perf_counter()
    log.info(f"cache: decoding {n} images of {dataset.root} once into {data_path} ({n * size * size * 3 / 2**30:.2f} GiB)")
    try:
        out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(n, size, size, 3))
        labels, skipped = _decode_into(dataset, size, out, workers, f"caching {name}")
        out.flush()
        del out
        if not len(labels):
            raise AlexNetError(f"{dataset.root}: no readable image among {n} files (first problem: {skipped[0]})")
        os.truncate(tmp, len(labels) * size * size * 3)  # unreadable files left no rows
        os.replace(tmp, data_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    index = {"version": CACHE_VERSION, "key": key, "n": len(labels), "size": size, "root": str(dataset.root),
             "labels": labels.tolist(), "skipped": skipped}
    tmp_index = index_path.with_suffix(f".json.tmp{os.getpid()}")
    tmp_index.write_text(json.dumps(index))
    os.replace(tmp_index, index_path)
    log.info(f"cache: {len(labels)} images in {time.perf_counter() - start:.1f}s"
        + (f", {len(skipped)} unreadable left out" if skipped else ""))
    return ImageCache(len(labels), size, labels, data_path, skipped=skipped)
