"""ILSVRC2012's flat validation folder, filed into ``<wnid>/`` class folders.

Replaces the shell scripts people copy around: reads either the Kaggle
``LOC_val_solution.csv`` (``ImageId,PredictionString`` whose first token is the wnid) or
Caffe's ``val.txt`` (``ILSVRC2012_val_00000001.JPEG 65``, 0-based class indices in the
sorted-wnid order), and moves (or links) each image. Running it again changes nothing.
Every line is checked before anything moves: a file name must be a plain name inside the
validation folder and a label a wnid (``n`` and 8 digits) or one of ``--classes``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..data.cifar import is_safe_name
from ..data.classnames import WNID, read_class_list
from ..data.datasets import is_hidden
from ..errors import AlexNetError


@dataclass
class FilingReport:
    filed: int = 0  # moved or linked now
    already: int = 0  # found in place from an earlier run
    missing: int = 0  # named in the labels but in neither place
    linked: bool = False

    def __str__(self) -> str:
        verb = "linked" if self.linked else "moved"
        return f"{verb} {self.filed}, already in place {self.already}, missing {self.missing}"


def read_val_labels(path: Path, classes: list[str] | None) -> dict[str, str]:
    """File name -> wnid, from the Kaggle CSV or Caffe's val.txt."""
    if not path.is_file():
        raise AlexNetError(f"{path}: no such labels file")
    text = path.read_text()
    labels: dict[str, str] = {}
    if text.startswith("ImageId"):
        for row in csv.DictReader(text.splitlines()):
            wnid = (row.get("PredictionString") or "").split()
            if not wnid:
                raise AlexNetError(f"{path}: row {row} has no PredictionString")
            labels[row["ImageId"] + ".JPEG"] = wnid[0]
        return labels
    if classes is None:
        raise AlexNetError(
            f"{path} gives class indices; say which wnid each index is with --classes "
            "(imagenet_class_index.json or LOC_synset_mapping.txt), or put the train/ folder beside the val folder"
        )
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            name, index = line.split()
            labels[name] = classes[int(index)]
        except (ValueError, IndexError):
            raise AlexNetError(f"{path}:{n}: expected 'FILE INDEX' with 0 <= INDEX < {len(classes)}, got {line!r}") from None
    return labels


def check_labels(labels: dict[str, str], classes: list[str] | None, path: Path) -> None:
    """Refuse a name or label that would reach outside the validation folder (``..``, an
    absolute path, a separator) or a label that is not a class: nothing has moved yet."""
    known = set(classes or ())
    for name, wnid in labels.items():
        if not is_safe_name(name):
            raise AlexNetError(f"{path}: file name {name!r} is not a plain file name in the validation folder "
                               "(a path, '..' or a control character); nothing was moved")
        if not (WNID.fullmatch(wnid) or wnid in known) or not is_safe_name(wnid):
            raise AlexNetError(f"{path}: label {wnid!r} of {name!r} is not a wnid (n and 8 digits) nor one of "
                               "the --classes; nothing was moved")


def file_val_images(val_dir: str | Path, labels_file: str | Path, link: bool = False,
                    classes_file: str | Path | None = None) -> FilingReport:
    """Move (or, with ``link``, symlink) ``VAL/<file>`` to ``VAL/<wnid>/<file>``."""
    val_dir = Path(val_dir)
    if not val_dir.is_dir():
        raise AlexNetError(f"{val_dir}: no such folder")
    classes = None
    if classes_file:
        classes = read_class_list(Path(classes_file))
    elif (val_dir.parent / "train").is_dir():
        # The usual layout: train/<wnid>/ beside val/; sorted wnids are the class indices.
        classes = sorted(p.name for p in (val_dir.parent / "train").iterdir() if p.is_dir() and not is_hidden(p.name)) or None
    labels = read_val_labels(Path(labels_file), classes)
    check_labels(labels, classes, Path(labels_file))
    report = FilingReport(linked=link)
    for name, wnid in labels.items():
        src, dst = val_dir / name, val_dir / wnid / name
        if dst.exists() or dst.is_symlink():
            report.already += 1
        elif not src.exists():
            report.missing += 1
        else:
            dst.parent.mkdir(exist_ok=True)
            if link:
                os.symlink(Path("..") / name, dst)
            else:
                os.replace(src, dst)
            report.filed += 1
    return report
