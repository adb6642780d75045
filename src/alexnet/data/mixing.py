"""MixUp and CutMix: each batch blended with a shuffled copy of itself, labels by the same weight.

The draws of a batch (which of the two, the weight, the partner of each image, the box)
come from one seed per step, so a resumed run mixes exactly as the uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Mixing:
    mixup: float = 0.0  # Beta(alpha, alpha) for the blend weight; 0: off
    cutmix: float = 0.0  # Beta(alpha, alpha) for the kept area; 0: off

    @property
    def on(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def __call__(self, images: torch.Tensor, target: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(mixed images, partner targets, lam)``: the loss is ``lam * CE(target) + (1 - lam) * CE(partner)``."""
        rng = np.random.default_rng(seed)
        cut = self.cutmix > 0 and (self.mixup == 0 or rng.random() < 0.5)
        alpha = self.cutmix if cut else self.mixup
        lam = float(rng.beta(alpha, alpha))
        partner = torch.from_numpy(rng.permutation(len(target))).to(images.device)
        if not cut:
            return images * lam + images[partner] * (1 - lam), target[partner], lam
        height, width = images.shape[-2:]
        y0, y1, x0, x1 = _box(rng, height, width, lam)
        mixed = images.clone()
        mixed[..., y0:y1, x0:x1] = images[partner][..., y0:y1, x0:x1]
        return mixed, target[partner], 1.0 - (y1 - y0) * (x1 - x0) / (height * width)  # the area actually kept


def _box(rng: np.random.Generator, height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """A box of area ``(1 - lam)`` of the image around a uniform centre, clipped at the borders."""
    side = math.sqrt(1.0 - lam)
    h, w = int(height * side), int(width * side)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    return max(cy - h // 2, 0), min(cy + h - h // 2, height), max(cx - w // 2, 0), min(cx + w - w // 2, width)
