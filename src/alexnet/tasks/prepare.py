"""Write built-in data sources out as image folders."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image

from ..checkpoint import umask_mode
from ..data.cifar import is_cifar_dir, read_cifar
from ..data.datasets import DIGITS_FRACTIONS, DataError, digits_images, stratified_split

log = logging.getLogger(__name__)


def _empty_destination(dst: Path) -> None:
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DataError(f"{dst} is not empty; choose a new folder for --to-folders")


@contextmanager
def staged(dst: Path) -> Iterator[Path]:
    """A hidden folder beside ``dst`` to write into, renamed to ``dst`` when complete: an
    error or Ctrl-C leaves no half-written dataset (and ``dst`` as it was)."""
    _empty_destination(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
        os.chmod(tmp, umask_mode(0o777))
    except OSError as e:
        raise DataError(f"{dst}: cannot write there ({e.strerror or e})") from None
    try:
        yield tmp
        os.replace(tmp, dst)  # dst is absent or an empty folder, which rename replaces
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{dst}: writing failed ({e.strerror or e}{': ' + e.filename if e.filename else ''}); "
                        "nothing was left behind") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_pngs(dst: Path, images, labels, names: list[str]) -> int:
    for name in names:
        (dst / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(dst / names[label] / f"{i:05d}.png")
    return len(labels)


def cifar_to_folders(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Write a CIFAR pickle folder as ``DST/{train,test}/<class>/<index>.png`` (the PNG
    layout some AlexNet documents train from); ``--data DST`` then holds out val from train/."""
    src, dst = Path(src), Path(dst)
    if not is_cifar_dir(src):
        raise DataError(f"{src}: not a CIFAR pickle folder (cifar-10-batches-py or cifar-100-python)")
    _empty_destination(dst)
    c = read_cifar(src)  # refuses class names that are not plain folder names
    with staged(dst) as tmp:
        return {"train": _write_pngs(tmp / "train", c.train_images, c.train_labels, c.class_names),
                "test": _write_pngs(tmp / "test", c.test_images, c.test_labels, c.class_names)}


def digits_to_folders(dst: str | Path) -> dict[str, int]:
    """Save the digits as ``DST/{train,val,test}/<digit>/<index>.png`` (8x8 grayscale).

    The split is the one ``--data digits`` uses, so a model trained on either form
    is evaluated on the same test images. Returns the number of images per split.
    """
    dst = Path(dst)
    images, labels, names = digits_images()
    counts = {}
    with staged(dst) as tmp:
        for split, idx in zip(("train", "val", "test"), stratified_split(labels, DIGITS_FRACTIONS)):
            for name in names:
                (tmp / split / name).mkdir(parents=True, exist_ok=True)
            for i in idx:  # named by their index in scikit-learn's array
                Image.fromarray(images[i]).save(tmp / split / names[labels[i]] / f"{i:04d}.png")
            counts[split] = len(idx)
    return counts


def cache_data(data: str, arch: str, image_size: int | None, val_split: float, cache_dir: str | None,
               workers: int, max_pixels: int) -> None:
    """Build (or check) the image caches ``train --cache`` will read for ``data``."""
    from ..data import open_source
    from ..data.cache import cache_split
    from ..engine.memory import check_arch_size
    from ..models import model_info

    size = image_size or model_info(arch).image_size
    check_arch_size(arch, size, 1, torch.device("cpu"), training=False)  # a cache image is decoded whole in memory
    splits = open_source(data, size, val_split, max_pixels=max_pixels)
    if splits.preprocess.resize == splits.preprocess.crop:
        raise DataError(f"{data}: its images are used whole at the network size; there is nothing to cache")
    name = Path(data).name or "data"
    for split in splits.available:
        cache = cache_split(splits.get(split), splits.preprocess.resize, f"{name}-{split}", cache_dir, workers)
        where = cache.path or "memory"
        log.info(f"{split}: {cache.n} images at {cache.size}x{cache.size} in {where}"
            + (f"; {len(cache.skipped)} unreadable left out" if cache.skipped else ""))
        for problem in cache.skipped:
            log.info(f"  unreadable: {problem}")
