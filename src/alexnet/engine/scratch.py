"""The scratch recipe: training settings chosen from the data itself.

``alexnet train --data DIR`` with no recipe, architecture or weights trains with it. It
looks at the training set (how many images, how many classes, how large they are) and
picks the network size, input size, batch, learning rate and length of the run; the
rest (augmentation, schedule, regularisation) is the same for every data set. Every value
is printed at the start, recorded in config.json, and any flag given overrides it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..data.datasets import FolderSubset, Splits

ALL_CONVS = "norm_after=conv1,conv2,conv3,conv4,conv5"

# What every scratch run shares: BatchNorm makes a short run converge from any seed;
# scale and aspect crops, TrivialAugment and erasing stand in for the millions of images
# AlexNet had; Nesterov SGD with a one-cycle schedule, label smoothing and an average
# of the weights give the best of a short run at its end.
COMMON: dict[str, Any] = {
    "optimizer": "sgd",
    "nesterov": True,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "decay_bias_norm": False,
    "schedule": "onecycle",
    "label_smoothing": 0.1,
    "crop_scale": 0.35,
    "auto_augment": "trivialaugment",
    "random_erasing": 0.25,
    "amp": "auto",
    "channels_last": True,
}


@dataclass(frozen=True)
class DataSurvey:
    classes: int
    train_images: int
    side: int  # median shorter side, in pixels, of a sample of the training images


def survey(splits: Splits, sample: int = 64) -> DataSurvey:
    """Count the training set and measure its images (file headers only, for folders)."""
    train = splits.train
    n = len(train)
    picks = sorted({round(k * (n - 1) / max(1, sample - 1)) for k in range(min(sample, n))})
    sides = []
    for i in picks:
        if isinstance(train, FolderSubset):
            try:
                with Image.open(train.paths[i]) as image:
                    sides.append(min(image.size))
            except (OSError, Image.DecompressionBombError):
                continue  # unreadable (or, by Pillow's limit, too large) files are reported when training meets them
        else:
            item = train[i]
            if isinstance(item, tuple) and hasattr(item[0], "size"):
                sides.append(min(item[0].size))
    side = int(statistics.median(sides)) if sides else 224
    return DataSurvey(len(splits.class_names), n, side)


def scratch_settings(s: DataSurvey) -> tuple[dict[str, Any], str]:
    """The data-dependent settings, and one line that says what was chosen and why."""
    if s.side <= 40:  # CIFAR, digits, thumbnails
        # 32 px leaves little to crop or distort: the CIFAR trainers' shifts and flips only
        # (the images whole at 32 px, shifted by reflected padding), without TrivialAugment,
        # scale crops or erasing.
        model = {"arch": "alexnet_cifar", "model_option": ["norm=bn", ALL_CONVS], "image_size": 32, "resize": 32,
                 "auto_augment": "none", "crop_scale": 1.0, "random_erasing": 0.0}
        net = "alexnet_cifar with BatchNorm at 32 px, shifts and flips"
    elif s.train_images >= 100_000:  # ImageNet-sized: torchvision's network whole, with BatchNorm
        model = {"arch": "alexnet", "model_option": ["norm=bn", ALL_CONVS], "image_size": 224}
        net = "alexnet with BatchNorm at 224 px"
    else:
        # Small data: fc6/fc7 of 1024 (a quarter of the parameters to fit) and 112 px (128
        # for images larger than that): on a CPU, about 4x cheaper per image than 224.
        size = 112 if s.side < 160 else 128
        model = {"arch": "alexnet", "model_option": ["norm=bn", ALL_CONVS, "hidden=1024", "pool5_size=3"],
                 "image_size": size}
        net = f"alexnet with BatchNorm and 1024-wide fc6/fc7 at {size} px"
    batch = 128 if s.train_images >= 20_000 else 64 if s.train_images >= 1_000 else 32
    # A handful of images still gets two or more steps an epoch (BatchNorm needs 2 a batch).
    batch = min(batch, 2 ** max(1, (s.train_images // 2).bit_length() - 1))
    steps_per_epoch = max(1, s.train_images // batch)
    # About 200,000 training images seen in all, between 16 and 100 epochs.
    epochs = max(16, min(100, round(200_000 / max(1, s.train_images))))
    values = {
        **COMMON, **model,
        "batch_size": batch,
        # Peak rate: at 0.03 per 64 images both flowers_128 and CIFAR stalled while the
        # one-cycle rate was near its peak; short sweeps at 32 px ranked 0.01 first.
        "lr": 0.01 * batch / 64,
        "epochs": epochs,
        # The average covers about the last two epochs (at least 100 steps).
        "ema": round(1 - 1 / max(100, 2 * steps_per_epoch), 5),
    }
    why = (f"scratch recipe: {s.classes} classes, {s.train_images:,} training images of ~{s.side} px -> {net}, "
           f"batch {batch}, {epochs} epochs, one-cycle lr {values['lr']:g}, label smoothing, EMA"
           + ("" if s.side <= 40 else ", TrivialAugment, scale crops, erasing")
           + " (flags you give override these; --recipe none for none of them)")
    return values, why
