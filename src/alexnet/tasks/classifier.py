"""A scikit-learn classifier on AlexNet features, saved without pickle.

``features --classifier`` fits one of three pipelines on the training features, each
starting with a ``StandardScaler``:

* ``logreg``: multinomial logistic regression (probabilities);
* ``svm``: a linear SVM, ``LinearSVC`` (decision scores, not probabilities);
* ``mlp``: one hidden layer of 256 ReLU units, ``MLPClassifier`` (probabilities).

All three are, once fitted, standardisation followed by linear layers with ReLUs between,
so the file stores exactly those arrays (``.safetensors``, tensors plus string metadata)
and prediction rebuilds them as a small torch module. Loading a classifier file therefore
runs no code, unlike a joblib or pickle file, and needs no particular scikit-learn version.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import Preprocess
from ..errors import AlexNetError, first_line
from ..extras import require
from ..models import AlexNet
from ..models.portable import read_safetensors, safetensors_format
from ..models.pretrained import Pretrained
from .features import FeatureSet, layer_features

KINDS = ("logreg", "svm", "mlp")
CLASSIFIER_FORMAT = "alexnet.classifier"  # the metadata marker of `features --classifier` files
USAGE = "alexnet predict --classifier FILE"  # in the file, so that `--weights FILE` can point here
VERSION = 1
MLP_HIDDEN = 256  # the one hidden layer of the transfer-learning documents' MLP


class ClassifierError(AlexNetError):
    """A classifier file that cannot be used, or features it does not fit."""


def make_pipeline(kind: str, C: float = 1.0, seed: int = 0):
    """An unfitted scikit-learn pipeline: StandardScaler, then the ``kind`` classifier."""
    require("sklearn", "a classifier on features (--classifier)")
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "logreg":
        clf = LogisticRegression(C=C, max_iter=1000)
    elif kind == "svm":
        clf = LinearSVC(C=C, max_iter=5000, random_state=seed)
    elif kind == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(MLP_HIDDEN,), activation="relu", max_iter=300, random_state=seed)
    else:
        raise ClassifierError(f"unknown classifier {kind!r}; choose from {', '.join(KINDS)}")
    return sk_pipeline(StandardScaler(), clf)


@dataclass
class Fitted:
    kind: str
    pipeline: Any  # the scikit-learn pipeline
    class_names: list[str]  # of the pipeline's outputs, in order
    metrics: dict[str, float] = field(default_factory=dict)  # "val_accuracy", "test_accuracy"
    notes: list[str] = field(default_factory=list)  # e.g. a convergence warning, one line each


def fit(features: FeatureSet, kind: str, C: float = 1.0, seed: int = 0) -> Fitted:
    """Fit on the train split; accuracy on every other split the features have."""
    require("sklearn", "a classifier on features (--classifier)")
    from sklearn.exceptions import ConvergenceWarning

    x, y = features.split("train")
    if len(np.unique(y)) < 2:
        raise ClassifierError("the training split has fewer than two classes; a classifier needs at least two")
    pipeline = make_pipeline(kind, C, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pipeline.fit(x, y)
    # scikit-learn repeats a multi-line ConvergenceWarning; one line says it. Others pass through.
    notes = [f"{kind} did not converge: {first_line(str(w.message))}" for w in caught
             if issubclass(w.category, ConvergenceWarning)][:1]
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    names = [features.class_names[int(c)] for c in pipeline.classes_]
    metrics = {f"{s}_accuracy": float(pipeline.score(*features.split(s))) for s in features.splits if s != "train"}
    metrics["train_accuracy"] = float(pipeline.score(x, y))
    return Fitted(kind, pipeline, names, metrics, notes)


class ClassifierHead(nn.Module):
    """A fitted pipeline as torch: ``(x - mean) / scale``, then linear layers with ReLUs between.

    The output is ``(N, classes)``: logits whose softmax is scikit-learn's ``predict_proba``
    (``outputs == "probability"``), or the SVM's decision scores (``"score"``).
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]],
                 outputs: str):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("scale", scale.float())
        self.layers = nn.ModuleList()
        for weight, bias in layers:
            linear = nn.Linear(weight.shape[1], weight.shape[0])
            linear.weight.data.copy_(weight)
            linear.bias.data.copy_(bias)
            self.layers.append(linear)
        self.outputs = outputs

    @property
    def in_features(self) -> int:
        return self.mean.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.scale
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x

    @classmethod
    def from_sklearn(cls, pipeline) -> "ClassifierHead":
        scaler, clf = pipeline[0], pipeline[-1]
        if hasattr(clf, "coefs_"):  # MLPClassifier: weights are (in, out)
            layers = [(np.asarray(w).T, np.asarray(b)) for w, b in zip(clf.coefs_, clf.intercepts_)]
        else:
            layers = [(np.asarray(clf.coef_), np.atleast_1d(clf.intercept_))]
        outputs = "score" if clf.__class__.__name__ == "LinearSVC" else "probability"
        w, b = layers[-1]
        if w.shape[0] == 1:
            # Two classes: scikit-learn keeps one output z for the second class. Logistic
            # outputs become the logits (0, z), whose softmax is (1 - sigmoid(z), sigmoid(z));
            # SVM scores become (-z, z), so either way the larger one is the predicted class.
            sign = -1.0 if outputs == "score" else 0.0
            layers[-1] = (np.concatenate([sign * w, w]), np.concatenate([sign * b, b]))
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        return cls(as_t(scaler.mean_), as_t(scaler.scale_), [(as_t(w), as_t(b)) for w, b in layers], outputs)


class FeatureClassifier(nn.Module):
    """Images -> AlexNet ``layer`` features -> a :class:`ClassifierHead`."""

    def __init__(self, backbone: AlexNet, layer: str, head: ClassifierHead):
        super().__init__()
        self.backbone, self.layer, self.head = backbone, layer, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = layer_features(self.backbone, images, self.layer)
        if feats.shape[1] != self.head.in_features:
            raise ClassifierError(
                f"the classifier was fitted on {self.head.in_features} {self.layer} features per image but these "
                f"weights and image size give {feats.shape[1]}; use the weights it was fitted with"
            )
        return self.head(feats)


@dataclass
class SavedClassifier:
    """Everything ``predict --classifier`` needs: the head and how to make its input."""

    head: ClassifierHead
    kind: str
    layer: str
    weights: str  # a --weights value: "torchvision" or an absolute path
    weights_description: str
    class_names: list[str]
    preprocess: Preprocess
    metrics: dict[str, float]


def package(fitted: Fitted, pretrained: Pretrained, layer: str) -> SavedClassifier:
    """A fitted pipeline with what prediction needs from the weights it was fitted on."""
    return SavedClassifier(ClassifierHead.from_sklearn(fitted.pipeline), fitted.kind, layer, pretrained.spec,
                           pretrained.description, fitted.class_names, pretrained.preprocess, fitted.metrics)


def save(path: str | os.PathLike, saved: SavedClassifier) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"scaler.mean": saved.head.mean, "scaler.scale": saved.head.scale}
    for i, layer in enumerate(saved.head.layers):
        tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = layer.weight.data, layer.bias.data
    preprocess = saved.preprocess.to_dict()
    if (mean_image := preprocess.pop("mean_image")) is not None:
        tensors["preprocess.mean_image"] = mean_image
    metadata = {
        "format": CLASSIFIER_FORMAT, "version": str(VERSION), "usage": USAGE, "kind": saved.kind, "outputs": saved.head.outputs,
        "layer": saved.layer, "weights": saved.weights, "weights_description": saved.weights_description,
        "class_names": json.dumps(saved.class_names), "preprocess": json.dumps(preprocess),
        "metrics": json.dumps(saved.metrics),
    }
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def is_classifier_file(path: str | os.PathLike) -> bool:
    """True for a file written by :func:`save` (checked by its metadata, not its name)."""
    path = Path(path)
    # anything unreadable is not ours; the caller reports it as it would any file
    return path.suffix == ".safetensors" and path.is_file() and safetensors_format(path) == CLASSIFIER_FORMAT


def load(path: str | os.PathLike) -> SavedClassifier:
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{path}: no such file")
    tensors, meta = read_safetensors(path)
    if meta.get("format") != CLASSIFIER_FORMAT:
        raise ClassifierError(f"{path}: not a classifier saved by `alexnet features --classifier`")
    if int(meta.get("version", 0)) > VERSION:
        raise ClassifierError(f"{path}: classifier version {meta['version']} is newer than this alexnet "
                              f"understands ({VERSION})")
    try:
        n = len([k for k in tensors if k.startswith("layers.") and k.endswith(".weight")])
        layers = [(tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]) for i in range(n)]
        head = ClassifierHead(tensors["scaler.mean"], tensors["scaler.scale"], layers, meta["outputs"])
        preprocess = Preprocess.from_dict({**json.loads(meta["preprocess"]),
                                           "mean_image": tensors.get("preprocess.mean_image")})
        return SavedClassifier(head, meta["kind"], meta["layer"], meta["weights"], meta.get("weights_description", ""),
                               json.loads(meta["class_names"]), preprocess, json.loads(meta.get("metrics", "{}")))
    except (KeyError, ValueError, TypeError) as e:
        raise ClassifierError(f"{path}: classifier file is incomplete or damaged ({type(e).__name__}: {e})") from None
