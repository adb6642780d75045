"""Optional libraries, each installed by an extra of the package.

The core commands (train, evaluate, predict) need only torch, torchvision, numpy, pillow,
safetensors and tqdm. Every other library belongs to a feature and is imported through
:func:`require` when that feature runs, so that a missing one is a one-line error that
names the extra to install, and never an import error at start-up.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import AlexNetError

# Top-level module -> the extra of pyproject.toml that installs it.
EXTRAS = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "tensorboard": "tensorboard",
    "matplotlib": "plots",
    "sklearn": "sklearn",
    "fastapi": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "h5py": "convert",
    "yaml": "yaml",
}


class MissingExtra(AlexNetError):
    """A feature's optional library is not installed; the message names the extra."""


def install_hint(module: str) -> str:
    """``pip install 'alexnet[EXTRA]'`` for the extra that installs ``module``."""
    return f"pip install 'alexnet[{EXTRAS[module.split('.')[0]]}]'"


def require(module: str, feature: str) -> ModuleType:
    """``import module`` for ``feature`` (e.g. "--format onnx"), or a :class:`MissingExtra`:
    "FEATURE needs LIBRARY, which is not installed: pip install 'alexnet[EXTRA]'".

    An import error of a library that is installed but broken is not a missing extra and
    keeps its traceback.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = (e.name or module).split(".")[0]
        if missing not in EXTRAS:
            raise
        raise MissingExtra(f"{feature} needs {missing}, which is not installed: {install_hint(missing)}") from None


def check(feature: str, *modules: str) -> None:
    """Before a feature that needs several optional libraries starts its work: one
    :class:`MissingExtra` that names every missing one and the extras that install them."""
    missing = [m for m in modules if not available(m)]
    if missing:
        extras = ",".join(dict.fromkeys(EXTRAS[m.split(".")[0]] for m in missing))
        raise MissingExtra(f"{feature} needs {' and '.join(missing)}, which "
                           f"{'is' if len(missing) == 1 else 'are'} not installed: pip install 'alexnet[{extras}]'")


def available(module: str) -> bool:
    """Whether ``module`` is installed (found on the path; not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


__all__ = ["EXTRAS", "MissingExtra", "available", "check", "install_hint", "require"]
