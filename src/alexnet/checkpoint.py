"""The checkpoint file: a self-describing dict that ``torch.load(weights_only=True)`` reads.

A checkpoint holds everything needed to use the model without other flags: the
architecture and its full config, class names, input preprocessing, the weights, and
(for resuming) the optimizer state, epoch and training config. Only plain containers,
numbers, strings and tensors go in, so no pickled code is ever executed on load.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import AlexNetError, first_line

FORMAT = "alexnet.checkpoint"
VERSION = 1


class CheckpointError(AlexNetError):
    """A checkpoint that cannot be used; the message is one line for the user."""


class WriteError(CheckpointError, OSError):
    """A file that could not be written (a full disk, a read-only folder); still an OSError
    for callers that handle those."""


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash leaves the old file or the new one, never half."""
    atomic_torch_save(path, {"format": FORMAT, "version": VERSION, **payload})


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` as the process's umask leaves it: what ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write(path: str | os.PathLike, write) -> None:
    """``write(file)`` into a temporary file in the same folder, fsync, then rename over
    ``path``: an error, a full disk or a kill leaves the old file (or none), never half a
    file. The new file gets the umask's mode, as any other file. Write errors are one line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(f"{path}: cannot write there ({e.strerror or e})") from None
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        # torch's zip writer reports a failed write (a full disk) as a RuntimeError
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "write" in str(e)):
            cause = getattr(e, "strerror", None) or first_line(e)
            raise WriteError(f"{path}: writing failed ({cause}); "
                                  + ("the previous file is kept" if path.exists() else "nothing was written")) from None
        raise


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def read(path: str | os.PathLike) -> Any:
    """``torch.load`` on the CPU with ``weights_only=True``, with one-line errors that say
    what the file is; nothing in a refused file is ever run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: {_diagnose(head, e)}") from None


def _diagnose(head: bytes, error: Exception) -> str:
    """What a file that ``torch.load(weights_only=True)`` refused is, in words."""
    if found := re.search(r"GLOBAL ([\w.]+)", str(error)):
        return (f"refused: it holds Python code or objects ({found.group(1)}), not only tensors and plain data; "
                "nothing in it was run")
    if head == b"PK\x03\x04":  # torch's zip format
        return "a PyTorch file that is truncated or corrupt (was it copied completely?)"
    if isinstance(error, EOFError):
        return "truncated (the data ends early)"
    if head[:1] == b"\x80":  # a pickle's protocol marker
        return "a Python pickle, not a PyTorch checkpoint or state dict; refused (nothing in it was run)"
    return "not a PyTorch file (a checkpoint of this project, a .pth state dict or .safetensors)"


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint of this project and check its format and what describes the model."""
    ckpt = read(path)
    if not is_checkpoint(ckpt):
        raise CheckpointError(f"{path}: not a checkpoint of this project (no '{FORMAT}' marker); load bare weights with get_model(..., weights=PATH)")
    check_version(ckpt, path)
    check_metadata(ckpt, path)
    return ckpt


def check_version(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint written by a newer alexnet, whose contents this one may misread."""
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r} is newer than this alexnet understands ({VERSION})")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_metadata(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose description of the model is inconsistent (edited or
    damaged): class names, their count against the model's, and the preprocessing."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}; the checkpoint was edited or damaged")

    names, config, pre = ckpt.get("class_names"), ckpt.get("model_config"), ckpt.get("preprocess")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad("'class_names' is not a non-empty list of names")
    display = ckpt.get("display_names")
    if display is not None and (not isinstance(display, list) or len(display) != len(names)
                                or not all(isinstance(n, str) for n in display)):
        raise bad(f"'display_names' is not a list of {len(names)} names")
    if not isinstance(config, dict):
        raise bad("'model_config' is missing")
    if config.get("num_classes", 1000) != len(names):
        raise bad(f"the model has {config.get('num_classes', 1000)} outputs but there are {len(names)} class names")
    if not isinstance(pre, dict):
        raise bad("'preprocess' is missing")
    crop, resize = pre.get("crop"), pre.get("resize")
    if not (isinstance(crop, int) and isinstance(resize, int) and 1 <= crop <= resize):
        raise bad(f"'preprocess' has crop {crop!r} and resize {resize!r} (need integers, 1 <= crop <= resize)")
    for key in ("mean", "std"):
        value = pre.get(key, [0.5] * 3)
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_number(v) for v in value)):
            raise bad(f"'preprocess' {key} is not 3 numbers")
    if not all(v > 0 for v in pre.get("std", [1] * 3)):
        raise bad("'preprocess' std is not positive")


def is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def held_out(ckpt: dict[str, Any] | None) -> list[int] | None:
    """The ids of the val files a training run split off its folder (``data.Splits.held_out``),
    or None: a val/ folder, CIFAR or digits, or a checkpoint from before they were recorded."""
    data = ckpt.get("data") if isinstance(ckpt, dict) else None
    ids = data.get("held_out") if isinstance(data, dict) else None
    if isinstance(ids, (list, tuple)) and ids and all(isinstance(k, int) and not isinstance(k, bool) for k in ids):
        return list(ids)
    return None
