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


@pytest.fixture(autouse=True)
def own_dirs(tmp_path, monkeypatch):
    """The image cache ($ALEXNET_CACHE) and data sets ($ALEXNET_DATA) in the test's own
    folder: no test reads or writes the user's ~/.cache/alexnet."""
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ALEXNET_DATA", str(tmp_path / "datasets"))


# Flags for a network and batches small enough that a test's training run takes seconds on a CPU.
TINY = ("--arch", "alexnet_cifar", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--device", "cpu")


@pytest.fixture(scope="session")
def train_run():
    """``train_run(data, out, *flags) -> exit status`` of `alexnet train` with the TINY flags,
    for one epoch unless ``flags`` say otherwise (of a flag given twice, the later wins)."""
    from alexnet.cli import main

    def run(data, out, *flags: str) -> int:
        return main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", "1", *flags])

    return run


@pytest.fixture(scope="session")
def make_preprocess():
    """``make_preprocess(**kw)``: a ``Preprocess`` of 32 px crops from 37 px squares with
    made-up channel statistics (any other field through ``kw``)."""
    from alexnet.data.transforms import Preprocess

    return lambda **kw: Preprocess(crop=32, resize=37, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), **kw)


def write_cifar(folder: Path, kind: str = "cifar10", per_batch: int = 20, seed: int = 0) -> Path:
    """A CIFAR pickle folder in the original format (Python 2 pickles: bytes keys), small."""
    import pickle

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    classes = 10 if kind == "cifar10" else 100
    label_key = b"labels" if kind == "cifar10" else b"fine_labels"

    def batch(n):
        labels = [i % classes for i in range(n)]
        data = np.zeros((n, 3072), np.uint8)
        for i, label in enumerate(labels):  # red plane encodes the label, so images are checkable
            data[i, :1024] = label
            data[i, 1024:] = rng.integers(0, 256, 2048)
        return {b"data": data, label_key: labels, b"batch_label": b"made by the tests"}

    def dump(name, obj):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    if kind == "cifar10":
        for i in range(1, 6):
            dump(f"data_batch_{i}", batch(per_batch))
        dump("test_batch", batch(per_batch))
        dump("batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})
    else:
        dump("train", batch(per_batch * 5))
        dump("test", batch(per_batch))
        dump("meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)], b"coarse_label_names": []})
    return folder
