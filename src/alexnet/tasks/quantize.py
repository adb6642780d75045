"""Static int8 quantization of an exported ONNX model with ONNX Runtime, and what it cost.

Weights are quantized per output channel to int8, activations per tensor to uint8 with
ranges taken (min/max) from calibration images; the QDQ graph runs as int8 convolutions
and matrix products (VNNI where the CPU has it). The top-1 change is measured on held-out
images: the ``val/`` of a ``--calibration-data`` folder that has ``train/`` and ``val/``
(calibrating on ``train/``), else on the folder's own images.
"""

from __future__ import annotations

import contextlib
import logging
import random
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..data.images import is_image_file
from ..data.transforms import eval_transform
from ..errors import AlexNetError
from ..extras import require
from ..models import onnx_file
from ..models.pretrained import Pretrained
from .inputs import to_image

MAX_EVAL_IMAGES = 2000
BATCH = 32


class QuantizeError(AlexNetError):
    """Calibration data that cannot be used."""


def quantize_int8(fp32: bytes, p: Pretrained, data_dir: str, calibration_images: int) -> tuple[bytes, list[str]]:
    """``(int8 ONNX bytes, report lines)``; the metadata of ``fp32`` is kept."""
    calib_dir, eval_dir = _folders(Path(data_dir))
    calib = _images(calib_dir)
    if not calib:
        raise QuantizeError(f"--calibration-data {data_dir}: no image files found")
    random.Random(0).shuffle(calib)
    calib = calib[:calibration_images]
    transform = eval_transform(p.preprocess)
    batches = (_tensors(calib[i:i + BATCH], transform).numpy() for i in range(0, len(calib), BATCH))
    int8 = quantize_onnx(fp32, batches)
    report = [f"int8: calibrated on {len(calib)} images of {calib_dir}"]
    report += _top1_change(fp32, int8, p, eval_dir)
    return int8, report


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(fp32: bytes, batches: Iterable[np.ndarray]) -> bytes:
    """int8 ONNX bytes of the fp32 model ``fp32`` (input ``images``), activation ranges from ``batches``."""
    onnx = require("onnx", "--quantize int8")
    require("onnxruntime", "--quantize int8")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="alexnet-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        with _quiet_root_logger():  # the quantizer logs advice on the root logger
            quantize_static(str(src), str(dst), _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    proto.metadata_props.extend(onnx.load_from_string(fp32).metadata_props)
    return proto.SerializeToString()


def _folders(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise QuantizeError(f"--calibration-data {root}: no such folder")
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root / "train", root / "val"
    return root, root


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and is_image_file(f.name))


class _Reader:
    """onnxruntime's ``CalibrationDataReader``: ``get_next() -> {"images": batch}`` or None."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"images": batch}


def _tensors(paths: list[Path], transform) -> torch.Tensor:
    return torch.stack([transform(to_image(f)) for f in paths])


def _top1_change(fp32: bytes, int8: bytes, p: Pretrained, folder: Path) -> list[str]:
    paths = _images(folder)
    random.Random(1).shuffle(paths)
    paths = sorted(paths[:MAX_EVAL_IMAGES])
    index = {name: i for i, name in enumerate(p.class_names)} | {name: i for i, name in enumerate(p.labels)}
    labels = [index.get(f.parent.name) for f in paths]
    transform = eval_transform(p.preprocess)
    sessions = [onnx_file.make_session(m) for m in (fp32, int8)]
    predicted: list[list[int]] = [[], []]
    for i in range(0, len(paths), BATCH):
        x = _tensors(paths[i:i + BATCH], transform).numpy()
        for out, session in zip(predicted, sessions):
            out += session.run(None, {"images": x})[0].argmax(1).tolist()
    n = len(paths)
    agree = sum(a == b for a, b in zip(*predicted)) / n
    lines = [f"int8 and fp32 agree on the top-1 class of {agree:.2%} of {n} images of {folder}"]
    if all(label is not None for label in labels):
        acc = [sum(int(y == t) for y, t in zip(pred, labels)) / n for pred in predicted]
        lines.append(f"top-1 on {folder} ({n} images): fp32 {acc[0]:.2%}, int8 {acc[1]:.2%} "
                     f"(change {100 * (acc[1] - acc[0]):+.2f} points)")
    else:
        lines.append(f"(the folders of {folder} are not the model's classes: no accuracy, agreement only)")
    return lines
