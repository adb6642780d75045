"""Evaluate a checkpoint on a data source with the preprocessing it was trained with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import checkpoint
from ..data import DataError, Preprocess, open_source
from ..data.loading import Transformed, eval_loader
from ..data.transforms import eval_transform, ten_crop_transform
from ..engine.loop import EvalResult, evaluate
from ..models import model_from_checkpoint


@dataclass
class CheckpointEval:
    result: EvalResult
    split: str
    data: str
    views: str  # "centre crop" or "ten-crop"


def evaluate_checkpoint(
    path: str | Path,
    data: str,
    device: torch.device,
    split: str | None = None,
    batch_size: int = 256,
    workers: int = 2,
    ten_crop: bool = False,
) -> CheckpointEval:
    """Loss, top-1 and top-5 of the checkpoint's model on ``split`` of ``data``.

    ``split`` defaults to test where the source has one, else val. A folder that was
    split by ``--val-split`` in training is split again the same way, so its val images
    are the ones training never saw. ``ten_crop``: the paper's 10-view test.
    """
    ckpt = checkpoint.load(path)
    preprocess = Preprocess.from_dict(ckpt["preprocess"])
    splits = open_source(data, preprocess.crop, ckpt["data"]["val_split"], preprocess=preprocess)
    if list(splits.class_names) != list(ckpt["class_names"]):
        raise DataError(
            f"{data} has classes {_short(splits.class_names)} but {path} was trained on "
            f"{_short(ckpt['class_names'])}; evaluate on data with the same class folders"
        )
    split = split or splits.default_eval_split
    model = model_from_checkpoint(ckpt).to(device)
    transform = ten_crop_transform(preprocess) if ten_crop else eval_transform(preprocess)
    # Ten views per image: a tenth of the images per batch keeps memory the same.
    loader = eval_loader(Transformed(splits.get(split), transform), max(1, batch_size // 10) if ten_crop else batch_size,
                         workers, device.type == "cuda")
    return CheckpointEval(evaluate(model, loader, device), split, data, "ten-crop" if ten_crop else "centre crop")


def _short(names: list[str], n: int = 5) -> str:
    return "[" + ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "") + "]"
