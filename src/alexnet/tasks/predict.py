"""Class predictions for image files, from one self-describing file and nothing else.

The model comes from a checkpoint of this project, from ``--weights`` (torchvision's
ImageNet weights, a state dict, a safetensors file), or from a classifier that
``features --classifier`` fitted on AlexNet features; each brings its class names and
preprocessing.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import UnidentifiedImageError

from .. import checkpoint
from ..data.datasets import is_hidden
from ..data.images import is_image_file, load_rgb
from ..data.transforms import Preprocess, eval_transform, ten_crop_transform
from ..engine.inference import optimize_for_inference
from ..engine.loop import mean_softmax
from ..engine.memory import check_image_size
from ..errors import AlexNetError
from ..models import model_from_checkpoint
from ..models.pretrained import load_pretrained
from . import classifier as clf
from .evaluate import preprocess_of

FAST_PATH_IMAGES = 64  # from this many images on, predict uses engine/inference.py's fastest path


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability or score), best first
    error: str | None = None

    def as_dict(self, outputs: str = "probability") -> dict:
        return {"path": self.path, "top": [{"class": n, outputs: v} for n, v in self.top], "error": self.error}


@dataclass
class Predictor:
    model: torch.nn.Module  # images (N, 3, H, W) -> (N, classes) logits, or scores
    class_names: list[str]
    preprocess: Preprocess
    device: torch.device
    outputs: str = "probability"  # "probability": softmax of the model's logits; "score": the model's output as is
    description: str = ""

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device) -> "Predictor":
        if clf.is_classifier_file(path):
            return cls.from_classifier(path, device)
        ckpt = checkpoint.load(path)
        model = model_from_checkpoint(ckpt).to(device).eval()
        # Readable names where the classes are ids (ImageNet wnid folders: "tabby", not n02123045).
        names = ckpt.get("display_names") or ckpt["class_names"]
        preprocess = preprocess_of(ckpt, path)
        check_image_size(model.config, preprocess.crop, 32, device, training=False, flag=f"{path}: input size")
        return cls(model, list(names), preprocess, device,
                   description=f"{path} ({ckpt.get('arch', '?')})")

    @classmethod
    def from_weights(cls, spec: str, device: torch.device) -> "Predictor":
        if clf.is_classifier_file(spec):
            return cls.from_classifier(spec, device)
        p = load_pretrained(spec)
        return cls(p.model.to(device).eval(), p.labels, p.preprocess, device, description=p.description)

    @classmethod
    def from_classifier(cls, path: str | Path, device: torch.device) -> "Predictor":
        saved = clf.load(path)
        try:
            backbone = load_pretrained(saved.weights).model
        except AlexNetError as e:  # the weights moved or were deleted since the classifier was fitted
            raise clf.ClassifierError(f"{path}: cannot load the weights it was fitted on: {e}") from None
        model = clf.FeatureClassifier(backbone, saved.layer, saved.head).to(device).eval()
        return cls(model, saved.class_names, saved.preprocess, device, saved.head.outputs,
                   f"{path} ({saved.kind} on {saved.layer} of {saved.weights_description})")

    @torch.no_grad()
    def predict(self, paths: Sequence[str | Path], top_k: int = 5, batch_size: int = 32,
                ten_crop: bool = False, tta: bool = False) -> list[Prediction]:
        """Top-k classes per image; an unreadable image gets an error, the rest still run.

        ``ten_crop``: the paper's test, the mean softmax (or score) of 10 views per image:
        the four corner crops and the centre crop, and their mirror images. ``tta``: the
        mean of two views, the centre crop and its mirror image.
        """
        if ten_crop and tta:
            raise AlexNetError("--tta and --ten-crop both average views; --ten-crop already holds the mirror images")
        transform = ten_crop_transform(self.preprocess) if ten_crop else eval_transform(self.preprocess)
        if ten_crop:
            batch_size = max(1, batch_size // 10)  # ten views per image: the same memory per batch
        k = min(top_k, len(self.class_names))
        results: dict[int, Prediction] = {}
        model = self.model
        if len(paths) >= FAST_PATH_IMAGES:  # building the fast path costs seconds: worth it for many images
            size, views = self.preprocess.crop, 10 if ten_crop else 2 if tta else 1
            model = optimize_for_inference(self.model, self.device, (batch_size * views, 3, size, size))
        batch: list[tuple[int, torch.Tensor]] = []

        def flush() -> None:
            x = torch.stack([t for _, t in batch]).to(self.device)
            out = self.scores(x, model, tta).cpu()
            values, indices = out.topk(k, dim=1)
            for (i, _), v, ix in zip(batch, values, indices):
                results[i] = Prediction(str(paths[i]), [(self.class_names[j], float(p)) for p, j in zip(v, ix)])
            batch.clear()

        for i, path in enumerate(paths):
            try:
                batch.append((i, transform(load_rgb(path))))
            except (OSError, UnidentifiedImageError, ValueError, AlexNetError) as e:
                # data.images names the file in its own errors; the path is printed beside the error anyway
                reason = getattr(e, "reason", None) or str(e)
                results[i] = Prediction(str(path), [], error=f"cannot read image: {reason}")
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        return [results[i] for i in range(len(paths))]

    def explain(self, paths: Sequence[str | Path], out_dir: str | Path) -> list[tuple[str, Path | str]]:
        """A Grad-CAM heat map at conv5 over each image, titled with the top-1 class and its
        probability, as ``out_dir/NAME.gradcam.png``; returns (image, PNG or error) pairs."""
        from .gradcam import explain_files

        return explain_files(self, paths, out_dir)

    @torch.no_grad()
    def scores(self, images: torch.Tensor, model=None, tta: bool = False) -> torch.Tensor:
        """``(N, 3, H, W)``, or ``(N, V, 3, H, W)`` views, -> ``(N, classes)``: the views'
        ``mean_softmax`` (an SVM's scores: their mean); ``tta`` adds each image's mirror image
        as a second view."""
        model = model or self.model
        if tta and images.ndim == 4:
            images = torch.stack([images, images.flip(-1)], dim=1)
        views = images.shape[1] if images.ndim == 5 else 1
        out = model(images.flatten(0, 1) if views > 1 else images).float()
        if self.outputs == "probability":
            return mean_softmax(out, views)
        return out.view(len(images), views, -1).mean(dim=1)


def gather_images(items: Sequence[str]) -> tuple[list[str], list[Prediction]]:
    """Image files named by ``items``: files as given, folders searched recursively for image
    files, and glob patterns (``*``, ``?``, ``[...]``, ``**``) expanded here, so that quoted
    patterns work as on any shell. Items that name nothing come back as errors."""
    found: list[str] = []
    problems: list[Prediction] = []
    for item in items:
        if os.path.isfile(item):
            found.append(item)
        elif os.path.isdir(item):
            known = len(problems)
            images = _images_under(item, problems)
            found += images
            if not images and len(problems) == known:
                problems.append(Prediction(item, [], error="folder holds no image files"))
        elif glob.has_magic(item):
            matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            images = [m for m in matches if _file_or_link(m) and is_image_file(m)]
            images += [f for m in matches if os.path.isdir(m) for f in _images_under(m, problems)]
            found += images
            if not images:
                problems.append(Prediction(item, [], error="pattern matches no image files"))
        else:
            problems.append(Prediction(item, [], error="no such file or folder"))
    return list(dict.fromkeys(found)), problems  # a file named twice is predicted once


def _images_under(folder: str, problems: list[Prediction]) -> list[str]:
    """Image files under ``folder``: symlinked folders followed, as ``train`` does, each real
    folder once (a link loop ends); hidden and system folders (.ipynb_checkpoints,
    __MACOSX) skipped. A link that leads nowhere is kept, so that it is reported as an image
    that cannot be read; a folder that cannot be listed is added to ``problems``."""
    images: list[str] = []
    seen: set[str] = set()
    stack = [folder]
    while stack:
        top = stack.pop()
        real = os.path.realpath(top)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(top))
        except OSError as e:
            problems.append(Prediction(top, [], error=f"cannot read folder: {e.strerror}"))
            continue
        for e in entries:
            if is_hidden(e.name):
                continue
            if e.is_dir():
                stack.append(e.path)
            elif is_image_file(e.name) and _file_or_link(e.path):
                images.append(e.path)
    return sorted(images)


def _file_or_link(path: str) -> bool:
    """A file, or a link that is not to a folder: one that leads nowhere is read, and reported."""
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.isdir(path))
