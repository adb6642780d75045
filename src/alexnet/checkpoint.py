"""The checkpoint file: a self-describing dict that ``torch.load(weights_only=True)`` reads.

A checkpoint holds everything needed to use the model without other flags: the
architecture and its full config, class names, input preprocessing, the weights, and
(for resuming) the optimizer state, epoch and training config. Only plain containers,
numbers, strings and tensors go in, so no pickled code is ever executed on load.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import AlexNetError

FORMAT = "alexnet.checkpoint"
VERSION = 1


class CheckpointError(AlexNetError):
    """A checkpoint that cannot be used; the message is one line for the user."""


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash leaves the old file or the new one, never half."""
    atomic_torch_save(path, {"format": FORMAT, "version": VERSION, **payload})


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: str | os.PathLike) -> Any:
    """``torch.load`` on the CPU with ``weights_only=True``, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(f"{path}: refused, it holds pickled objects other than tensors and plain data ({first})") from None
        raise CheckpointError(f"{path}: not a readable PyTorch file (truncated or corrupt?): {first}") from None


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint of this project and check its format."""
    ckpt = read(path)
    if not is_checkpoint(ckpt):
        raise CheckpointError(f"{path}: not a checkpoint of this project (no '{FORMAT}' marker); load bare weights with get_model(..., weights=PATH)")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this alexnet understands ({VERSION})")
    return ckpt


def is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT
