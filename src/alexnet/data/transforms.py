"""Image transforms built from a :class:`Preprocess` (``models.preprocess``): evaluation, ten-crop, training."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from ..models.preprocess import Preprocess  # imported from here too, as before it moved
from .augment import Augment, Lighting, colour_policy


class SubtractImage(torch.nn.Module):
    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image = image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.image


def _to_float() -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True)]


# Resizing the shorter side first makes a 40000x1 strip 5.8 million pixels long at 146 px:
# gigabytes for one image. Longer than this many times its width, an image is cut to its
# central part of that shape before the resize. Only the centre is ever used (the corners of
# ten-crop excepted), so the crops are those of the whole image, up to resampling.
MAX_ASPECT = 16


def central_part(image: Any) -> Any:
    """``image`` (PIL or tensor), or, if its long side is over ``MAX_ASPECT`` times its short
    side, its central part with a long side of exactly that: bounded memory for any shape."""
    h, w = TF.get_size(image)
    most = MAX_ASPECT * min(h, w)
    if max(h, w) <= most:
        return image
    return TF.center_crop(image, [min(h, most), min(w, most)])


def _shorter_side(size: int) -> list:
    return [T.RGB(), central_part, T.Resize(size, antialias=True)]


def square_transform(size: int) -> T.Compose:
    """The paper's first step: the shorter side to ``size``, then the central ``size`` square.
    Statistics are taken on it, every training crop is cut from it, and the image cache
    stores it."""
    return T.Compose([*_shorter_side(size), T.CenterCrop(size)])


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
    return T.Compose([*_shorter_side(p.resize), T.CenterCrop(p.crop), *_to_float(), *_normalize(p)])


def ten_crop_transform(p: Preprocess) -> T.Compose:
    """The paper's test-time views: 4 corners and centre, and their mirrors -> ``(10, 3, crop, crop)``."""
    size = _square(p) if p.mean_image is not None else _shorter_side(p.resize)
    return T.Compose([*size, *_to_float(), *_normalize(p), T.TenCrop(p.crop), _stack_views])


def mirror_transform(p: Preprocess) -> T.Compose:
    """The centre crop and its mirror image -> ``(2, 3, crop, crop)``: flip test-time augmentation."""
    return T.Compose([eval_transform(p), _with_mirror])


def _with_mirror(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x, x.flip(-1)])


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
        # Images used whole at the network size: nothing to crop from. Photos (CIFAR at 32 px)
        # shift as the CIFAR trainers do: a crop from the image padded by an eighth of its
        # side with its own reflection, so no border is lost at test time. Symbols that must
        # not be mirrored (digits) get a small affine jitter instead.
        geometric = ([T.RandomCrop(p.crop, padding=max(1, p.crop // 8), padding_mode="reflect")] if p.flip
                     else [T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))])
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
