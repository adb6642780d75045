"""Where a run came from: the versions, commit, command line, device and data that made it.

Recorded in config.json and every checkpoint as a list, one record per process that
trained the run (the start, then each ``--resume``). It is a record, never an input:
``--config`` replay and ``--resume`` ignore it.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.cache import fingerprint as files_fingerprint
from ..data.datasets import Splits

# Enough to tell two data sets apart without reading them: ~1000 images of an in-memory set.
SAMPLED_IMAGES = 1000


def record(data: str | None, splits: Splits, device: torch.device, world: int,
           argv: list[str] | None = None) -> dict[str, Any]:
    """This process's record: versions, git commit, command line, device, data fingerprint."""
    import torchvision

    from .. import __version__

    return {
        # str(): torch's version is a TorchVersion, which weights_only loading refuses
        "alexnet": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
        "python": platform.python_version(), "git": git_commit(),
        "command": list(sys.argv if argv is None else argv),
        "device": describe_device(device) + (f" x {world} processes" if world > 1 else ""),
        "data": {"source": data, "path": _resolved(data), "fingerprint": data_fingerprint(splits)},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def git_commit(where: Path | None = None) -> str | None:
    """The commit of the checkout this package runs from, ``-dirty`` when tracked files have
    uncommitted changes; None outside a git checkout (an installed package)."""
    where = where or Path(__file__).resolve().parent
    if "site-packages" in where.parts:  # an installed copy inside someone's repository is not that commit
        return None
    try:
        head = _git(where, "rev-parse", "HEAD")
        dirty = _git(where, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def _git(where: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _resolved(data: str | None) -> str | None:
    """The data folder's absolute path (a replay from elsewhere can then find it)."""
    path = Path(data).expanduser() if data else None
    return str(path.resolve()) if path is not None and path.exists() else None


def data_fingerprint(splits: Splits) -> str:
    """sha256 over every split: for image files their paths, sizes and modification times
    (the cache's fingerprint), for images held in memory (digits, CIFAR) their labels and a
    sample of their pixels."""
    h = hashlib.sha256()
    for name in splits.available:
        h.update(f"{name}\n{_split_fingerprint(splits.get(name))}\n".encode())
    return "sha256:" + h.hexdigest()


def _split_fingerprint(dataset) -> str:
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        return files_fingerprint(paths, 0)
    images = getattr(dataset, "images", None)
    if isinstance(images, np.ndarray):
        h = hashlib.sha256(f"{images.shape}".encode())
        h.update(np.asarray(dataset.targets, np.int64).tobytes())
        h.update(np.ascontiguousarray(images[:: max(1, len(images) // SAMPLED_IMAGES)]).tobytes())
        return h.hexdigest()
    return f"{type(dataset).__name__} of {len(dataset)} items"
