"""Human-readable names for ImageNet's WordNet-id class folders.

torchvision ships the 1,000 ImageNet category names in class-index order, and the class
index of ILSVRC2012 is the position of the wnid in the sorted list of all 1,000. So a
folder with all 1,000 wnid classes maps directly; a subset (Imagenette, a few classes)
needs the full list, which the Kaggle and Caffe downloads carry: ``LOC_synset_mapping.txt``
or ``imagenet_class_index.json`` beside the data (or a folder or two above it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import AlexNetError
from ..models.pretrained import imagenet_categories  # the torchvision weights' categories

WNID = re.compile(r"n\d{8}")
CLASS_LIST_FILES = ("LOC_synset_mapping.txt", "imagenet_class_index.json")


def read_class_list(path: Path) -> list[str]:
    """wnids in class-index order, from ``imagenet_class_index.json`` or ``LOC_synset_mapping.txt``."""
    try:
        if path.suffix == ".json":
            index = json.loads(path.read_text())
            return [index[str(i)][0] for i in range(len(index))]
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise AlexNetError(f"{path}: not a class list (imagenet_class_index.json or LOC_synset_mapping.txt): {e}") from None


def find_class_list(root: Path) -> Path | None:
    for folder in (root, *list(root.resolve().parents)[:2]):
        for name in CLASS_LIST_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def display_names(classes: list[str], root: Path) -> list[str] | None:
    """Readable names for wnid class folders (``n02123045`` -> ``tabby``), or None when the
    classes are not wnids or their index cannot be known."""
    if not classes or not all(WNID.fullmatch(c) for c in classes):
        return None
    listing = find_class_list(root)
    if listing is not None:
        order = read_class_list(listing)
    elif len(classes) == 1000:
        order = sorted(classes)
    else:
        return None
    if len(order) != 1000:
        return None
    index = {wnid: i for i, wnid in enumerate(order)}
    categories = imagenet_categories()
    return [categories[index[c]] if c in index else c for c in classes]
