"""Optimizers and learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

SCHEDULES = ("constant", "step", "cosine", "onecycle", "plateau")


def param_groups(model: nn.Module, weight_decay: float, decay_bias_norm: bool,
                 backbone_lr_scale: float = 1.0, head: tuple[str, ...] = ("fc8",)) -> list[dict]:
    """One group; two when biases and norm-layer parameters are exempt from weight decay;
    and, with ``backbone_lr_scale`` != 1, each split again into the ``head`` layers (full
    learning rate) and the rest (``lr_scale``: the schedule's lr times the scale).

    Every parameter is in a group, also one frozen now (``requires_grad`` False): it has no
    gradient, so the optimizer leaves it alone until a fine-tuning round unfreezes it.
    """
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    split_head = backbone_lr_scale != 1.0
    groups: dict[tuple[bool, bool], list] = {}
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            exempt = not decay_bias_norm and (name == "bias" or isinstance(module, norm_types))
            in_head = split_head and module_name.split(".")[0] in head
            groups.setdefault((in_head, exempt), []).append(p)
    if decay_bias_norm and not split_head:
        return [{"params": groups[(False, False)], "weight_decay": weight_decay}]
    out = []
    for in_head in ((False, True) if split_head else (False,)):
        for exempt in ((False,) if decay_bias_norm else (False, True)):
            group = {"params": groups.get((in_head, exempt), []), "weight_decay": 0.0 if exempt else weight_decay}
            if split_head:
                group["lr_scale"] = 1.0 if in_head else backbone_lr_scale
            out.append(group)
    return out


class PaperSGD(torch.optim.Optimizer):
    """SGD with momentum in the paper's form (section 5):

        v <- momentum * v - weight_decay * lr * w - lr * grad
        w <- w + v

    ``torch.optim.SGD`` keeps the learning rate outside the velocity
    (``b <- momentum * b + grad + wd * w; w <- w - lr * b``). The two are identical while
    lr is constant; when lr drops, the paper's velocity still carries steps taken at the
    old rate and decays them over ~1/(1 - momentum) steps, while torch's rescales them at once.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            velocity = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocity.append(state["velocity"])
            lr, wd = group["lr"], group["weight_decay"]
            torch._foreach_mul_(velocity, group["momentum"])
            if wd:
                torch._foreach_add_(velocity, params, alpha=-wd * lr)
            torch._foreach_add_(velocity, [p.grad for p in params], alpha=-lr)
            torch._foreach_add_(params, velocity)
        return loss


def build_optimizer(
    model: nn.Module, lr: float, momentum: float, weight_decay: float, *,
    paper_momentum: bool = False, decay_bias_norm: bool = True, device: torch.device | None = None,
    backbone_lr_scale: float = 1.0, amp: str = "off", layers_join_later: bool = False,
    kind: str = "sgd", nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD (torch's, or the paper's form) or AdamW over ``param_groups``."""
    groups = param_groups(model, weight_decay, decay_bias_norm, backbone_lr_scale)
    if paper_momentum:
        return PaperSGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    # One fused kernel for all parameters (docs/performance.md), multi-tensor otherwise. Not
    # with fp16's grad scaler on the CPU, whose fused step does not skip overflowed steps;
    # nor when frozen layers join later (--unfreeze-schedule): a fused step cannot mix
    # parameters with and without optimizer state in one group.
    fused = device is not None and not layers_join_later and \
        (device.type == "cuda" or (device.type == "cpu" and amp != "fp16"))
    fast = {"fused": True} if fused else {"foreach": True}
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **fast)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, **fast)


@dataclass
class Schedule:
    """The learning rate at every step, and the paper's divide-by-10-on-plateau rule.

    ``lr(step)`` = base lr x warmup factor x the schedule's factor:

    * constant: 1;  step: ``gamma ** (epoch // step_epochs)``;
    * cosine: from 1 down to 0 over the steps after warmup;
    * onecycle: up linearly from 1/25 to 1 over the first 30% of the run, then cosine to 0;
    * plateau (the paper): divided by 10 each time the validation error has not improved for
      ``patience`` epochs, at most ``max_reductions`` times (``epoch_end``).

    Linear warmup (``warmup_steps``) ramps any of them up from ~0 to full.
    Its whole state is a few numbers, saved in checkpoints.
    """

    kind: str
    base_lr: float
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 0
    step_epochs: int = 30
    gamma: float = 0.1
    patience: int = 5
    max_reductions: int = 3
    # plateau state
    scale: float = 1.0
    best_error: float = math.inf
    bad_epochs: int = 0
    reductions: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.kind!r}")

    def lr(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        after = max(0, step - self.warmup_steps)
        span = max(1, self.total_steps - self.warmup_steps)
        if self.kind == "step":
            factor = self.gamma ** (step // self.steps_per_epoch // self.step_epochs)
        elif self.kind == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * min(1.0, after / span)))
        elif self.kind == "onecycle":
            up = 0.3 * self.total_steps
            if step < up:
                factor = 1 / 25 + (1 - 1 / 25) * step / up
            else:
                factor = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - up) / max(1, self.total_steps - up))))
        elif self.kind == "plateau":
            factor = self.scale
        else:
            factor = 1.0
        return self.base_lr * warm * factor

    def epoch_end(self, val_error: float) -> bool:
        """Plateau bookkeeping after an epoch; True when the rate was just divided by 10."""
        if self.kind != "plateau":
            return False
        if val_error < self.best_error - 1e-9:
            self.best_error, self.bad_epochs = val_error, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.reductions < self.max_reductions:
            self.scale /= 10
            self.reductions += 1
            self.bad_epochs = 0
            return True
        return False

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        lr = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # fine-tuning: pretrained layers slower

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ("scale", "best_error", "bad_epochs", "reductions")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
