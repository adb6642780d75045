"""AlexNet activations as features: one array per split of a data source, saved as ``.npz``.

The file holds, for each split S the source has (``train``, ``val``, ``test``):
``S_features`` (N, D) float32, ``S_labels`` (N,) int64 and ``S_paths`` (N,) str (the image
file, or the index within the split for in-memory sources such as digits and CIFAR), plus
``class_names`` (and ``display_names`` for ImageNet wnid folders), ``layer``, ``weights``
(what produced them) and ``splits``. Unreadable images are reported and left out. It loads
with ``np.load(path)`` (no pickle needed: every array is numbers or fixed-width strings).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..checkpoint import atomic_write
from ..data import DataError, Preprocess, open_source
from ..data.loading import Indexed, Transformed, collate, ignore_sigint
from ..data.transforms import eval_transform
from ..engine.skipped import NamingSkips, SkipList
from ..errors import AlexNetError
from ..models import TAPS, AlexNet
from ..models.pretrained import Pretrained


def layer_features(model: AlexNet, images: torch.Tensor, layer: str) -> torch.Tensor:
    """``(N, 3, H, W)`` -> the ``layer`` activations flattened to ``(N, D)``
    (4096 for fc6/fc7; 256*6*6 = 9216 for pool5 of torchvision's AlexNet at 224)."""
    return model.activations(images, [layer])[layer].flatten(1)


def split_paths(dataset: Dataset) -> list[str]:
    """The file behind each sample, or its index where the images live in memory."""
    paths = getattr(dataset, "paths", None)  # data.datasets.FolderSubset has them
    return list(paths) if paths is not None else [str(i) for i in range(len(dataset))]



@torch.no_grad()
def extract(model: AlexNet, dataset: Dataset, preprocess: Preprocess, layer: str, device: torch.device,
            batch_size: int = 64, workers: int = 2, desc: str = "") -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Features ``(N, D)`` float32, labels ``(N,)`` int64 and dataset indices of the images of
    ``dataset`` (PIL image, label pairs), in order, with the eval preprocessing (resize, centre
    crop, normalise). Unreadable images are reported on stderr and left out."""
    model.eval()
    # Indices keep the features aligned with their paths where unreadable images are left out.
    loader = DataLoader(Indexed(Transformed(dataset, eval_transform(preprocess))), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda",
                        worker_init_fn=ignore_sigint)
    skipped = SkipList(lambda problem: tqdm.write(f"skipped: {problem}", file=sys.stderr))
    feats, labels, kept = [], [], []
    with tqdm(total=len(dataset), desc=desc, unit="img", dynamic_ncols=True) as bar:
        for batch in NamingSkips(loader, skipped):
            if batch.images is not None:
                feats.append(layer_features(model, batch.images.to(device, non_blocking=True), layer).float().cpu())
                labels.append(batch.target)
                kept += batch.index.tolist()
            bar.update(len(batch.index if batch.index is not None else ()) + len(batch.skipped))
    if not feats:
        raise DataError(f"{desc or 'split'}: no readable images to extract features from")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(np.int64), kept


@dataclass
class FeatureSet:
    arrays: dict[str, np.ndarray]  # what goes into the .npz, keys as in the module docstring
    splits: list[str]
    description: str  # the data source, as open_source describes it

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.arrays[f"{name}_features"], self.arrays[f"{name}_labels"]

    @property
    def class_names(self) -> list[str]:
        """The names to show: readable ones where the folders are ImageNet wnids."""
        return [str(c) for c in self.arrays.get("display_names", self.arrays["class_names"])]


def extract_splits(pretrained: Pretrained, data: str, layer: str, device: torch.device, val_split: float = 0.1,
                   batch_size: int = 64, workers: int = 2) -> FeatureSet:
    """Features of ``layer`` for every split of ``data`` with the weights' own eval preprocessing."""
    if layer not in TAPS:
        raise AlexNetError(f"unknown layer {layer!r}; choose from {', '.join(TAPS)}")
    splits = open_source(data, pretrained.preprocess.crop, val_split, preprocess=pretrained.preprocess)
    model = pretrained.model.to(device)
    arrays: dict[str, np.ndarray] = {}
    for name in splits.available:
        ds = splits.get(name)
        arrays[f"{name}_features"], arrays[f"{name}_labels"], kept = extract(
            model, ds, pretrained.preprocess, layer, device, batch_size, workers, desc=f"{name} {layer}")
        paths = split_paths(ds)
        arrays[f"{name}_paths"] = np.array([paths[i] for i in kept], dtype=str)
    if splits.display_names:  # readable names of ImageNet wnid folders
        arrays["display_names"] = np.array(splits.display_names, dtype=str)
    arrays.update(
        class_names=np.array(splits.class_names, dtype=str),
        layer=np.array(layer),
        weights=np.array(pretrained.description),
        splits=np.array(splits.available, dtype=str),
    )
    return FeatureSet(arrays, splits.available, splits.description)


def save_features(path: str | os.PathLike, features: FeatureSet) -> Path:
    """Written whole or not at all (through a temporary file); a file object, since np.savez
    would otherwise append ".npz" to other names."""
    path = Path(path)
    atomic_write(path, lambda f: np.savez(f, **features.arrays))
    return path
