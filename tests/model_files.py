"""Small model files for the API, export and serving tests: made here, in a second or less."""

from __future__ import annotations

from pathlib import Path

import torch

from alexnet import checkpoint, get_model
from alexnet.data.transforms import Preprocess

CLASSES = ["blue", "green", "red"]  # conftest.write_images' colours, in folder order


def make_checkpoint(path: Path, arch: str = "alexnet_cifar", size: int = 32, mean_image: bool = False,
                    seed: int = 0) -> Path:
    """A checkpoint as `alexnet train` writes it (weights untrained), with a run folder's curves.png."""
    torch.manual_seed(seed)
    model = get_model(arch, num_classes=len(CLASSES))
    resize = round(size * 256 / 224)
    if mean_image:
        pre = Preprocess(crop=size, resize=resize, normalize="image", mean_image=torch.rand(3, resize, resize))
    else:
        pre = Preprocess.for_size(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, {
        "arch": arch, "model_config": model.config.to_dict(), "class_names": CLASSES, "display_names": None,
        "preprocess": pre.to_dict(), "model": model.state_dict(),
        "metrics": {"epoch": 2, "val_top1": 0.5, "val_top5": 1.0}, "best_top1": 0.5,
        "history": [{"epoch": 1, "val_top1": 0.4}, {"epoch": 2, "val_top1": 0.5}],
        "train_config": {"epochs": 2, "lr": 0.01, "batch_size": 8, "arch": arch},
        "data": {"source": "/data/colours", "val_split": 0.1},
    })
    return path
