"""``--weights W``: a model with the class names and preprocessing that belong to it.

``W`` is one of

* ``torchvision``: torchvision's ImageNet weights (``AlexNet_Weights.IMAGENET1K_V1``),
  taken from the torch hub cache, downloaded when missing, with their 1000 categories;
* a checkpoint of this project (it describes itself: architecture, classes, preprocessing);
* a bare state dict (``.pth``/``.pt``, e.g. torchvision's ``alexnet-owt-7be5be79.pth``) or a
  ``.safetensors`` file; the architecture is the registered variant whose tensors fit.

Nothing here executes pickled code: ``.pth`` files are read with ``weights_only=True``
(``checkpoint.read``) and safetensors holds tensors and strings only.
"""

from __future__ import annotations

import io
import os
import socket
import urllib.error
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .. import checkpoint
from ..data.classnames import imagenet_categories
from ..data.transforms import Preprocess
from .alexnet import AlexNet
from .registry import get_model, list_models, model_info
from .weights import WeightsError, load_state_dict, model_from_checkpoint, normalize_state_dict

TORCHVISION = "torchvision"
# torchvision's file name, and the one it used before 0.13 (same tensors, re-saved).
HUB_FILES = ("alexnet-owt-7be5be79.pth", "alexnet-owt-4df8aa71.pth")
CLASSIFIER_FORMAT = "alexnet.classifier"  # the metadata marker of `features --classifier` files
DOWNLOAD_TIMEOUT_S = 30  # per socket operation; an offline machine must not hang on DNS or a proxy


@dataclass
class Pretrained:
    """A model ready for inference and what it needs around it."""

    model: AlexNet
    class_names: list[str]
    preprocess: Preprocess
    description: str  # one line for the user: what was loaded, from where
    spec: str  # "torchvision" or an absolute path: what to pass to load_pretrained again
    arch: str = "?"  # the registered variant, where known

    def __iter__(self) -> Iterator[Any]:  # model, class_names, preprocess, description = load_pretrained(w)
        return iter((self.model, self.class_names, self.preprocess, self.description))


def load_pretrained(spec: str | os.PathLike) -> Pretrained:
    """Resolve a ``--weights`` value (see the module docstring) into a model in eval mode."""
    if str(spec) == TORCHVISION:
        return _from_torchvision()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"{spec}: no such file; --weights takes 'torchvision', a checkpoint, "
                           "a .pth state dict or a .safetensors file")
    if path.suffix == ".safetensors":
        state, meta = read_safetensors(path)
        if meta.get("format") == CLASSIFIER_FORMAT:
            raise WeightsError(f"{path} is a classifier saved by `alexnet features --classifier`; "
                               f"use `alexnet predict --classifier {path}`")
        return _from_state_dict(path, state)
    obj = checkpoint.read(path)
    if checkpoint.is_checkpoint(obj):
        if obj.get("version", 0) > checkpoint.VERSION:
            raise checkpoint.CheckpointError(f"{path}: checkpoint version {obj['version']} is newer than this "
                                             f"alexnet understands ({checkpoint.VERSION})")
        return _from_checkpoint(path, obj)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict or a checkpoint, found {type(obj).__name__}")
    return _from_state_dict(path, obj)


def imagenet_preprocess() -> Preprocess:
    # torchvision's eval transform for these weights: resize 256, centre crop 224, ImageNet mean/std.
    return Preprocess.for_size(224)


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a ``.safetensors`` file, with one-line errors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()
        reason = first[0] if first else type(e).__name__
        raise WeightsError(f"{path}: not a readable safetensors file ({reason})") from None


def _from_checkpoint(path: Path, ckpt: Mapping[str, Any]) -> Pretrained:
    model = model_from_checkpoint(ckpt).eval()
    names = list(ckpt["class_names"])
    description = f"{path} ({ckpt.get('arch', '?')}, {len(names)} classes)"
    return Pretrained(model, names, Preprocess.from_dict(ckpt["preprocess"]), description, str(path.resolve()),
                      ckpt.get("arch", "?"))


def _from_state_dict(path: Path, state: Mapping[str, Any]) -> Pretrained:
    state = normalize_state_dict(state)
    arch, options = infer_arch(state)
    num_classes = state["fc8.weight"].shape[0] if "fc8.weight" in state else 1000
    model = get_model(arch, num_classes=num_classes, **options)
    load_state_dict(model, state, str(path))
    # A state dict knows no class names: 1000 outputs are taken to be ImageNet's (torchvision's
    # files, and anything fine-tuned from them without changing fc8); other counts get indices.
    if num_classes == 1000:
        names, preprocess, what = imagenet_categories(), imagenet_preprocess(), "ImageNet classes"
    else:
        names, what = [str(i) for i in range(num_classes)], f"{num_classes} unnamed classes"
        preprocess = Preprocess.for_size(model_info(arch).image_size)
    return Pretrained(model.eval(), names, preprocess, f"{path} ({arch} state dict, {what})", str(path.resolve()), arch)


def infer_arch(state: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """The registered variant whose tensors (names and shapes) are exactly ``state``'s.

    With none exact, the closest one is returned, so that loading names what differs.
    """
    num_classes = state["fc8.weight"].shape[0] if "fc8.weight" in state else 1000
    candidates = [(name, {}) for name in list_models()] + [("alexnet_bn", {"bn_all": True})]
    best, best_misfits = candidates[0], None
    for name, options in candidates:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            own = get_model(name, num_classes=num_classes, **options).state_dict()
        misfits = len(own.keys() ^ state.keys()) + sum(
            1 for k in own.keys() & state.keys() if getattr(state[k], "shape", None) != own[k].shape
        )
        if misfits == 0:
            return name, options
        if best_misfits is None or misfits < best_misfits:
            best, best_misfits = (name, options), misfits
    return best


def hub_dir() -> Path:
    """Where torch hub keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _from_torchvision() -> Pretrained:
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    cached = next((hub_dir() / name for name in HUB_FILES if (hub_dir() / name).is_file()), None)
    if cached is not None:
        state, where = checkpoint.read(cached), cached
    else:
        state, where = _download(weights), hub_dir() / HUB_FILES[0]
    model = get_model("alexnet")
    load_state_dict(model, state, str(where))
    acc = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    description = f"torchvision ImageNet weights (IMAGENET1K_V1, top-1 {acc}%) from {where}"
    return Pretrained(model.eval(), list(weights.meta["categories"]), imagenet_preprocess(), description, TORCHVISION,
                      "alexnet")


def _download(weights) -> Mapping[str, torch.Tensor]:
    """torchvision's own download into the hub cache, checked against the hash in its name."""
    target = hub_dir() / HUB_FILES[0]
    try:
        # torch.hub announces the download on stdout, which belongs to the command's output (--json);
        # its progress bar (stderr) shows a download, and a failure is the one line below.
        with _socket_timeout(DOWNLOAD_TIMEOUT_S), redirect_stdout(io.StringIO()):
            return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:  # offline, refused, timed out, bad hash
        reason = str(getattr(e, "reason", None) or e).strip().splitlines()
        reason = reason[0] if reason else type(e).__name__
        raise WeightsError(
            f"torchvision's AlexNet ImageNet weights are not in the torch hub cache and could not be downloaded "
            f"({reason}); download {weights.url} and save it as {target} (or set TORCH_HOME to a folder whose "
            f"hub/checkpoints/ holds it)"
        ) from None


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torch.hub opens its URL without a timeout; without one, a machine behind a dead proxy waits forever.
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)
