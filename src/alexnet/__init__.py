"""alexnet: the 2012 network and its recipe, runnable, plus the workflow around it."""

from .models import AlexNet, AlexNetConfig, get_model, list_models

__version__ = "0.1.0"
__all__ = ["AlexNet", "AlexNetConfig", "get_model", "list_models", "__version__"]
