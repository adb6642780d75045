"""CIFAR-10 and CIFAR-100 read straight from their original python pickle folders.

No checksum is demanded (torchvision's loader insists on one, and users' copies are often
re-packed or partial): a folder is CIFAR if it holds the batch files, and each batch is
read as the original Python code did, ``pickle.load(f, encoding="bytes")``. Unpickling
runs whatever the file says, as torchvision's loader does too: only point ``--data`` at
CIFAR files from a source you trust.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
# --data NAME -> (torchvision dataset class, the folder its archive unpacks to)
NAMED_CIFAR = {"cifar10": ("CIFAR10", "cifar-10-batches-py"), "cifar100": ("CIFAR100", "cifar-100-python")}


def data_root() -> Path:
    """Where ``--data cifar10`` looks and ``--download`` puts archives: $ALEXNET_DATA, else
    ~/.cache/alexnet/datasets."""
    return Path(os.environ.get("ALEXNET_DATA") or "~/.cache/alexnet/datasets").expanduser()


def fetch_cifar(name: str, download: bool) -> Path:
    """The pickle folder of ``name`` under ``data_root()``; with ``download``, fetched first
    through torchvision (its URL, and the archive's checksum: a download is checked even
    though a user's own copy is not)."""
    import torchvision.datasets
    from torchvision.datasets.utils import download_and_extract_archive

    cls_name, folder = NAMED_CIFAR[name]
    cls = getattr(torchvision.datasets, cls_name)
    root = data_root()
    if is_cifar_dir(root / folder):
        return root / folder
    if not download:
        raise DataError(f"--data {name}: {root / folder} does not exist; add --download to fetch it from "
                        f"{cls.url}, set ALEXNET_DATA to the folder that holds {folder}/, "
                        "or pass the pickle folder itself as --data")
    try:
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as e:  # noqa: BLE001 - URLError, HTTP errors, a bad checksum (RuntimeError), a full disk
        raise DataError(f"--data {name} --download: fetching {cls.url} into {root} failed "
                        f"({type(e).__name__}: {e}); check the connection, or download and unpack it there yourself") from None
    if not is_cifar_dir(root / folder):
        raise DataError(f"--data {name} --download: {cls.filename} did not unpack to {root / folder}")
    return root / folder


@dataclass
class CifarArrays:
    name: str  # "CIFAR-10" or "CIFAR-100"
    train_images: np.ndarray  # (N, 32, 32, 3) uint8
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def is_cifar_dir(path: Path) -> bool:
    return (path / "test_batch").is_file() or ((path / "train").is_file() and (path / "meta").is_file())


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated, foreign or corrupt: unpickling can fail in many ways
        raise DataError(f"{path}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: not a CIFAR batch (holds a {type(raw).__name__}, not a dict)")
    # Keys are bytes in the Python 2 pickles; accept str too (re-packed copies).
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected 'data' of shape (N, 3072), found {data.shape}")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _names(meta: dict, key: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def read_cifar(path: str | Path) -> CifarArrays:
    """Read a ``cifar-10-batches-py`` or ``cifar-100-python`` folder (any number of train batches present)."""
    path = Path(path)
    try:
        return _read(path)
    except KeyError as e:
        raise DataError(f"{path}: a CIFAR file lacks the key {e}; is this an original python-version CIFAR folder?") from None


def _read(path: Path) -> CifarArrays:
    if (path / "test_batch").is_file():  # CIFAR-10
        batches = [path / b for b in CIFAR10_TRAIN if (path / b).is_file()]
        if not batches:
            raise DataError(f"{path}: has test_batch but no data_batch_1..5")
        train = [_unpickle(b) for b in batches]
        test = _unpickle(path / "test_batch")
        names = _names(_unpickle(path / "batches.meta"), "label_names") if (path / "batches.meta").is_file() \
            else [str(i) for i in range(10)]
        label_key, name, test_path = "labels", "CIFAR-10", path / "test_batch"
        train_images = np.concatenate([_images(b, p) for b, p in zip(train, batches)])
        train_labels = np.concatenate([np.asarray(b[label_key]) for b in train])
    else:  # CIFAR-100: one train file, one test file, meta with fine and coarse names
        t = _unpickle(path / "train")
        test = _unpickle(path / "test")
        names = _names(_unpickle(path / "meta"), "fine_label_names")
        label_key, name, test_path = "fine_labels", "CIFAR-100", path / "test"
        train_images, train_labels = _images(t, path / "train"), np.asarray(t[label_key])
    return CifarArrays(name, train_images, train_labels.astype(np.int64), _images(test, test_path),
                       np.asarray(test[label_key], dtype=np.int64), names)
