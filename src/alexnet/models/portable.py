"""The portable weights file: a model's tensors and everything needed to use it, no pickle.

A ``.safetensors`` file holds tensors and a string -> string metadata table, so loading it
runs no code and needs neither this package's version nor PyTorch's pickle format. Tensors:
``model.state_dict()``, plus ``preprocess.mean_image`` for models normalised by a mean image.
Metadata (each value a string, JSON where structured)::

    format         "alexnet.weights"
    version        "1"
    arch           the registered variant, e.g. "alexnet"
    model_config   AlexNetConfig.to_dict(), from which the exact network is rebuilt
    class_names    ["n01440764", ...]: the outputs of fc8, in order
    preprocess     Preprocess.to_dict() without the mean image (crop, resize, mean, std, ...)
    display_names  {"n01440764": "tench", ...} or null: readable names for id-like classes
    metrics        {"val_top1": 0.71, ...} or null: how well the weights did, where known
    extra          anything else the writer wants kept (e.g. the source of converted weights)

The dict shapes are the checkpoint's (``alexnet.checkpoint``); this layer does not import
``alexnet.data``, so ``preprocess`` stays a plain dict here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..errors import first_line
from .weights import WeightsError

FORMAT = "alexnet.weights"
VERSION = 1
MEAN_IMAGE_KEY = "preprocess.mean_image"
_JSON_KEYS = ("model_config", "class_names", "preprocess", "display_names", "metrics", "extra")


@dataclass
class WeightsFile:
    state_dict: dict[str, torch.Tensor]
    arch: str
    model_config: dict[str, Any]
    class_names: list[str]
    preprocess: dict[str, Any]  # mean_image, where there is one, is a (3, resize, resize) tensor again
    display_names: dict[str, str] | None = None
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] | None = field(default=None)


def weights_metadata(model: nn.Module, *, arch: str, class_names: list[str], preprocess: dict,
                     display_names: dict | None = None, metrics: dict | None = None,
                     extra: dict | None = None, embed_mean_image: bool = False) -> dict[str, str]:
    """The metadata table of a weights file; exported ONNX and TorchScript files carry it too,
    with ``embed_mean_image`` (they have no tensor slot for it): then the mean image, where
    there is one, is kept as base64 float32 under ``preprocess.mean_image``."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise WeightsError(f"{type(model).__name__} has no AlexNetConfig; only alexnet models are saved this way")
    if isinstance(display_names, (list, tuple)):  # a checkpoint's list, one per class
        display_names = dict(zip(class_names, display_names))
    if len(class_names) != config.num_classes:
        raise WeightsError(f"{len(class_names)} class names for a model with {config.num_classes} outputs")
    plain = {k: v for k, v in preprocess.items() if k != "mean_image"}
    values = {"model_config": config.to_dict(), "class_names": list(class_names), "preprocess": plain,
              "display_names": display_names, "metrics": metrics, "extra": extra}
    meta = {"format": FORMAT, "version": str(VERSION), "arch": str(arch)}
    meta.update({k: json.dumps(v, default=_json_default) for k, v in values.items()})
    if embed_mean_image and isinstance(preprocess.get("mean_image"), torch.Tensor):
        image = preprocess["mean_image"].detach().cpu().float().contiguous()
        meta[MEAN_IMAGE_KEY] = json.dumps({"shape": list(image.shape),
                                           "float32_base64": base64.b64encode(image.numpy().tobytes()).decode()})
    return meta


def save_weights_file(path: str | os.PathLike, model: nn.Module, *, arch: str, class_names: list[str],
                      preprocess: dict, display_names: dict | None = None, metrics: dict | None = None,
                      extra: dict | None = None) -> None:
    """Write ``model``'s weights and metadata to ``path`` (safetensors), atomically, with the umask's mode."""
    from safetensors.torch import save_file

    meta = weights_metadata(model, arch=arch, class_names=class_names, preprocess=preprocess,
                            display_names=display_names, metrics=metrics, extra=extra)
    # safetensors refuses shared or strided storage: every tensor gets its own contiguous copy.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if isinstance(preprocess.get("mean_image"), torch.Tensor):
        tensors[MEAN_IMAGE_KEY] = preprocess["mean_image"].detach().cpu().float().contiguous().clone()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_weights_file(path: str | os.PathLike) -> WeightsFile:
    """Read a file written by :func:`save_weights_file`; one-line ``WeightsError`` otherwise."""
    tensors, meta = read_safetensors(path)
    return weights_from_metadata(path, meta, tensors)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of any ``.safetensors`` file, with one-line errors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({first_line(e)})") from None


def safetensors_format(path: str | os.PathLike) -> str | None:
    """The ``format`` its metadata names (``alexnet.weights``, a classifier's, ...), read
    without the tensors; None for a file that is not a readable safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return (f.metadata() or {}).get("format")
    except (SafetensorError, OSError, ValueError):
        return None


def weights_from_metadata(path: str | os.PathLike, meta: dict[str, str],
                          tensors: dict[str, torch.Tensor]) -> WeightsFile:
    """A :class:`WeightsFile` from a metadata table (see :func:`weights_metadata`) and tensors."""
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path}: not an alexnet weights file (no format={FORMAT!r} in its metadata)")
    if int(meta.get("version", "0") or 0) > VERSION:
        raise WeightsError(f"{path}: weights file version {meta['version']} is newer than this alexnet reads ({VERSION})")
    try:
        values = {k: json.loads(meta.get(k, "null")) for k in _JSON_KEYS}
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path}: corrupt metadata ({e})") from None
    preprocess = dict(values["preprocess"] or {})
    mean_image = tensors.pop(MEAN_IMAGE_KEY, None)
    if mean_image is None and MEAN_IMAGE_KEY in meta:
        mean_image = _decode_image(path, meta[MEAN_IMAGE_KEY])
    if mean_image is not None:
        preprocess["mean_image"] = mean_image
    if not values["model_config"] or not values["class_names"]:
        raise WeightsError(f"{path}: metadata lacks the model config or the class names")
    return WeightsFile(tensors, meta.get("arch", "?"), values["model_config"], list(values["class_names"]),
                       preprocess, values["display_names"], values["metrics"], values["extra"])


def is_weights_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file whose metadata says ``format=alexnet.weights``."""
    return safetensors_format(path) == FORMAT


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` on success, removed
    on failure, so readers see the old file or the whole new one. The file gets the mode a
    plain ``open`` would give it (0666 less the umask), not ``mkstemp``'s 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    # Linux reports it without changing it; elsewhere set-and-restore (not thread-safe, but brief).
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _decode_image(path: str | os.PathLike, text: str) -> torch.Tensor:
    try:
        d = json.loads(text)
        flat = torch.frombuffer(bytearray(base64.b64decode(d["float32_base64"])), dtype=torch.float32)
        return flat.reshape(d["shape"]).clone()
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise WeightsError(f"{path}: corrupt mean image in its metadata ({e})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
