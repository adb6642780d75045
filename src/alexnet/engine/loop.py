"""The training and evaluation passes, as plain functions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


@dataclass
class EvalResult:
    loss: float
    top1: float  # accuracy in [0, 1]
    top5: float  # accuracy at min(5, classes)
    images: int

    def as_dict(self) -> dict[str, float]:
        return {
            "loss": self.loss,
            "top1_acc": self.top1,
            "top5_acc": self.top5,
            "top1_err": 1.0 - self.top1,
            "top5_err": 1.0 - self.top5,
            "images": self.images,
        }


def correct_topk(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top k logits, for each k (kept on device)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices  # (N, maxk)
    hit = top == target[:, None]
    return [hit[:, : min(k, maxk)].any(dim=1).sum() for k in ks]


def train_one_epoch(
    model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device
) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, top-1 accuracy) over the epoch.

    Sums stay on the device, so the loop never waits for the GPU until the epoch ends.
    """
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for images, target in loader:
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        logits = model(images)
        loss = F.cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(target)
        correct += (logits.detach().argmax(1) == target).sum()
        seen += len(target)
    if seen == 0:
        raise RuntimeError("the training loader yielded no batch (fewer images than --batch-size?)")
    return loss_sum.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> EvalResult:
    """Mean cross-entropy, top-1 and top-5 accuracy over ``loader`` (model in eval mode)."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    c1 = torch.zeros((), device=device, dtype=torch.long)
    c5 = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for images, target in loader:
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        logits = model(images).float()
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        k1, k5 = correct_topk(logits, target)
        c1 += k1
        c5 += k5
        seen += len(target)
    if seen == 0:
        raise RuntimeError("nothing to evaluate: the split is empty")
    return EvalResult(loss_sum.item() / seen, c1.item() / seen, c5.item() / seen, seen)
