"""The training and evaluation passes, as plain functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data.loading import sample_seed
from ..data.mixing import Mixing
from ..errors import AlexNetError
from .distributed import Dist, sum_across
from .optim import Schedule

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str):
    """The autocast context of ``amp`` (``off``, ``bf16``, ``fp16``) on ``device``: training,
    evaluation and inference all enter it through here."""
    return torch.autocast(device.type, dtype=AMP_DTYPES.get(amp), enabled=amp != "off")


@dataclass(frozen=True)
class Knobs:
    """How each step runs; chosen once per run.

    ``amp``, ``channels_last`` and ``compile`` are the speed choices (``tasks.bench`` times
    them); ``compile`` is applied by whoever builds what steps call (``train``'s ``_wrap``).
    """

    amp: str = "off"
    channels_last: bool = False
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None
    accumulate: int = 1  # chunks per batch, one forward and backward each, one optimizer step
    mixing: Mixing = Mixing()
    seed: int = 0  # with the step and the rank, seeds each batch's mixing
    rank: int = 0
    compile: bool = False

    def describe(self) -> str:
        """The speed choices in words: ``bf16 autocast + channels_last + torch.compile``."""
        parts = [f"{self.amp} autocast" if self.amp != "off" else "fp32"]
        return " + ".join(parts + ["channels_last"] * self.channels_last + ["torch.compile"] * self.compile)

    def to_device(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last and images.ndim == 4 else images


@dataclass
class Totals:
    """Running sums of an epoch, kept on the device (no sync per step) and in checkpoints."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> "Totals":
        return cls(torch.zeros((), device=device, dtype=torch.float64), torch.zeros((), device=device, dtype=torch.float64))

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum.item(), "correct": self.correct.item(), "seen": self.seen}

    @classmethod
    def from_state(cls, state: dict, device: torch.device) -> "Totals":
        t = cls.zeros(device)
        t.loss_sum += state["loss_sum"]
        t.correct += state["correct"]
        t.seen = state["seen"]
        return t


@dataclass
class Position:
    global_step: int = 0
    step_in_epoch: int = 0


@dataclass
class EvalResult:
    loss: float
    top1: float  # accuracy in [0, 1]
    top5: float  # accuracy at min(5, classes)
    images: int
    skipped: int = 0  # unreadable images left out

    def as_dict(self) -> dict[str, float]:
        return {
            "loss": self.loss,
            "top1_acc": self.top1,
            "top5_acc": self.top5,
            "top1_err": 1.0 - self.top1,
            "top5_err": 1.0 - self.top5,
            "images": self.images,
        }


def mean_softmax(logits: torch.Tensor, views: int = 1, log: bool = False) -> torch.Tensor:
    """``(N * views, C)`` logits, each image's views in a row, -> ``(N, C)``: the mean of the
    views' softmax probabilities, as the paper averages its ten crops ("averaging the
    predictions made by the network's softmax layer on the ten patches"). Evaluation,
    prediction and analysis all average views through here. ``log``: its logarithm, computed
    stably (logsumexp) for a loss, where a probability that underflows would give log(0).
    """
    classes = logits.shape[1]
    if not log:
        return logits.float().softmax(dim=1).view(-1, views, classes).mean(dim=1)
    log_probs = logits.float().log_softmax(dim=1)
    if views == 1:
        return log_probs
    return log_probs.view(-1, views, classes).logsumexp(dim=1) - math.log(views)


def correct_topk(scores: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top k scores, for each k (kept on device)."""
    maxk = min(max(ks), scores.shape[1])
    hit = scores.topk(maxk, dim=1).indices == target[:, None]
    return [hit[:, : min(k, maxk)].any(dim=1).sum() for k in ks]


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    knobs: Knobs,
    totals: Totals,
    position: Position,
    after_step: Callable[[torch.Tensor], bool] = lambda loss: False,
    on_skipped: Callable[[tuple[str, ...]], None] = lambda problems: None,
    ema: nn.Module | None = None,
) -> bool:
    """One pass over ``loader``, adding into ``totals``; returns True if ``after_step`` asked to stop.

    The learning rate is set from ``schedule`` before every step. ``after_step(loss)`` runs
    after each optimizer step (logging, mid-epoch checkpoints, Ctrl-C). Unreadable images
    the loader left out are passed to ``on_skipped``; a batch with none readable counts as
    a step (so a resumed epoch skips the same batches) but changes nothing. ``ema`` (an
    ``AveragedModel``) is updated after every optimizer step.
    """
    model.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for batch in loader:
        images, target = batch[0], batch[1]
        if len(batch) > 2 and batch[2]:
            on_skipped(batch[2])
        if images is None:
            position.global_step += 1
            position.step_in_epoch += 1
            continue
        schedule.apply(optimizer, position.global_step)
        images, target = knobs.to_device(images, device), target.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss, correct = _forward_backward(model, images, target, scaler, device, knobs, position.global_step)
        if knobs.clip_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, knobs.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update_parameters(model)
        totals.loss_sum += loss * len(target)
        totals.correct += correct
        totals.seen += len(target)
        position.global_step += 1
        position.step_in_epoch += 1
        if after_step(loss):
            return True
    return False


def _forward_backward(model: nn.Module, images: torch.Tensor, target: torch.Tensor, scaler: torch.amp.GradScaler,
                      device: torch.device, knobs: Knobs, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the batch's mean loss, in ``knobs.accumulate`` chunks; (mean loss, correct) detached.

    With MixUp or CutMix the loss is ``lam`` times the loss on the image's own label plus
    ``1 - lam`` times the loss on its partner's, and a prediction counts as correct when it
    names the label with the larger share.
    """
    partner, lam = target, 1.0
    if knobs.mixing.on:
        images, partner, lam = knobs.mixing(images, target, sample_seed(knobs.seed, step, knobs.rank))
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = knobs.accumulate
    for x, y, y2 in zip(images.chunk(n), target.chunk(n), partner.chunk(n)):  # views: memory format kept
        with autocast(device, knobs.amp):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, label_smoothing=knobs.label_smoothing)
        if lam < 1.0:
            loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y2, label_smoothing=knobs.label_smoothing)
        scaler.scale(loss * (len(y) / len(target)) if n > 1 else loss).backward()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == (y if lam >= 0.5 else y2)).sum()
    return loss_sum / len(target), correct


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device, knobs: Knobs = Knobs(), d: Dist | None = None
) -> EvalResult:
    """Mean cross-entropy, top-1 and top-5 accuracy over ``loader`` (model in eval mode).

    Batches of ``(N, V, 3, H, W)`` (ten-crop) are scored by :func:`mean_softmax` of the
    views. Under torchrun (``d``) each rank scores its shard and the sums are added across
    ranks.
    """
    if isinstance(model, nn.Module):  # else an inference function (engine/inference.py)
        model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    c1 = torch.zeros((), device=device, dtype=torch.float64)
    c5 = torch.zeros((), device=device, dtype=torch.float64)
    seen = torch.zeros((), device=device, dtype=torch.float64)
    skipped = 0
    for batch in loader:
        images, target = batch[0], batch[1]
        skipped += len(batch[2]) if len(batch) > 2 else 0
        if images is None:
            continue
        target = target.to(device, non_blocking=True)
        views = images.shape[1] if images.ndim == 5 else 1
        images = knobs.to_device(images.flatten(0, 1) if views > 1 else images, device)
        with autocast(device, knobs.amp):
            logits = model(images)
        log_probs = mean_softmax(logits, views, log=True)
        loss_sum += F.nll_loss(log_probs, target, reduction="sum").double()
        k1, k5 = correct_topk(log_probs, target)
        c1 += k1
        c5 += k5
        seen += len(target)
    if d is not None:
        loss_sum, c1, c5, seen = sum_across(d, loss_sum, c1, c5, seen)
    n = int(seen.item())
    if n == 0:
        raise AlexNetError("nothing to evaluate: the split is empty" + (f" ({skipped} unreadable images)" if skipped else ""))
    return EvalResult(loss_sum.item() / n, c1.item() / n, c5.item() / n, n, skipped)
