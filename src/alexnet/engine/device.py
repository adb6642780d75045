"""Device choice, made once per run (never inside model code)."""

from __future__ import annotations

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
