"""Image preprocessing, described by data so that a checkpoint can carry it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torchvision.transforms import v2 as T

from .augment import IMAGENET_EIGVAL, IMAGENET_EIGVEC, DataStats, Lighting

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network's input; saved in every checkpoint.

    Evaluation and prediction: resize the shorter side to ``resize``, centre-crop
    ``crop`` (or take the ten crops), scale to [0, 1], normalise per channel. Training
    replaces the centre crop with a random one plus a horizontal flip where ``flip``
    (the paper's augmentation), or, for sources whose images are already ``crop``
    pixels (``resize == crop``), a small random translation and scaling; then adds the
    PCA lighting noise when ``lighting > 0``.
    """

    crop: int
    resize: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    flip: bool = True  # False for data where a mirror image means something else (digits)
    lighting: float = 0.0  # std of the PCA lighting coefficients alpha_i (the paper: 0.1)
    eigval: tuple[float, ...] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC
    stats_from: str = "imagenet"  # where mean/std/eig come from: "imagenet" or "N training images"

    @classmethod
    def for_size(cls, crop: int, **kw: Any) -> "Preprocess":
        # The paper's ratio: 224 crops from a 256 image.
        return cls(crop=crop, resize=round(crop * 256 / 224), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        d = dict(d)
        for key in ("mean", "std", "eigval"):
            if key in d:
                d[key] = tuple(d[key])
        if "eigvec" in d:
            d["eigvec"] = tuple(tuple(r) for r in d["eigvec"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(mean=list(self.mean), std=list(self.std), eigval=list(self.eigval), eigvec=[list(r) for r in self.eigvec])
        return d

    def with_stats(self, stats: DataStats) -> "Preprocess":
        return replace(self, mean=stats.mean, std=stats.std, eigval=stats.eigval, eigvec=stats.eigvec,
                       stats_from=f"{stats.images} training images")


def _to_float() -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True)]


def geometry(p: Preprocess) -> list:
    """Resize and centre crop: the eval geometry, also used to compute dataset statistics."""
    return [T.RGB(), T.Resize(p.resize, antialias=True), T.CenterCrop(p.crop)]


def stats_transform(p: Preprocess) -> T.Compose:
    """Eval geometry, [0, 1] floats, no normalisation: what dataset statistics are taken on."""
    return T.Compose([*geometry(p), *_to_float()])


def eval_transform(p: Preprocess) -> T.Compose:
    return T.Compose([*geometry(p), *_to_float(), T.Normalize(p.mean, p.std)])


def ten_crop_transform(p: Preprocess) -> T.Compose:
    """The paper's test-time views: 4 corners and centre, and their mirrors -> ``(10, 3, crop, crop)``."""
    return T.Compose([
        T.RGB(), T.Resize(p.resize, antialias=True), *_to_float(), T.TenCrop(p.crop),
        _stack_views, T.Normalize(p.mean, p.std),
    ])


def _stack_views(views: tuple) -> torch.Tensor:
    # A plain function: v2.Lambda would be applied to each view, not to the tuple.
    return torch.stack([torch.as_tensor(v) for v in views])


def train_transform(p: Preprocess) -> T.Compose:
    if p.resize == p.crop:
        # Images already at network size: nothing to crop from, so jitter instead.
        geo = [T.Resize(p.resize, antialias=True), T.CenterCrop(p.crop),
               T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))]
    else:
        geo = [T.Resize(p.resize, antialias=True), T.RandomCrop(p.crop)]
    if p.flip:
        geo.append(T.RandomHorizontalFlip())
    lighting = [Lighting(p.lighting, p.eigval, p.eigvec)] if p.lighting > 0 else []
    return T.Compose([T.RGB(), *geo, *_to_float(), *lighting, T.Normalize(p.mean, p.std)])
