"""Where a model is right and wrong on a split: per-image probabilities, the confusion
matrix, per-class precision / recall / F1, the most confused pairs, the telling mistakes."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.loading import Indexed, Transformed, collate
from ..data.transforms import Preprocess, eval_transform, ten_crop_transform
from ..engine.loop import mean_softmax
from ..errors import AlexNetError
from ..extras import require

VIEWS = ("centre", "flip", "ten-crop")  # centre crop; it and its mirror; the paper's ten views


@dataclass
class Predictions:
    """A model's softmax over one split: ``probs (N, C)``, true ``labels (N,)`` and each
    row's ``index`` into the split (unreadable images are left out, so they may skip)."""

    probs: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    class_names: list[str]
    skipped: int = 0

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        """The probability of the predicted class."""
        return self.probs.max(1)

    @property
    def top1(self) -> float:
        return float((self.predicted == self.labels).mean())

    def topk(self, k: int) -> float:
        k = min(k, self.probs.shape[1])
        top = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]
        return float((top == self.labels[:, None]).any(1).mean())

    @property
    def loss(self) -> float:
        p = self.probs[np.arange(len(self.labels)), self.labels]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())



def _view_transform(preprocess: Preprocess, views: str):
    if views not in VIEWS:
        raise AlexNetError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
    return ten_crop_transform(preprocess) if views == "ten-crop" else eval_transform(preprocess)


@torch.no_grad()
def predict_split(model: torch.nn.Module, dataset: Dataset, preprocess: Preprocess, class_names: list[str],
                  device: torch.device, batch_size: int = 128, workers: int = 0, views: str = "centre") -> Predictions:
    """The ``mean_softmax`` over ``views`` of every image of ``dataset`` (``(PIL image, label)`` items)."""
    loader = DataLoader(Indexed(Transformed(dataset, _view_transform(preprocess, views))),
                        batch_size=max(1, batch_size // 10) if views == "ten-crop" else batch_size,
                        num_workers=workers, collate_fn=collate)
    model = model.to(device).eval()
    probs, labels, index = [], [], []
    for batch in loader:  # unreadable images are left out, and counted below
        if batch.images is None:
            continue
        x, y, i = batch.images.to(device), batch.target, batch.index
        if views == "flip":  # (B, 3, H, W) -> the image and its mirror: (B, 2, 3, H, W)
            x = torch.stack([x, x.flip(-1)], dim=1)
        n_views = x.shape[1] if x.ndim == 5 else 1  # ten-crop: (B, 10, 3, H, W)
        p = mean_softmax(model(x.flatten(0, 1) if n_views > 1 else x), n_views)
        probs.append(p.cpu().numpy())
        labels.append(y.numpy())
        index.append(i.numpy())
    if not probs:
        raise AlexNetError("nothing to evaluate: the split is empty or none of its images could be read")
    n = sum(len(b) for b in labels)
    return Predictions(np.concatenate(probs), np.concatenate(labels), np.concatenate(index), list(class_names),
                       len(dataset) - n)


def confusion(pred: Predictions) -> np.ndarray:
    """Counts ``(C, C)``: row = true class, column = predicted class."""
    c = len(pred.class_names)
    return np.bincount(pred.labels * c + pred.predicted, minlength=c * c).reshape(c, c)


def normalise_rows(counts: np.ndarray) -> np.ndarray:
    """Each true class's row as fractions of its images (a class with no images stays 0)."""
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, float), where=totals > 0)


@dataclass
class ClassRow:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def per_class(pred: Predictions) -> list[ClassRow]:
    """Precision, recall, F1 and support of every class, by ``sklearn.metrics``."""
    metrics = require("sklearn.metrics", "the per-class table")
    p, r, f, s = metrics.precision_recall_fscore_support(pred.labels, pred.predicted, labels=range(len(pred.class_names)),
                                                 zero_division=0)
    return [ClassRow(n, float(a), float(b), float(c), int(d)) for n, a, b, c, d in zip(pred.class_names, p, r, f, s)]


def write_per_class_csv(rows: list[ClassRow], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support"])
        w.writerows([r.name, f"{r.precision:.6f}", f"{r.recall:.6f}", f"{r.f1:.6f}", r.support] for r in rows)
    return path


@dataclass
class Pair:
    true: str
    predicted: str
    count: int
    fraction: float  # of the true class's images


def confused_pairs(pred: Predictions, n: int = 20) -> list[Pair]:
    """The ``n`` most frequent (true, predicted) mistakes, most frequent first."""
    counts = confusion(pred)
    rates = normalise_rows(counts)
    np.fill_diagonal(counts, 0)
    order = np.argsort(-counts, axis=None, kind="stable")[:n]
    pairs = [np.unravel_index(k, counts.shape) for k in order]
    names = pred.class_names
    return [Pair(names[t], names[p], int(counts[t, p]), float(rates[t, p])) for t, p in pairs if counts[t, p] > 0]


def confident_mistakes(pred: Predictions, n: int = 16) -> np.ndarray:
    """Rows of the ``n`` wrong answers given with the highest confidence."""
    wrong = np.flatnonzero(pred.predicted != pred.labels)
    return wrong[np.argsort(-pred.confidence[wrong], kind="stable")][:n]


def unsure_correct(pred: Predictions, n: int = 16) -> np.ndarray:
    """Rows of the ``n`` right answers given with the lowest confidence."""
    right = np.flatnonzero(pred.predicted == pred.labels)
    return right[np.argsort(pred.confidence[right], kind="stable")][:n]
