"""Loading weights into an AlexNet: this project's checkpoints, torchvision state dicts."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from .. import checkpoint
from ..errors import AlexNetError
from .alexnet import AlexNet, AlexNetConfig

# torchvision's index-named layers -> the paper's names.
TORCHVISION_KEY_MAP = {
    "features.0": "conv1",
    "features.3": "conv2",
    "features.6": "conv3",
    "features.8": "conv4",
    "features.10": "conv5",
    "classifier.1": "fc6",
    "classifier.4": "fc7",
    "classifier.6": "fc8",
}
# Prefixes that wrappers add: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class WeightsError(AlexNetError, ValueError):
    """Weights that do not fit the model; the message says what did not match."""


def from_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``torchvision.models.alexnet`` state dict to this project's names."""
    out = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        out[f"{TORCHVISION_KEY_MAP.get(prefix, prefix)}.{leaf}"] = value
    return out


def to_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    inverse = {v: k for k, v in TORCHVISION_KEY_MAP.items()}
    out = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        out[f"{inverse.get(prefix, prefix)}.{leaf}"] = value
    return out


def normalize_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and map torchvision names, whatever saved the file."""
    clean = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):  # torch.compile(DDP(model)): "_orig_mod.module."
            key = key.removeprefix(next(p for p in _WRAPPER_PREFIXES if key.startswith(p)))
        clean[key] = value
    if any(k.startswith(("features.", "classifier.")) for k in clean):
        clean = from_torchvision(clean)
    return clean


def load_state_dict(model: AlexNet, state: Mapping[str, Any], source: str = "weights") -> None:
    """Strict load that names every missing, unexpected or mis-shaped tensor."""
    state = normalize_state_dict(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    ]
    problems = []
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes))
    if missing:
        problems.append(f"missing: {_abbrev(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_abbrev(unexpected)}")
    if problems:
        raise WeightsError(f"{source} do not fit this model ({', '.join(problems)})")
    model.load_state_dict(state)


def _abbrev(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_weights(model: AlexNet, weights: str | os.PathLike | Mapping[str, Any]) -> None:
    """Load a path (checkpoint or state dict file) or an in-memory state dict into ``model``."""
    if isinstance(weights, Mapping):
        source, obj = "weights", weights
    else:
        source, obj = str(weights), checkpoint.read(weights)
    if checkpoint.is_checkpoint(obj):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: expected a state dict or a checkpoint, found {type(obj).__name__}")
    load_state_dict(model, obj, source)


def model_from_checkpoint(ckpt: Mapping[str, Any]) -> AlexNet:
    """Rebuild the exact model a checkpoint describes, weights included."""
    try:
        config = AlexNetConfig(**ckpt["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"checkpoint has no usable model config ({e})") from None
    model = AlexNet(config)
    load_state_dict(model, ckpt["model"], f"checkpoint weights ({ckpt.get('arch', '?')})")
    return model
