"""Fixtures that make their own small data: no network, nothing from outside the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def write_images(folder: Path, n_per_class: int, size: int = 40, seed: int = 0, fmt: str = "png") -> None:
    """Noisy images whose dominant colour is the class: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"img {i}.{fmt}")


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """DIR/train/<class>/ and DIR/val/<class>/ with three colour classes."""
    write_images(tmp_path / "data" / "train", 8, seed=1)
    write_images(tmp_path / "data" / "val", 4, seed=2, fmt="jpg")
    return tmp_path / "data"


@pytest.fixture
def flat_folder(tmp_path: Path) -> Path:
    """DIR/<class>/ only, to be split by --val-split."""
    write_images(tmp_path / "flat", 10, seed=3)
    return tmp_path / "flat"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
