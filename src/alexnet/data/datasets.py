"""Data sources: ``digits`` (ships with scikit-learn), CIFAR pickles and folders of class subfolders.

``open_source`` turns what the user passed to ``--data`` into train/val(/test) datasets
of ``(PIL image, label)``, their class names and the preprocessing that suits them. The
engine attaches transforms (see ``loading.py``) once it knows the training set's statistics.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset
from torchvision.datasets import ImageFolder

from ..errors import DataError, DataWarning
from ..extras import require
from .cifar import NAMED_CIFAR, SIDE as CIFAR_SIDE, fetch_cifar, is_cifar_dir, read_cifar
from .classnames import display_names
from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageReadError, is_image_file, load_rgb
from .transforms import Preprocess

# Splits that are not given on disk are drawn with this seed, not the training
# seed, so that every run (and `evaluate`) sees the same held-out images.
SPLIT_SEED = 0
DIGITS_FRACTIONS = (0.6, 0.2, 0.2)  # train, val, test of scikit-learn's 1,797 digits
# Folder names (any case) that mean a split rather than a class.
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# Folders that operating systems and tools leave beside data; never classes, never searched.
# Names starting with "." (.ipynb_checkpoints, .DS_Store, ._IMG.jpg) are skipped too.
SYSTEM_NAMES = {"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information", "lost+found", "__pycache__"}


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset | None
    class_names: list[str]
    preprocess: Preprocess  # the source's defaults; the engine adds the training set's statistics
    description: str
    display_names: list[str] | None = None  # readable names where class_names are ids (ImageNet wnids)
    one_folder: bool = False  # a folder of class folders, split here by --val-split
    # Where val was split off here: ``file_id`` of each val file, so that a checkpoint can
    # name the images it never trained on even after files are added or removed.
    held_out: list[int] | None = None

    def get(self, name: str) -> Dataset:
        """``train``, ``val``, ``test``, or ``all``: every image of the source, each once."""
        if name == "all":
            return AllImages([getattr(self, n) for n in self.available])
        ds = {"train": self.train, "val": self.val, "test": self.test}[name]
        if ds is None:
            raise DataError(f"this data source has no '{name}' split (it has: {', '.join(self.available)})")
        return ds

    @property
    def available(self) -> list[str]:
        return [n for n in ("train", "val", "test") if getattr(self, n) is not None]

    @property
    def default_eval_split(self) -> str:
        """test where there is one; all of a folder of class folders (it was not split on
        disk, so nothing says which part is held out); else val."""
        if self.test is not None:
            return "test"
        return "all" if self.one_folder else "val"


class ArrayImages(Dataset):
    """uint8 images ``(N, H, W)`` or ``(N, H, W, 3)`` held in memory, as ``(PIL image, label)``."""

    def __init__(self, images: np.ndarray, labels: Sequence[int]):
        self.images, self.targets = images, [int(t) for t in labels]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return Image.fromarray(self.images[i]), self.targets[i]


class AllImages(ConcatDataset):
    """Every split of a source, one after the other, with their labels (and files)."""

    @property
    def targets(self) -> list[int]:
        return [t for d in self.datasets for t in d.targets]

    @property
    def paths(self) -> list[str]:
        if not all(hasattr(d, "paths") for d in self.datasets):
            raise AttributeError("paths")  # images held in memory (digits, CIFAR) have none
        return [p for d in self.datasets for p in d.paths]


class BadSample(NamedTuple):
    """What a dataset gives instead of ``(image, label)`` for a file that cannot be read;
    the loaders leave it out of the batch and report ``reason`` (which names the file)."""

    reason: str


class FolderSubset(Dataset):
    """``indices`` of an ImageFolder (without transform), as ``(PIL image, label)``, or a
    ``BadSample`` for a file that turns out to be unreadable."""

    def __init__(self, base: ImageFolder, indices: Sequence[int]):
        self.base, self.indices = base, list(indices)
        self.targets = [base.targets[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        try:
            return self.base[self.indices[i]]
        except ImageReadError as e:
            return BadSample(str(e))

    @property
    def root(self) -> Path:
        return Path(self.base.root)

    @property
    def paths(self) -> list[str]:
        return [self.base.samples[i][0] for i in self.indices]


def stratified_split(labels: Sequence[int], fractions: Sequence[float], seed: int = SPLIT_SEED) -> list[list[int]]:
    """Indices for each fraction, class by class, so every split keeps the class balance."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    bounds = np.cumsum(fractions)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(bounds * len(idx)).astype(int)
        for k, (lo, hi) in enumerate(zip([0, *cuts[:-1]], cuts)):
            parts[k].extend(idx[lo:hi].tolist())
    return [sorted(p) for p in parts]


def digits_images() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's 1,797 8x8 handwritten digits as uint8 images (0-255), labels, names."""
    d = require("sklearn.datasets", "--data digits (scikit-learn ships the images)").load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)  # pixel values are 0..16
    return images, d.target, [str(c) for c in d.target_names]


def open_digits(image_size: int, preprocess: Preprocess | None) -> Splits:
    images, labels, names = digits_images()
    train_idx, val_idx, test_idx = stratified_split(labels, DIGITS_FRACTIONS)
    # Digits are upsampled (8 px -> image_size) rather than cropped, and a mirrored
    # digit is a different symbol, so no flips.
    preprocess = preprocess or Preprocess(crop=image_size, resize=image_size, flip=False)
    return Splits(
        train=ArrayImages(images[train_idx], labels[train_idx]),
        val=ArrayImages(images[val_idx], labels[val_idx]),
        test=ArrayImages(images[test_idx], labels[test_idx]),
        class_names=names,
        preprocess=preprocess,
        description=f"digits (scikit-learn, 8x8 upsampled to {preprocess.crop}): "
        f"{len(train_idx)} train, {len(val_idx)} val, {len(test_idx)} test",
    )


class _EmptyClasses(Exception):
    """Class folders without an image file (args[0]: their names)."""


def is_hidden(name: str) -> bool:
    """Hidden files and folders, and the ones operating systems and tools leave behind."""
    return name.startswith(".") or name in SYSTEM_NAMES


class ClassFolders(ImageFolder):
    """torchvision's ImageFolder, except that hidden and system folders and files are skipped,
    and that each file is taken once: a symlinked folder is followed only when it leads
    outside ``boundary`` (the data folder: anything inside it is read on its own), and a
    real folder or file reached twice is read the first time only."""

    def __init__(self, root: Path, boundary: Path, loader):
        self.boundary = os.path.realpath(boundary)
        self.identities: list[str] = []  # the real path of each sample, for the check across splits
        super().__init__(str(root), loader=loader, is_valid_file=is_image_file)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not is_hidden(e.name))
        if not classes:
            raise FileNotFoundError(f"no class folders in {directory}")
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        samples, seen_dirs, seen_files, empty = [], set(), set(), []
        for name in sorted(class_to_idx):
            found = 0
            for folder, files in self._walk(os.path.join(directory, name), seen_dirs):
                for real, path in files:
                    if real not in seen_files:
                        seen_files.add(real)
                        samples.append((path, class_to_idx[name]))
                        self.identities.append(real)
                        found += 1
            if not found:
                empty.append(name)
        if empty:
            raise _EmptyClasses(empty)
        return samples

    def _walk(self, top: str, seen_dirs: set[str]) -> list[tuple[str, list[tuple[str, str]]]]:
        """(folder, [(real path, path) of its image files]) under ``top``, sorted by folder
        path as torchvision's ``sorted(os.walk(...))`` is, so sample order matches it."""
        out, stack = [], [top]
        while stack:
            folder = stack.pop()
            real = os.path.realpath(folder)
            inside = real == self.boundary or real.startswith(self.boundary + os.sep)
            if real in seen_dirs or (os.path.islink(folder) and inside):
                continue
            seen_dirs.add(real)
            files = []
            for e in sorted(os.scandir(folder), key=lambda e: e.name):
                if is_hidden(e.name):
                    continue
                if e.is_dir():
                    stack.append(e.path)
                elif e.is_file() and is_image_file(e.name):
                    files.append((os.path.realpath(e.path) if e.is_symlink() else os.path.join(real, e.name), e.path))
            out.append((folder, files))
        return sorted(out)


def _image_folder(path: Path, max_pixels: int | None, boundary: Path | None = None) -> ClassFolders:
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not is_hidden(e.name))
    if not classes:
        loose = sum(1 for e in os.scandir(path) if e.is_file() and is_image_file(e.name))
        found = f"it holds {loose} image files but no class folders" if loose else "it has no class folders"
        raise DataError(f"{path}: {found}; expected {path}/<class name>/<image files> (one folder per class)")
    _warn_split_names(path, classes)
    try:
        return ClassFolders(path, boundary or path, functools.partial(load_rgb, max_pixels=max_pixels))
    except _EmptyClasses as e:
        empty = e.args[0]
        if links := [c for c in empty if (path / c).is_symlink()]:
            raise DataError(f"{path}: class folder {links[0]} links to {os.readlink(path / links[0])}, inside the data "
                            "folder, whose images are read once, as their own class; remove the link") from None
        raise DataError(f"{path}: class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} "
                        f"{'have' if len(empty) > 1 else 'has'} no image files ({' '.join(IMAGE_EXTENSIONS)}); "
                        "add images or remove the folder") from None


def _warn_split_names(path: Path, classes: list[str]) -> None:
    like = [c for c in classes if c.lower() in SPLIT_NAMES]
    if like:
        warnings.warn(f"{path}: class folders {', '.join(like)} are named like splits; splits are read only as "
                      f"DIR/train/ (with DIR/val/ or valid/ or validation/, DIR/test/, any case), so here they are "
                      "classes", DataWarning, stacklevel=3)


def split_folders(root: Path) -> dict[str, Path]:
    """The split folders of ``root``: train, val (val, valid, validation) and test, any case."""
    found: dict[str, Path] = {}
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        split = SPLIT_NAMES.get(e.name.lower())
        if split and e.is_dir():
            if split in found:
                raise DataError(f"{root}: {found[split].name}/ and {e.name}/ are both the {split} split; keep one")
            found[split] = Path(e.path)
    return found


def _check_beside_splits(root: Path, dirs: dict[str, Path]) -> None:
    """Folders beside train/ are not read: an error where they look like the classes and
    train/ like one of them (it holds images, not class folders), else a warning."""
    split_names = {p.name for p in dirs.values()}
    others = sorted(e.name for e in os.scandir(root) if e.is_dir() and not is_hidden(e.name) and e.name not in split_names)
    if not others:
        return
    shown = ", ".join(f"{n}/" for n in others[:5]) + (" ..." if len(others) > 5 else "")
    train = dirs["train"]
    if not any(e.is_dir() and not is_hidden(e.name) for e in os.scandir(train)):
        raise DataError(f"{root}: {train.name}/ is read as the training split, but it holds images, not class folders, "
                        f"and {shown} beside it look like classes; if {train.name} is a class, rename its folder")
    warnings.warn(f"{root}: {shown} beside {train.name}/ {'are' if len(others) > 1 else 'is'} not read "
                  "(with a train/ folder only train/, val/ and test/ are)", DataWarning, stacklevel=3)


def _check_disjoint(root: Path, folders: dict[str, ClassFolders]) -> None:
    """A file reached from two splits (a symlink, a copy by hard link of the path) would be
    trained on and scored: refuse."""
    owner: dict[str, str] = {}
    for split, ds in folders.items():
        for real in ds.identities:
            if owner.setdefault(real, split) != split:
                raise DataError(f"{root}: {real} is in both {owner[real]}/ and {split}/ (through a symlink?); "
                                "a file must be in one split only")


def file_id(root: str | Path, path: str | Path) -> int:
    """A file's identity within a split folder: 64 bits of a hash of its path relative to
    ``root`` (the same wherever the folder is moved)."""
    rel = Path(path).relative_to(root).as_posix()
    return int.from_bytes(hashlib.blake2b(rel.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big", signed=True)


def _split_folder(base: ImageFolder, val_split: float, held_out: Sequence[int] | None,
                  where: Path) -> tuple[list[int], list[int], list[int], str]:
    """train and val indices of ``base``, the val files' ids, and how val was chosen: the
    images recorded in ``held_out`` (a checkpoint's; files added since go to train), or
    ``val_split`` of each class drawn with the fixed seed."""
    ids = [file_id(base.root, p) for p, _ in base.samples]
    recorded = set(held_out or ())
    val_idx = [i for i, k in enumerate(ids) if k in recorded]
    if not val_idx:  # nothing recorded, or another folder (with the same classes): drawn here
        if recorded:
            warnings.warn(f"{where}: none of the {len(recorded)} images held out when the model trained is here, so "
                          "val is drawn afresh; if this is the folder it trained on, val may hold images it trained on",
                          DataWarning, stacklevel=2)
        train_idx, val_idx = split_off_val(base.targets, val_split, where, base.classes)
        return train_idx, val_idx, [ids[i] for i in val_idx], f"split {1 - val_split:.0%}/{val_split:.0%} (seed {SPLIT_SEED})"
    train_idx = [i for i, k in enumerate(ids) if k not in recorded]
    gone = len(recorded) - len(val_idx)
    how = f"val: the {len(val_idx)} images held out in training" + (f" ({gone} of them gone since)" if gone else "")
    if gone:
        warnings.warn(f"{where}: {gone} of the {len(recorded)} images held out in training are gone; "
                      f"val is the {len(val_idx)} left", DataWarning, stacklevel=2)
    return train_idx, val_idx, list(held_out), how  # the whole record: a file put back is still held out


def split_off_val(targets: Sequence[int], val_split: float, where: Path,
                  names: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """Hold out ``val_split`` of each class, with the fixed ``SPLIT_SEED``. Each class's share
    is rounded on its own, so a small class may have no val image (a warning) or none at
    all may (an error that says which ``--val-split`` would work)."""
    if not 0.0 < val_split < 1.0:
        raise DataError(f"--val-split must be between 0 and 1 to split {where}, got {val_split}")
    train_idx, val_idx = stratified_split(targets, (1.0 - val_split, val_split))
    counts = np.bincount(np.asarray(targets, dtype=np.int64))
    smallest = int(counts[counts > 0].min()) if len(targets) else 0
    if not train_idx or not val_idx:
        hint = f"; --val-split {1 / smallest:.2g} holds out one of each, or make a val/ folder" if smallest >= 2 else ""
        raise DataError(f"{where}: too few images to split off {val_split:.0%} for validation ({len(targets)} images, "
                        f"{smallest} in the smallest class){hint}")
    for part, idx in (("val", val_idx), ("train", train_idx)):
        missing = sorted(set(np.flatnonzero(counts).tolist()) - {int(targets[i]) for i in idx})
        if missing:
            shown = ", ".join((names[c] if names else str(c)) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
            warnings.warn(f"{where}: --val-split {val_split:g} leaves {len(missing)} class(es) with no {part} image "
                          f"({shown}: too few images); {'their accuracy is not measured' if part == 'val' else 'they are never learned'}"
                          "; a val/ folder or another --val-split fixes it", DataWarning, stacklevel=2)
    return train_idx, val_idx


def _describe(root: Path, how: str, classes: list[str], splits: Sequence[Dataset | None]) -> str:
    sizes = ", ".join(f"{len(d)} {n}" for n, d in zip(("train", "val", "test"), splits) if d is not None)
    return f"{root} ({how}): {len(classes)} classes, {sizes}"


def _photo_preprocess(image_size: int, resize: int | None) -> Preprocess:
    """Crops of ``image_size`` from images resized to ``resize`` (default: the paper's 256 for 224)."""
    return Preprocess(crop=image_size, resize=resize) if resize else Preprocess.for_size(image_size)


def open_folder(root: Path, image_size: int, val_split: float, preprocess: Preprocess | None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS, split_required: bool = True,
                resize: int | None = None, held_out: Sequence[int] | None = None) -> Splits:
    preprocess = preprocess or _photo_preprocess(image_size, resize)
    dirs = split_folders(root)
    if "train" in dirs:
        _check_beside_splits(root, dirs)
        train = _image_folder(dirs["train"], max_pixels, root)
        val = _image_folder(dirs["val"], max_pixels, root) if "val" in dirs else None
        test = _image_folder(dirs["test"], max_pixels, root) if "test" in dirs else None
        _check_disjoint(root, {n: ds for n, ds in (("train", train), ("val", val), ("test", test)) if ds is not None})
        for name, other in (("val", val), ("test", test)):
            if other is not None and other.classes != train.classes:
                only_train = sorted(set(train.classes) - set(other.classes))
                only_other = sorted(set(other.classes) - set(train.classes))
                diff = "; ".join(x for x in (
                    f"only in train/: {', '.join(only_train[:5])}" if only_train else "",
                    f"only in {name}/: {', '.join(only_other[:5])}" if only_other else "") if x)
                raise DataError(f"{root}: train/ and {name}/ have different class folders ({diff}); "
                                "every split needs the same class folders")
        val_ids = None
        if val is not None:
            splits = [FolderSubset(train, range(len(train))), FolderSubset(val, range(len(val)))]
            how = "train/ val/"
        else:  # e.g. the CIFAR PNG layout, train/ and test/: validation comes out of train/
            train_idx, val_idx, val_ids, chosen = _split_folder(train, val_split, held_out, root / "train")
            splits = [FolderSubset(train, train_idx), FolderSubset(train, val_idx)]
            how = f"train/ {chosen}"
        splits.append(FolderSubset(test, range(len(test))) if test else None)
        how += " test/" if test else ""
        classes = train.classes
    else:
        full = _image_folder(root, max_pixels)
        try:
            train_idx, val_idx, val_ids, chosen = _split_folder(full, val_split, held_out, root)
        except DataError:
            if split_required:
                raise
            train_idx, val_idx, val_ids, chosen = list(range(len(full))), [], None, "not split"  # scored whole

        splits = [FolderSubset(full, train_idx), FolderSubset(full, val_idx), None]
        how = f"one folder {chosen}"
        classes = full.classes
    return Splits(*splits, classes, preprocess, _describe(root, how, classes, splits), display_names(classes, root),
                  one_folder="train" not in dirs, held_out=val_ids)


def open_cifar(root: Path, image_size: int, val_split: float, preprocess: Preprocess | None,
               resize: int | None = None) -> Splits:
    """CIFAR-10/100 pickles: val is held out of the training batches, test is the test batch."""
    c = read_cifar(root)
    train_idx, val_idx = split_off_val(c.train_labels, val_split, root, c.class_names)
    splits = [
        ArrayImages(c.train_images[train_idx], c.train_labels[train_idx]),
        ArrayImages(c.train_images[val_idx], c.train_labels[val_idx]),
        ArrayImages(c.test_images, c.test_labels),
    ]
    how = f"{c.name} pickles, training batches split {1 - val_split:.0%}/{val_split:.0%} (seed {SPLIT_SEED})"
    if preprocess is None:
        # At their own 32 px (or less) the images are used whole, shifted in training by
        # padding; larger inputs crop from an upsampled square as for any photo.
        whole = image_size <= CIFAR_SIDE and resize is None
        preprocess = Preprocess(crop=image_size, resize=image_size) if whole else _photo_preprocess(image_size, resize)
    return Splits(*splits, c.class_names, preprocess, _describe(root, how, c.class_names, splits))


def open_source(
    source: str, image_size: int, val_split: float = 0.1, preprocess: Preprocess | None = None, *,
    download: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS, split_required: bool = True,
    resize: int | None = None, held_out: Sequence[int] | None = None,
) -> Splits:
    """Open ``--data``: ``digits``, ``cifar10``/``cifar100`` (from the data root, fetched
    with ``download``), a CIFAR pickle folder, or a folder of images. ``preprocess`` (from
    a checkpoint) overrides the source's default. ``max_pixels``: larger images are refused.
    ``split_required=False``: a folder of class folders too small to split is opened whole
    (as train, with an empty val), for scoring all of it. ``resize``: the side photos are
    resized to before cropping ``image_size`` (digits are always upsampled whole).
    ``held_out``: a checkpoint's record of the val files of a folder it split (``Splits.held_out``):
    val is those files again, whatever was added or removed since."""
    if source == "digits":
        return open_digits(image_size, preprocess)
    if source in NAMED_CIFAR:
        return open_cifar(fetch_cifar(source, download), image_size, val_split, preprocess, resize)
    if download:
        raise DataError(f"--download fetches {' or '.join(NAMED_CIFAR)}; {source} is not one of them")
    root = Path(source).expanduser()
    if not root.exists():
        raise DataError(f"{source}: no such data source; pass 'digits', 'cifar10', 'cifar100' or a folder of class subfolders")
    if not root.is_dir():
        raise DataError(f"{source}: is a file; --data takes 'digits', 'cifar10', 'cifar100' or a folder of class subfolders")
    if is_cifar_dir(root):
        return open_cifar(root, image_size, val_split, preprocess, resize)
    return open_folder(root, image_size, val_split, preprocess, max_pixels, split_required, resize, held_out)
