"""Evaluate a checkpoint, or pretrained weights, on a data source with the preprocessing that belongs to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint
from ..data import DataError, Preprocess, open_source
from ..data.loading import Transformed, eval_loader
from ..data.transforms import eval_transform, mirror_transform, ten_crop_transform
from ..engine.inference import optimize_for_inference
from ..engine.loop import EvalResult, evaluate
from ..engine.memory import check_image_size
from ..engine.skipped import NamingSkips, SkipList
from ..models import model_from_checkpoint
from ..models.pretrained import load_pretrained


@dataclass
class CheckpointEval:
    result: EvalResult
    split: str
    data: str
    views: str  # "centre crop", "centre crop + mirror" or "ten-crop"
    backend: str = "eager"  # how the network ran: onnxruntime, compile or eager (engine/inference.py)
    skipped_files: list[str] = field(default_factory=list)  # unreadable images left out: path and reason each


def evaluate_checkpoint(
    path: str | Path,
    data: str,
    device: torch.device,
    split: str | None = None,
    batch_size: int = 256,
    workers: int = 2,
    ten_crop: bool = False,
    on_skipped=None,
    tta: bool = False,
) -> CheckpointEval:
    """Loss, top-1 and top-5 of the checkpoint's model on ``split`` of ``data``.

    ``split`` defaults to test where the source has one; a folder of class folders is
    scored whole (``all``); else val. ``--split val`` of a folder that was split by
    ``--val-split`` in training is the images held out then (the checkpoint names them),
    which training never saw, even if files were added or removed since. ``ten_crop``: the
    paper's 10-view test; ``tta``: the centre crop and its mirror. Views are averaged as
    ``engine.loop.mean_softmax`` says. ``on_skipped(text)`` hears of each unreadable image
    as it is met.
    """
    ckpt = checkpoint.load(path)
    preprocess = preprocess_of(ckpt, path)
    val_split = ckpt["data"].get("val_split", 0.1) if isinstance(ckpt.get("data"), dict) else 0.1
    splits = open_source(data, preprocess.crop, val_split, preprocess=preprocess, split_required=split in ("train", "val"),
                         held_out=checkpoint.held_out(ckpt) if split in ("train", "val") else None)
    if list(splits.class_names) != list(ckpt["class_names"]):
        raise DataError(
            f"{data} has classes {_short(splits.class_names)} but {path} was trained on "
            f"{_short(ckpt['class_names'])}; evaluate on data with the same class folders"
        )
    return _evaluate(model_from_checkpoint(ckpt), preprocess, splits, data, device, split, batch_size, workers, ten_crop,
                     on_skipped, tta)


def preprocess_of(ckpt: dict[str, Any], path: str | Path) -> Preprocess:
    """The checkpoint's preprocessing, or a one-line error for an entry that is not one."""
    try:
        return Preprocess.from_dict(ckpt["preprocess"])
    except (TypeError, ValueError, KeyError) as e:
        raise checkpoint.CheckpointError(f"{path}: its 'preprocess' entry is not usable ({e}); "
                                         "the checkpoint was edited or damaged") from None


def evaluate_pretrained(
    weights: str,
    data: str,
    device: torch.device,
    split: str | None = None,
    batch_size: int = 256,
    workers: int = 2,
    ten_crop: bool = False,
    val_split: float = 0.1,
    on_skipped=None,
    tta: bool = False,
) -> CheckpointEval:
    """As :func:`evaluate_checkpoint`, for a ``--weights`` value (``torchvision``, a state dict, ...).

    The data's classes must be the weights' classes, in the same order: for torchvision's
    ImageNet weights, the 1,000 ImageNet classes (as wnid folders, which the data source
    names by their categories).
    """
    p = load_pretrained(weights)
    splits = open_source(data, p.preprocess.crop, val_split, preprocess=p.preprocess,
                         split_required=split in ("train", "val"))
    # wnid folders (n02123045) are matched through the readable names the data source gives them
    if list(p.class_names) not in (list(splits.class_names), list(splits.display_names or [])):
        raise DataError(
            f"{data} has classes {_short(splits.class_names)} but the weights predict {_short(p.class_names)}; "
            "evaluate needs data whose class folders are the weights' classes (fine-tune or use "
            "`alexnet features --classifier` for other classes)"
        )
    return _evaluate(p.model, p.preprocess, splits, data, device, split, batch_size, workers, ten_crop, on_skipped, tta)


def _evaluate(model, preprocess: Preprocess, splits, data: str, device: torch.device, split: str | None,
              batch_size: int, workers: int, ten_crop: bool, on_skipped=None, tta: bool = False) -> CheckpointEval:
    if ten_crop and tta:
        raise DataError("--tta and --ten-crop both average views; --ten-crop already holds the mirror images")
    split = split or splits.default_eval_split
    check_image_size(model.config, preprocess.crop, batch_size, device, training=False, flag="the input size")
    transform, n_views, views = ((ten_crop_transform(preprocess), 10, "ten-crop") if ten_crop else
                                 (mirror_transform(preprocess), 2, "centre crop + mirror") if tta else
                                 (eval_transform(preprocess), 1, "centre crop"))
    # V views per image: 1/V of the images per batch keeps memory the same.
    skipped = SkipList(on_skipped)
    loader = NamingSkips(eval_loader(Transformed(splits.get(split), transform), max(1, batch_size // n_views), workers,
                                     device.type == "cuda"), skipped)
    # The fastest checked inference path for the device (ONNX Runtime on the CPU: see
    # engine/inference.py); it falls back to eager PyTorch by itself.
    net = optimize_for_inference(model, device, (min(batch_size, 64), 3, preprocess.crop, preprocess.crop))
    return CheckpointEval(evaluate(net, loader, device), split, data, views, net.backend, skipped.files)


def _short(names: list[str], n: int = 5) -> str:
    return "[" + ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "") + "]"
