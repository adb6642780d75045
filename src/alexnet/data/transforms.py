"""Image preprocessing, described by data so that a checkpoint can carry it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network's input; saved in every checkpoint.

    Evaluation and prediction: resize the shorter side to ``resize``, centre-crop
    ``crop``, scale to [0, 1], normalise per channel. Training replaces the centre crop
    with a random one (plus a horizontal flip where ``flip``), or, for sources whose
    images are already ``crop`` pixels (``resize == crop``), a small random
    translation and scaling.
    """

    crop: int
    resize: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    flip: bool = True  # False for data where a mirror image means something else (digits)

    @classmethod
    def for_size(cls, crop: int, **kw: Any) -> "Preprocess":
        # The paper's ratio: 224 crops from a 256 image.
        return cls(crop=crop, resize=round(crop * 256 / 224), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}


def _to_input(p: Preprocess) -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(p.mean, p.std)]


def eval_transform(p: Preprocess) -> T.Compose:
    return T.Compose([T.RGB(), T.Resize(p.resize, antialias=True), T.CenterCrop(p.crop), *_to_input(p)])


def train_transform(p: Preprocess) -> T.Compose:
    if p.resize == p.crop:
        # Images already at network size: nothing to crop from, so jitter instead.
        geometry = [T.Resize(p.resize, antialias=True), T.CenterCrop(p.crop),
                    T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))]
    else:
        geometry = [T.Resize(p.resize, antialias=True), T.RandomCrop(p.crop)]
    if p.flip:
        geometry.append(T.RandomHorizontalFlip())
    return T.Compose([T.RGB(), *geometry, *_to_input(p)])
