"""Image preprocessing, described by data so that a checkpoint can carry it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torchvision.transforms import v2 as T

from .augment import IMAGENET_EIGVAL, IMAGENET_EIGVEC, Augment, DataStats, Lighting, colour_policy

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network's input; saved in every checkpoint.

    Evaluation and prediction: resize the shorter side to ``resize``, centre-crop
    ``crop`` (or take the ten crops), scale to [0, 1], normalise. Training replaces the
    centre crop with a random one plus a horizontal flip where ``flip`` (the paper's
    augmentation), or, for sources whose images are already ``crop`` pixels
    (``resize == crop``), a small random translation and scaling; then adds the PCA
    lighting noise when ``lighting > 0``.

    Normalisation (``normalize``):

    * ``channel``: ``(x - mean) / std`` per channel;
    * ``image``: the image is first cut to the central ``resize`` x ``resize`` square, the
      training set's mean image is subtracted, the result divided by ``std``, and only then
      cropped, as the paper did;
    * ``paper``: the same, on 0-255 pixel values and without the division: the paper's own
      preprocessing ("subtracting the mean activity over the training set from each pixel"),
      the input scale its N(0, 0.01) initialisation was chosen for.
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
    normalize: str = "channel"  # "channel", "image" or "paper"
    mean_image: torch.Tensor | None = field(default=None, compare=False, repr=False)  # (3, resize, resize), [0, 1]

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
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(mean=list(self.mean), std=list(self.std), eigval=list(self.eigval), eigvec=[list(r) for r in self.eigvec])
        return d

    def with_stats(self, stats: DataStats) -> "Preprocess":
        with_image = self.normalize in ("image", "paper")
        if with_image and stats.mean_image is None:
            raise ValueError(f"normalize={self.normalize!r} needs statistics computed with a mean image")
        # Dividing [0, 1] pixels by 1/255 puts them back on the 0-255 scale.
        std = (1 / 255,) * 3 if self.normalize == "paper" else stats.std
        return replace(self, mean=stats.mean, std=std, eigval=stats.eigval, eigvec=stats.eigvec,
                       stats_from=f"{stats.images} training images",
                       mean_image=stats.mean_image if with_image else None)


class SubtractImage(torch.nn.Module):
    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image = image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.image


def _to_float() -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True)]


def square_transform(size: int) -> T.Compose:
    """The paper's first step: the shorter side to ``size``, then the central ``size`` square.
    Statistics are taken on it, every training crop is cut from it, and the image cache
    stores it."""
    return T.Compose([T.RGB(), T.Resize(size, antialias=True), T.CenterCrop(size)])


def _square(p: Preprocess) -> list:
    return [square_transform(p.resize)]


def _normalize(p: Preprocess) -> list:
    if p.mean_image is not None:
        return [SubtractImage(p.mean_image), T.Normalize((0.0, 0.0, 0.0), p.std)]
    return [T.Normalize(p.mean, p.std)]


def stats_transform(p: Preprocess) -> T.Compose:
    """The central ``resize`` square as [0, 1] floats: what dataset statistics are taken on."""
    return T.Compose([*_square(p), *_to_float()])


def eval_transform(p: Preprocess) -> T.Compose:
    if p.mean_image is not None:
        return T.Compose([*_square(p), *_to_float(), *_normalize(p), T.CenterCrop(p.crop)])
    return T.Compose([T.RGB(), T.Resize(p.resize, antialias=True), T.CenterCrop(p.crop), *_to_float(), *_normalize(p)])


def ten_crop_transform(p: Preprocess) -> T.Compose:
    """The paper's test-time views: 4 corners and centre, and their mirrors -> ``(10, 3, crop, crop)``."""
    size = _square(p) if p.mean_image is not None else [T.RGB(), T.Resize(p.resize, antialias=True)]
    return T.Compose([*size, *_to_float(), *_normalize(p), T.TenCrop(p.crop), _stack_views])


def _stack_views(views: tuple) -> torch.Tensor:
    # A plain function: v2.Lambda would be applied to each view, not to the tuple.
    return torch.stack([torch.as_tensor(v) for v in views])


def train_transform(p: Preprocess, aug: Augment = Augment()) -> T.Compose:
    """An image file's training view: the central ``resize`` square, then ``square_train_transform``."""
    return T.Compose([*_square(p), T.PILToTensor(), square_train_transform(p, aug)])


def square_train_transform(p: Preprocess, aug: Augment = Augment()) -> T.Compose:
    """A ``(3, resize, resize)`` uint8 square -> the float training input ``(3, crop, crop)``.

    The image cache stores exactly these squares, so the plain path and the cache path run
    this same transform, and from the same sample seed give the same tensor.
    """
    if p.resize == p.crop and aug.crop_scale == 1:
        # Images already at network size: nothing to crop from, so jitter instead.
        geometric = [T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))]
    elif aug.crop_scale < 1:
        geometric = [T.RandomResizedCrop(p.crop, scale=(aug.crop_scale, 1.0), antialias=True)]
    else:
        geometric = [T.RandomCrop(p.crop)]
    if p.flip:
        geometric.append(T.RandomHorizontalFlip())
    colour = colour_policy(aug)
    lighting = [Lighting(p.lighting, p.eigval, p.eigvec)] if p.lighting > 0 else []
    erasing = [T.RandomErasing(aug.random_erasing)] if aug.random_erasing > 0 else []
    to_float = [T.ToDtype(torch.float32, scale=True)]
    if p.mean_image is not None:  # the paper's order: mean image off the whole square, then crop
        return T.Compose([*colour, *to_float, *lighting, *_normalize(p), *geometric, *erasing])
    return T.Compose([*geometric, *colour, *to_float, *lighting, *_normalize(p), *erasing])
