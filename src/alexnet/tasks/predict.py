"""Class predictions for image files, from a checkpoint and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import UnidentifiedImageError

from .. import checkpoint
from ..data.images import load_rgb
from ..data.transforms import Preprocess, eval_transform
from ..models import AlexNet, model_from_checkpoint


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first
    error: str | None = None


@dataclass
class Predictor:
    model: AlexNet
    class_names: list[str]
    preprocess: Preprocess
    device: torch.device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device) -> "Predictor":
        ckpt = checkpoint.load(path)
        model = model_from_checkpoint(ckpt).to(device).eval()
        return cls(model, list(ckpt["class_names"]), Preprocess.from_dict(ckpt["preprocess"]), device)

    @torch.no_grad()
    def predict(self, paths: Sequence[str | Path], top_k: int = 5, batch_size: int = 32) -> list[Prediction]:
        """Top-k classes per image; an unreadable image gets an error, the rest still run."""
        transform = eval_transform(self.preprocess)
        k = min(top_k, len(self.class_names))
        results: dict[int, Prediction] = {}
        batch: list[tuple[int, torch.Tensor]] = []

        def flush() -> None:
            x = torch.stack([t for _, t in batch]).to(self.device)
            probs = self.model(x).float().softmax(dim=1).cpu()
            values, indices = probs.topk(k, dim=1)
            for (i, _), v, ix in zip(batch, values, indices):
                results[i] = Prediction(str(paths[i]), [(self.class_names[j], float(p)) for p, j in zip(v, ix)])
            batch.clear()

        for i, path in enumerate(paths):
            try:
                batch.append((i, transform(load_rgb(path))))
            except (OSError, UnidentifiedImageError, ValueError) as e:
                results[i] = Prediction(str(path), [], error=f"cannot read image: {e}")
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        return [results[i] for i in range(len(paths))]
