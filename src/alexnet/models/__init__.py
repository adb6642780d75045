"""The AlexNet model zoo: ``list_models()``, ``get_model(name, ...)``."""

from . import variants as _variants  # noqa: F401  (registers the variants)
from .alexnet import TAPS, AlexNet, AlexNetConfig
from .registry import get_model, list_models, model_info, parse_model_options, register_model
from .weights import WeightsError, load_weights, model_from_checkpoint

__all__ = [
    "TAPS", "AlexNet", "AlexNetConfig", "WeightsError",
    "get_model", "list_models", "load_weights", "model_from_checkpoint", "model_info", "parse_model_options",
    "register_model",
]
