"""The Python API: load a trained model from anything and use it on anything.

    import alexnet
    clf = alexnet.load("runs/x/checkpoints/best.pt")   # or "torchvision", model.onnx, an hf folder, ...
    clf.predict("cat.jpg")                               # Prediction(top=[('tabby', 0.81), ...])
    clf.predict([pil_image, hwc_uint8_array], top_k=3, tta=True)
    clf.features(images, layer="fc7")                    # (N, 4096) float tensor

    run_dir = alexnet.fit(data="digits", arch="alexnet_cifar", epochs=3, out="runs/d")
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from .data.transforms import Preprocess, eval_transform
from .engine.config import TrainConfig
from .engine.device import resolve_device
from .models import TAPS
from .models.pretrained import Pretrained, from_object, load_pretrained
from .tasks.features import layer_features
from .tasks.inputs import InputError, as_list, to_image
from .tasks.predict import Predictor


@dataclass
class Prediction:
    """One image's top-k: ``top`` is ``[(class name, probability), ...]``, best first."""

    top: list[tuple[str, float]]
    indices: list[int]  # the class indices of ``top``, into ``Classifier.class_names``

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def probability(self) -> float:
        return self.top[0][1]

    def as_dict(self) -> dict[str, Any]:
        return {"top": [{"class": n, "index": i, "probability": p} for (n, p), i in zip(self.top, self.indices)]}


class Classifier:
    """A model with the class names and preprocessing that belong to it (see :func:`load`).

    ``model``: the network (an ``AlexNet``, or an ONNX Runtime session for ``.onnx`` files);
    ``class_names``: its outputs, in order, as trained (ImageNet wnids stay wnids);
    ``labels``: readable names for them; ``transform``: PIL image -> normalised ``(3, H, W)``
    tensor, exactly as the model was trained to expect; ``metrics``: figures the file holds.
    """

    def __init__(self, pretrained: Pretrained, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.model = pretrained.model.to(self.device).eval()
        self.class_names = list(pretrained.class_names)
        self.labels = pretrained.labels
        self.preprocess: Preprocess = pretrained.preprocess
        self.transform = eval_transform(pretrained.preprocess)
        self.description, self.arch, self.source = pretrained.description, pretrained.arch, pretrained.spec
        self.metrics = dict(pretrained.metrics or {})
        self._predictor = Predictor(self.model, self.labels, self.preprocess, self.device,
                                    description=self.description)

    def __repr__(self) -> str:
        return f"Classifier({self.description})"

    def tensors(self, inputs: Any) -> torch.Tensor:
        """Inputs (see :func:`load`) -> the network's input batch ``(N, 3, H, W)``."""
        items, _ = as_list(inputs)
        if not items:
            raise InputError("no inputs given")
        return torch.stack([self.transform(to_image(x)) for x in items])

    @torch.no_grad()
    def probabilities(self, inputs: Any, tta: bool = False, batch_size: int = 32) -> torch.Tensor:
        """``(N, classes)`` softmax per input; ``tta`` averages it with the mirror image's."""
        items, _ = as_list(inputs)
        out = [self._predictor.scores(self.tensors(items[i:i + batch_size]).to(self.device), tta=tta).cpu()
               for i in range(0, len(items), batch_size)]
        if not out:
            raise InputError("no inputs given")
        return torch.cat(out)

    def predict(self, inputs: Any, top_k: int = 5, tta: bool = False,
                batch_size: int = 32) -> Prediction | list[Prediction]:
        """Top-k classes of one input (-> a :class:`Prediction`) or of a list (-> a list).

        Inputs: file paths, PIL images, numpy arrays (``HW``/``HWC`` uint8), tensors (``CHW``
        uint8 or float in [0, 1]; ``NCHW`` for several) or encoded image bytes.
        ``tta``: average the softmax of the centre crop and its mirror image.
        """
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        _, single = as_list(inputs)
        probs = self.probabilities(inputs, tta, batch_size)
        values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
        results = [Prediction([(self.labels[j], float(v)) for v, j in zip(vs, ix.tolist())], ix.tolist())
                   for vs, ix in zip(values, indices)]
        return results[0] if single else results

    @torch.no_grad()
    def features(self, inputs: Any, layer: str = "fc7", batch_size: int = 32) -> torch.Tensor:
        """The ``layer`` activations (after its ReLU), flattened: ``(N, D)``, or ``(D,)`` for one input."""
        if layer not in TAPS:
            raise InputError(f"unknown layer {layer!r}; choose from {', '.join(TAPS)}")
        items, single = as_list(inputs)
        out = torch.cat([layer_features(self.model, self.tensors(items[i:i + batch_size]).to(self.device), layer).cpu()
                         for i in range(0, len(items), batch_size)])
        return out[0] if single else out


def load(source: str | os.PathLike | Mapping[str, Any], device: str | torch.device = "cpu") -> Classifier:
    """A :class:`Classifier` from ``source``:

    ``"torchvision"`` (torchvision's ImageNet weights), a checkpoint of this project, an
    export of ``alexnet export`` (``.safetensors``, ``.onnx``, TorchScript ``.pt``, an hf
    folder), a ``.pth`` state dict, or an in-memory checkpoint or state dict.
    ``device``: ``"cpu"`` (default), ``"cuda"``, ``"mps"`` or ``"auto"``.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    if isinstance(source, Mapping):
        return Classifier(from_object(source), device)
    return Classifier(load_pretrained(source), device)


def fit(config: TrainConfig | None = None, **overrides: Any) -> Path:
    """Train as ``alexnet train`` does; returns the run folder (checkpoints/best.pt inside).

    ``fit(data="digits", arch="alexnet_cifar", epochs=3, out="runs/d")`` or
    ``fit(TrainConfig(...))``; the keywords are ``TrainConfig``'s fields (``--help``'s flags,
    with underscores). A ``recipe`` fills only the fields given neither here nor in ``config``.
    """
    from .engine.config import apply_recipe
    from .engine.logging import log_to_stdout
    from .engine.train import fit as train

    log_to_stdout()  # the run's lines, as `alexnet train` shows them
    cfg = replace(config or TrainConfig(), **overrides)
    defaults = asdict(TrainConfig())
    explicit = {f.name for f in fields(TrainConfig) if asdict(cfg)[f.name] != defaults[f.name]} | set(overrides)
    return train(apply_recipe(cfg, explicit), explicit)


__all__ = ["Classifier", "Prediction", "TrainConfig", "fit", "load"]
