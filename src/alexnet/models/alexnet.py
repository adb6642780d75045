"""One AlexNet module for every variant; a variant is an :class:`AlexNetConfig`.

Layers carry the paper's names (``conv1``..``conv5``, ``fc6``..``fc8``), so freezing,
feature taps and weight surgery read like the paper. Every layer that a variant lacks
(a norm after conv3, a dropout) is an ``nn.Identity``, which keeps ``forward`` one
straight line for all variants. Device and dtype are the caller's business.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_LAYERS = ("fc6", "fc7", "fc8")
# Activations that `AlexNet.activations` can return, in forward order. "convK" and
# "fc6"/"fc7" are taken after their ReLU; "fc8" is the logits.
TAPS = (
    "conv1", "norm1", "pool1", "conv2", "norm2", "pool2",
    "conv3", "norm3", "conv4", "norm4", "conv5", "norm5", "pool5",
    "fc6", "fc7", "fc8",
)
NORMS = ("none", "lrn", "bn")
INITS = ("default", "paper", "kaiming")


@dataclass(frozen=True)
class AlexNetConfig:
    """Everything that tells one AlexNet variant from another.

    Stored whole in checkpoints, so a model rebuilds from its checkpoint alone.
    """

    widths: tuple[int, ...] = (96, 256, 384, 384, 256)  # filters of conv1..conv5
    groups: tuple[int, ...] = (1, 1, 1, 1, 1)  # 2 = the paper's two GPU towers
    conv1_kernel: int = 11
    conv1_stride: int = 4
    # int: symmetric zero padding. "ceil": cuda-convnet's rounding, output side
    # 1 + ceil((H - k) / stride), the last window overhanging the bottom/right edge;
    # gives 55x55 for both 224 (the paper) and 227 (Caffe, Keras) inputs.
    conv1_padding: int | str = 0
    norm: str = "none"  # "lrn" | "bn" | "none"
    norm_after: tuple[str, ...] = ()  # convs whose ReLU output is normalised
    # LRN's additive constant k in (k + alpha/n * sum x^2)^beta: the paper's 2; Caffe's
    # bvlc_alexnet ran with its LRN default of 1, so weights converted from it need 1.
    lrn_k: float = 2.0
    hidden: int = 4096  # width of fc6 and fc7
    pool5_size: int = 6  # adaptive average pool to this side before fc6 (a no-op at the native size)
    dropout: float = 0.5
    dropout_on: tuple[str, ...] = ("fc6", "fc7")  # layers whose *output* is dropped; torchvision: ("pool5", "fc6")
    # "paper": N(0, 0.01), biases 1 in conv2/4/5 and fc6/7; "kaiming": He normal up to fc7,
    # N(0, 0.01) for fc8, zero biases; "default": PyTorch's layer defaults (as torchvision).
    init: str = "default"
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        # Checkpoints and JSON hand lists back; keep tuples so configs compare and hash.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
            elif f.name in ("norm_after", "dropout_on") and isinstance(value, str):
                object.__setattr__(self, f.name, (value,))  # one layer given on the command line
        if not all(isinstance(v, tuple) and len(v) == 5 for v in (self.widths, self.groups)):
            raise ValueError("widths and groups need one entry per conv layer (5)")
        for name, width, group, fan_in in zip(CONV_LAYERS, self.widths, self.groups, (self.in_channels,) + self.widths[:-1]):
            if width % group or fan_in % group:
                raise ValueError(f"{name}: groups={group} must divide its {fan_in} inputs and {width} outputs")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if unknown := set(self.norm_after) - set(CONV_LAYERS):
            raise ValueError(f"norm_after names unknown layers {sorted(unknown)}; choose from {CONV_LAYERS}")
        if unknown := set(self.dropout_on) - {"pool5", "fc6", "fc7"}:
            raise ValueError(f"dropout_on names unknown layers {sorted(unknown)}; choose from pool5, fc6, fc7")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if not self.lrn_k > 0:
            raise ValueError(f"lrn_k must be positive, got {self.lrn_k}")
        if not (self.conv1_padding == "ceil" or isinstance(self.conv1_padding, int)):
            raise ValueError(f"conv1_padding must be an int or 'ceil', got {self.conv1_padding!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class CeilConv2d(nn.Conv2d):
    """A convolution that rounds its output size up, as cuda-convnet did.

    The paper's 224 input and 11x11/4 conv1 give (224 - 11) / 4 + 1 = 54.25 windows;
    cuda-convnet made that 55 by letting the last window overhang the image (zeros
    beyond the edge). We pad the bottom and right by exactly the overhang, so a 227
    input (Caffe's and Keras' choice) gets no padding and the same 55x55 output.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            pads += [0, _ceil_out(size, k, s) * s - s + k - size]  # F.pad wants (left, right, top, bottom)
        return super().forward(F.pad(x, pads))


def _ceil_out(size: int, kernel: int, stride: int) -> int:
    return 1 + max(0, math.ceil((size - kernel) / stride))


class AlexNet(nn.Module):
    """AlexNet in any of its variants, built from an :class:`AlexNetConfig`.

    Interface shared by all variants (the same as timm's):

    * ``forward_features(x)``: ``(N, 3, H, W)`` -> pool5 maps ``(N, C5, h, w)``.
    * ``forward_head(x, pre_logits=False)``: pool5 maps -> logits ``(N, num_classes)``,
      or the fc7 activations ``(N, hidden)`` with ``pre_logits=True``.
    * ``reset_classifier(num_classes)``: a new, freshly initialised fc8.
    * ``activations(x, layers)``: the outputs of any named layers (see ``TAPS``).

    Normalisation (LRN or BatchNorm) follows the ReLU of its conv, and max pooling
    (3x3, stride 2: the paper's overlapping pooling) follows conv1, conv2 and conv5.
    """

    def __init__(self, config: AlexNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        w, g = c.widths, c.groups
        if c.conv1_padding == "ceil":
            self.conv1 = CeilConv2d(c.in_channels, w[0], c.conv1_kernel, c.conv1_stride, groups=g[0])
        else:
            self.conv1 = nn.Conv2d(c.in_channels, w[0], c.conv1_kernel, c.conv1_stride, c.conv1_padding, groups=g[0])
        self.relu1 = nn.ReLU(inplace=True)
        self.norm1 = self._norm("conv1", w[0])
        self.pool1 = nn.MaxPool2d(3, 2)
        self.conv2 = nn.Conv2d(w[0], w[1], 5, padding=2, groups=g[1])
        self.relu2 = nn.ReLU(inplace=True)
        self.norm2 = self._norm("conv2", w[1])
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3 = nn.Conv2d(w[1], w[2], 3, padding=1, groups=g[2])
        self.relu3 = nn.ReLU(inplace=True)
        self.norm3 = self._norm("conv3", w[2])
        self.conv4 = nn.Conv2d(w[2], w[3], 3, padding=1, groups=g[3])
        self.relu4 = nn.ReLU(inplace=True)
        self.norm4 = self._norm("conv4", w[3])
        self.conv5 = nn.Conv2d(w[3], w[4], 3, padding=1, groups=g[4])
        self.relu5 = nn.ReLU(inplace=True)
        self.norm5 = self._norm("conv5", w[4])
        self.pool5 = nn.MaxPool2d(3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(c.pool5_size)
        self.drop5 = self._dropout("pool5")
        self.fc6 = nn.Linear(w[4] * c.pool5_size**2, c.hidden)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = self._dropout("fc6")
        self.fc7 = nn.Linear(c.hidden, c.hidden)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = self._dropout("fc7")
        self.fc8 = nn.Linear(c.hidden, c.num_classes)
        self.min_input_size = min_input_size(c)
        if c.init == "paper":
            self._paper_init()
        elif c.init == "kaiming":
            self._kaiming_init()

    def _norm(self, layer: str, channels: int) -> nn.Module:
        if layer not in self.config.norm_after or self.config.norm == "none":
            return nn.Identity()
        if self.config.norm == "bn":
            return nn.BatchNorm2d(channels)
        # torch divides alpha by size inside the sum, as cuda-convnet and Caffe do, so
        # these are the paper's k=2, n=5, alpha=1e-4, beta=0.75 as the original code ran them.
        return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=self.config.lrn_k)

    def _dropout(self, layer: str) -> nn.Module:
        if layer in self.config.dropout_on and self.config.dropout > 0:
            return nn.Dropout(self.config.dropout)
        return nn.Identity()

    def _paper_init(self) -> None:
        # Section 5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden
        # fc layers ("accelerates the early stages of learning"), 0 elsewhere.
        for name in CONV_LAYERS + FC_LAYERS:
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.constant_(layer.bias, 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0)

    def _kaiming_init(self) -> None:
        # Without normalisation layers, PyTorch's default init shrinks the signal layer
        # by layer and a from-scratch AlexNet sits near chance for several epochs; He
        # init keeps each ReLU layer's output variance at its input's.
        for name in CONV_LAYERS + ("fc6", "fc7"):
            nn.init.kaiming_normal_(getattr(self, name).weight, nonlinearity="relu")
            nn.init.zeros_(getattr(self, name).bias)
        self._init_fc8()

    def _init_fc8(self) -> None:
        if self.config.init in ("paper", "kaiming"):
            nn.init.normal_(self.fc8.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc8.bias)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input of shape (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"input {x.shape[-2]}x{x.shape[-1]} is smaller than this variant's minimum "
                f"{self.min_input_size}x{self.min_input_size}"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.pool1(self.norm1(self.relu1(self.conv1(x))))
        x = self.pool2(self.norm2(self.relu2(self.conv2(x))))
        x = self.norm3(self.relu3(self.conv3(x)))
        x = self.norm4(self.relu4(self.conv4(x)))
        x = self.pool5(self.norm5(self.relu5(self.conv5(x))))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop5(torch.flatten(self.avgpool(x), 1))
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        return x if pre_logits else self.fc8(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.fc8

    def reset_classifier(self, num_classes: int) -> None:
        """Replace fc8 with a new one for ``num_classes`` classes (on fc7's device and dtype)."""
        self.config = replace(self.config, num_classes=num_classes)
        old = self.fc8
        self.fc8 = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        self._init_fc8()

    def activations(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the named layers for input ``x``, stopping after the deepest one."""
        layers = list(dict.fromkeys(layers))
        if unknown := [n for n in layers if n not in TAPS]:
            raise ValueError(f"unknown layer(s) {unknown}; choose from {', '.join(TAPS)}")
        out: dict[str, torch.Tensor] = {}
        last = max(layers, key=TAPS.index)

        def hook(name: str):
            def fn(_module, _inputs, output):
                out[name] = output
                if name == last:
                    raise _StopForward

            return fn

        handles = [self._tap_module(n).register_forward_hook(hook(n)) for n in layers]
        try:
            self(x)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return {n: out[n] for n in layers}

    def _tap_module(self, name: str) -> nn.Module:
        # A conv or hidden fc layer is tapped after its ReLU (inplace, so the ReLU's
        # output is the value every later layer sees).
        if name in CONV_LAYERS or name in ("fc6", "fc7"):
            return getattr(self, "relu" + name.removeprefix("conv").removeprefix("fc"))
        return getattr(self, name)


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted activations are in."""


def spatial_sizes(config: AlexNetConfig, size: int) -> dict[str, int]:
    """Side of each stage's output for a square ``size`` input (0 where it collapses)."""
    c = config
    if c.conv1_padding == "ceil":
        s = _ceil_out(size, c.conv1_kernel, c.conv1_stride) if size >= 1 else 0
    else:
        s = max(0, (size + 2 * c.conv1_padding - c.conv1_kernel) // c.conv1_stride + 1)
    sizes = {"conv1": s}
    for pool, conv in (("pool1", "conv2"), ("pool2", "conv3")):
        s = max(0, (s - 3) // 2 + 1) if s >= 3 else 0
        sizes[pool] = s
        sizes[conv] = s  # convs 2-5 keep the side ("same" padding)
    sizes["conv4"] = sizes["conv5"] = s
    sizes["pool5"] = max(0, (s - 3) // 2 + 1) if s >= 3 else 0
    return sizes


def min_input_size(config: AlexNetConfig) -> int:
    """Smallest square input for which every pooling window fits."""
    size = 1
    while spatial_sizes(config, size)["pool5"] < 1:
        size += 1
    return size


__all__ = ["AlexNet", "AlexNetConfig", "CeilConv2d", "TAPS", "min_input_size", "spatial_sizes"]
