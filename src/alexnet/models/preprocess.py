"""Image preprocessing, described by data so that a checkpoint (and any weights file) can carry it.

It sits with the models because weights carry their own preprocessing, as torchvision's do;
``data.transforms`` builds the transforms from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

# Commonly used ImageNet values (on [0, 1] pixels): the documented fallback when a
# training set's own statistics are not computed. Columns of IMAGENET_EIGVEC are the
# eigenvectors p_i, matching IMAGENET_EIGVAL's lambda_i.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@dataclass
class DataStats:
    mean: tuple[float, float, float]  # per channel, [0, 1] pixels
    std: tuple[float, float, float]
    eigval: tuple[float, float, float]  # descending
    eigvec: tuple[tuple[float, float, float], ...]  # columns are eigenvectors
    images: int  # how many images they were computed from
    mean_image: torch.Tensor | None = None  # (3, H, W), when the images all have one size

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "eigval": list(self.eigval),
                "eigvec": [list(r) for r in self.eigvec], "images": self.images, "mean_image": self.mean_image}

    @classmethod
    def from_dict(cls, d: dict) -> "DataStats":
        return cls(tuple(d["mean"]), tuple(d["std"]), tuple(d["eigval"]), tuple(tuple(r) for r in d["eigvec"]),
                   d["images"], d.get("mean_image"))


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
