"""alexnet: the 2012 network and its recipe, runnable, plus the workflow around it."""

from .models import AlexNet, AlexNetConfig, get_model, list_models

__version__ = "0.1.0"
__all__ = ["AlexNet", "AlexNetConfig", "get_model", "list_models", "__version__",
           "Classifier", "TrainConfig", "fit", "load"]
_API = ("Classifier", "Prediction", "TrainConfig", "fit", "load")  # from .api, imported on first use


def __getattr__(name: str):
    # The API pulls in the data, engine and task layers; `import alexnet` stays quick without it.
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'alexnet' has no attribute {name!r}")
