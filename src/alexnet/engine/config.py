"""Typed training configuration. The CLI flags are generated from these fields, so
``--help``, the printed config and ``config.json`` always agree."""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, get_type_hints

from ..errors import AlexNetError
from ..models import list_models


class ConfigError(AlexNetError):
    """A training option with a value that cannot work."""


def _opt(help: str, **kw: Any) -> Any:
    """A config field with its ``--help`` text (and optional argparse ``choices``)."""
    default = kw.pop("default", MISSING)
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    data: str = _opt("'digits' (ships with scikit-learn), or a folder: DIR/train/<class>/ + DIR/val/<class>/, or DIR/<class>/ split by --val-split")
    arch: str = _opt("model variant (`alexnet models` lists them)", default="alexnet", choices=list_models)
    epochs: int = _opt("passes over the training set", default=10)
    batch_size: int = _opt("images per step (the paper: 128)", default=128)
    lr: float = _opt("initial learning rate (the paper: 0.01)", default=0.01)
    momentum: float = _opt("SGD momentum (the paper: 0.9)", default=0.9)
    weight_decay: float = _opt("L2 weight decay (the paper: 0.0005)", default=5e-4)
    schedule: str = _opt("learning-rate schedule: constant, or cosine decay to 0 over the run", default="cosine", choices=("constant", "cosine"))
    model_option: list[str] | None = _opt(
        "KEY=VALUE overriding the variant's config, repeatable: bn_all=true (alexnet_bn with BatchNorm after "
        "every conv, the TensorFlow flowers network), norm=lrn|bn|none, norm_after=conv1,conv2, init=paper|kaiming|default",
        default=None, action="append", metavar="KEY=VALUE",
    )
    dropout: float | None = _opt("dropout probability in the fc layers (default: the variant's, 0.5)", default=None)
    image_size: int | None = _opt("network input side in pixels (default: the variant's: 224, 227 for alexnet_bn, 32 for alexnet_cifar)", default=None)
    val_split: float = _opt("fraction held out for validation when --data is one folder of classes", default=0.1)
    seed: int = _opt("random seed for initialisation, shuffling and augmentation", default=0)
    workers: int = _opt("DataLoader worker processes (0: load in the main process)", default=2)
    device: str = _opt("auto picks cuda, then mps, then cpu", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    out: str | None = _opt("run folder for config, metrics.csv and checkpoints (default: runs/<arch>-<time>)", default=None)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("need --lr > 0, --weight-decay >= 0 and 0 <= --momentum < 1")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {self.workers}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per dataclass field, typed and documented from the field."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        kind = hints[f.name]
        base = next((t for t in getattr(kind, "__args__", (kind,)) if t is not type(None)), kind)
        if getattr(base, "__origin__", None) is list:  # list[str] with action="append": each item is a str
            base = base.__args__[0]
        kw: dict[str, Any] = {"help": f.metadata["help"], "dest": f.name}
        for key in ("action", "metavar"):
            if key in f.metadata:
                kw[key] = f.metadata[key]
        if "choices" in f.metadata:
            choices = f.metadata["choices"]  # a callable is asked at parser build time (the model registry)
            kw["choices"] = choices() if callable(choices) else choices
        if f.default is MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
            if f.default is not None:
                kw["help"] += f" (default: {f.default})"
        parser.add_argument("--" + f.name.replace("_", "-"), type=base, **kw)


def from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})
