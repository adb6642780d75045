"""CIFAR-10 and CIFAR-100 read straight from their original python pickle folders.

No checksum is demanded (torchvision's loader insists on one, and users' copies are often
re-packed or partial): a folder is CIFAR if it holds the batch files and nothing that
makes it something else (no sub-folders). Each batch is read as the original Python code
did (``encoding="bytes"``), but by an unpickler that builds only what the real files
hold: dicts, lists, tuples, bytes, str, numbers and numpy arrays of plain numbers. A file
that asks for anything else (a function to call, a class to build) is refused, not run.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
SIDE = 32  # CIFAR images are 32x32 RGB
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
    """A CIFAR-10 folder (test_batch and data_batch_N) or a CIFAR-100 one (train, test,
    meta), with no sub-folder beside them: a folder of class folders is images, whatever
    other files it holds."""
    if not path.is_dir():
        return False
    files = {e.name for e in os.scandir(path) if e.is_file()}
    cifar10 = "test_batch" in files and any(b in files for b in CIFAR10_TRAIN)
    cifar100 = {"train", "test", "meta"} <= files
    return (cifar10 or cifar100) and not any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path))


class Refused(pickle.UnpicklingError):
    """A pickle that asks for something a CIFAR file never holds."""


def _plain_dtype(*args):
    """``numpy.dtype`` for the unpickler: numbers only (an object dtype would unpickle
    arbitrary Python objects into the array)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise Refused(f"it holds an array of Python objects ({dtype})")
    return dtype


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2 (copies re-pickled by
    Python 3): str -> bytes and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("it calls encode other than for bytes")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``bytes()`` as Python 3 pickles b"" at protocol 2; with arguments it could allocate at will."""
    if args:
        raise Refused("it calls bytes() with arguments")
    return b""


# The only globals the original batch files name (read with pickletools), under numpy 1's
# and numpy 2's module name for the array constructor; ``ndarray.__reduce__`` hands back
# that constructor, whichever numpy is installed.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    # Not in the originals: how Python 3 writes bytes at protocol 2 (copies re-pickled by it).
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


class SafeUnpickler(pickle.Unpickler):
    """Builds containers, strings, numbers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        raise Refused(f"it asks for {module}.{name}, which a CIFAR file never holds")


def safe_load(data: bytes):
    """Unpickle ``data`` as the Python 2 CIFAR files need (``encoding="bytes"``), safely."""
    return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()


def _unpickle(path: Path) -> dict:
    try:
        raw = safe_load(path.read_bytes())
    except Refused as e:
        raise DataError(f"{path}: refused, not a CIFAR file: {e} (nothing in it was run)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # truncated, foreign or corrupt: unpickling can fail in many ways
        raise DataError(f"{path}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: not a CIFAR batch (holds a {type(raw).__name__}, not a dict)")
    # Keys are bytes in the Python 2 pickles; accept str too (re-packed copies).
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise DataError(f"{path}: expected 'data' of shape (N, {3 * SIDE * SIDE}), found {data.shape}")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    return data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1).copy()


def _names(meta: dict, key: str, path: Path) -> list[str]:
    """Class names, checked to be usable as folder names (``prepare --to-folders`` makes
    one folder per class): not empty, no path separators, no ``.`` or ``..``."""
    names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in meta[key]]
    for n in names:
        if not is_safe_name(n):
            raise DataError(f"{path}: class name {n!r} is not a plain folder name (empty, '.', '..', a path "
                            "separator or a control character); refused")
    return names


def is_safe_name(name: str) -> bool:
    """A name that is one folder inside its parent, wherever it is used."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and all(ch.isprintable() for ch in name))


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
        names = _names(_unpickle(path / "batches.meta"), "label_names", path / "batches.meta") \
            if (path / "batches.meta").is_file() \
            else [str(i) for i in range(10)]
        label_key, name, test_path = "labels", "CIFAR-10", path / "test_batch"
    else:  # CIFAR-100: one train file, one test file, meta with fine and coarse names
        batches = [path / "train"]
        names = _names(_unpickle(path / "meta"), "fine_label_names", path / "meta")
        label_key, name, test_path = "fine_labels", "CIFAR-100", path / "test"
    train = [_batch(b, label_key, len(names)) for b in batches]
    test_images, test_labels = _batch(test_path, label_key, len(names))
    return CifarArrays(name, np.concatenate([i for i, _ in train]), np.concatenate([t for _, t in train]),
                       test_images, test_labels, names)


def _batch(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's images and labels, checked against each other and the class names."""
    batch = _unpickle(path)
    images = _images(batch, path)
    labels = np.asarray(batch[label_key])
    if labels.ndim != 1 or len(labels) != len(images) or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: '{label_key}' is not one whole number per image ({len(images)} images, "
                        f"labels of shape {labels.shape} and type {labels.dtype})")
    if labels.size and not 0 <= labels.min() <= labels.max() < classes:
        raise DataError(f"{path}: labels run from {labels.min()} to {labels.max()}, but the meta file names "
                        f"{classes} classes; the batches and the meta file do not belong together")
    return images, labels.astype(np.int64)
