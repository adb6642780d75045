"""Device choice, made once per run (never inside model code)."""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import AlexNetError


class DeviceError(AlexNetError):
    """The requested device is not available."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is visible to PyTorch (try --device auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: Apple's MPS backend is not available here (try --device auto or cpu)")
    return torch.device(name)


def sync_for(device: torch.device) -> Callable[[], None]:
    """A function that waits until ``device`` has finished its queued work: GPU work runs
    asynchronously, so a timing taken without it measures the queueing, not the work."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None
