"""Name -> model builder, as torchvision and timm do it."""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any, Callable

from torch import nn

from ..errors import AlexNetError
from .alexnet import AlexNet


class ModelOptionError(AlexNetError, ValueError):
    """An unknown model, or options that do not make a valid variant."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., AlexNet]
    image_size: int  # the size the variant was designed for; the training default
    summary: str  # one line for `--help` and listings


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, image_size: int, summary: str) -> Callable:
    """Register ``fn(num_classes=..., **options) -> AlexNet`` under ``name``."""

    def wrap(fn: Callable[..., AlexNet]) -> Callable[..., AlexNet]:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, fn, image_size, summary)
        return fn

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelOptionError(f"unknown model {name!r}; choose from {', '.join(list_models())}") from None


def parse_model_options(items: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["bn_all=true", "norm_after=conv1,conv2", "dropout=0.3"]`` -> typed options."""

    def value(text: str) -> Any:
        if "," in text:
            return tuple(value(t) for t in text.split(",") if t)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    options = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ModelOptionError(f"model option {item!r} is not KEY=VALUE")
        options[key.strip().replace("-", "_")] = value(text.strip())
    return options


def get_model(
    name: str,
    num_classes: int | None = None,
    weights: str | PathLike | dict | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered AlexNet variant.

    ``num_classes`` defaults to the variant's own (1000, ImageNet's; 10 for ``alexnet_cifar``).
    ``weights`` is ``"torchvision"`` (its ImageNet weights, as ``--weights torchvision``), a
    path to a torchvision AlexNet state dict, a checkpoint of this project, or an in-memory
    state dict; loading is strict about names and shapes.
    ``options`` override fields of the variant's :class:`AlexNetConfig` (``dropout``,
    ``norm``, ...) or the variant's own switches (``bn_all`` for ``alexnet_bn``).
    """
    if num_classes is not None:  # else the builder's own default
        options["num_classes"] = num_classes
    model = model_info(name).builder(**options)
    if isinstance(weights, str) and weights == "torchvision":
        from .pretrained import load_pretrained  # the hub cache, downloaded when missing

        weights = load_pretrained(weights).model.state_dict()
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights)
    return model
