"""The paper's "fancy PCA" lighting, and the training-set statistics it and normalisation need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2 as T

from ..models.preprocess import DataStats  # what compute_stats returns


class Lighting(torch.nn.Module):
    """Add ``sum_i alpha_i * lambda_i * p_i`` to every pixel, ``alpha_i ~ N(0, std)`` per image.

    Section 4.1 of the paper: ``[p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T`` where ``p_i`` are
    the eigenvectors of the 3x3 RGB covariance of the training pixels (the *columns* of
    ``eigvec``) and ``l_i`` their eigenvalues. Works on a float image ``(3, H, W)`` in [0, 1].
    """

    def __init__(self, std: float, eigval, eigvec):
        super().__init__()
        self.std = std
        self.eigval = torch.as_tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.as_tensor(eigvec, dtype=torch.float32)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return image
        alpha = torch.randn(3) * self.std
        rgb = self.eigvec @ (alpha * self.eigval)  # (3,): the same shift for every pixel
        return image + rgb.to(image.dtype)[:, None, None]


def pca_of_covariance(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (as columns) of a symmetric 3x3 covariance."""
    eigval, eigvec = torch.linalg.eigh(cov.double())  # ascending, columns
    order = eigval.argsort(descending=True)
    eigvec = eigvec[:, order]
    # Fix each eigenvector's sign (largest component negative, as ImageNet's values are
    # usually printed) so the numbers are reproducible; the lighting noise is symmetric.
    signs = torch.where(eigvec[eigvec.abs().argmax(0), torch.arange(3)] > 0, -1.0, 1.0)
    return eigval[order].clamp_min(0).float(), (eigvec * signs).float()


def compute_stats(dataset: Dataset, max_images: int = 5000, workers: int = 0, seed: int = 0,
                  collate_fn: Callable | None = None) -> DataStats:
    """Per-channel mean and std and the RGB covariance's PCA over (up to) ``max_images``.

    ``dataset`` yields ``(float image (3, H, W) in [0, 1], label)``, all of one size (the
    central square that ``stats_transform`` cuts), so the mean image comes with them.
    Images are drawn at random with ``seed`` when there are more. ``collate_fn`` may leave
    unreadable images out (a batch of None images is skipped).
    """
    n = len(dataset)
    if n > max_images:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images].tolist()
        dataset, n = Subset(dataset, idx), max_images
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    image_sum: torch.Tensor | float = 0.0
    pixels = 0
    # Its own generator: computing statistics must not move the global random state.
    counted = 0
    for batch in DataLoader(dataset, batch_size=64, num_workers=workers, generator=torch.Generator(),
                            collate_fn=collate_fn):
        images = batch[0]
        if images is None:
            continue
        counted += len(images)
        flat = images.double().permute(1, 0, 2, 3).reshape(3, -1)  # (3, pixels)
        total += flat.sum(1)
        outer += flat @ flat.T
        pixels += flat.shape[1]
        image_sum = image_sum + images.double().sum(0)
    if not counted:
        raise ValueError("no readable training image to compute statistics from")
    n = counted
    mean = total / pixels
    cov = outer / pixels - torch.outer(mean, mean)
    eigval, eigvec = pca_of_covariance(cov)
    std = cov.diagonal().clamp_min(1e-12).sqrt()
    return DataStats(
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        eigval=tuple(eigval.tolist()),
        eigvec=tuple(tuple(r) for r in eigvec.tolist()),
        images=n,
        mean_image=(image_sum / n).float(),
    )


AUTO_AUGMENTS = ("none", "trivialaugment", "randaugment", "autoaugment")


@dataclass(frozen=True)
class Augment:
    """Training augmentation beyond the paper's crop, flip and lighting (which ``Preprocess``
    describes, since evaluation needs to know the crop too). All off by default."""

    crop_scale: float = 1.0  # < 1: RandomResizedCrop with area fraction in [crop_scale, 1]
    color_jitter: float = 0.0  # brightness, contrast and saturation factors in [1 - x, 1 + x]
    auto_augment: str = "none"  # one of AUTO_AUGMENTS
    random_erasing: float = 0.0  # probability per image

    @property
    def beyond_crop_and_flip(self) -> bool:
        """True when a sample needs more than a crop and a mirror (the cache's batched fast path)."""
        return self.crop_scale < 1 or self.color_jitter > 0 or self.auto_augment != "none" or self.random_erasing > 0


def colour_policy(aug: Augment) -> list:
    """Photometric (and, for the automatic policies, some geometric) ops on a uint8 image tensor."""
    ops: list = []
    if aug.color_jitter > 0:
        ops.append(T.ColorJitter(brightness=aug.color_jitter, contrast=aug.color_jitter, saturation=aug.color_jitter))
    if aug.auto_augment == "trivialaugment":
        ops.append(T.TrivialAugmentWide())
    elif aug.auto_augment == "randaugment":
        ops.append(T.RandAugment())
    elif aug.auto_augment == "autoaugment":
        ops.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
    return ops
