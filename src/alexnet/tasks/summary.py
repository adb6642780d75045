"""A layer table in the spirit of Keras' ``model.summary()``, with multiply-accumulates.

Parameters are counted as Keras counts them: BatchNorm's running mean and variance
are "non-trainable parameters" (PyTorch keeps them as buffers), so the numbers match
the Keras and TensorFlow AlexNet documents line for line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# BatchNorm buffers that Keras reports as non-trainable weights (not num_batches_tracked).
_KERAS_STATS = ("running_mean", "running_var")


@dataclass
class Row:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass
class Summary:
    rows: list[Row]
    trainable: int
    non_trainable: int
    macs: int
    image_size: int

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates for one image (biases, norms and pools not counted)."""
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return output[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def summarize(model: nn.Module, image_size: int) -> Summary:
    """Run one ``image_size`` image through ``model`` on the CPU and tabulate its layers."""
    rows: list[Row] = []
    hooks = []

    def record(name: str):
        def fn(module, _inputs, output):
            own = sum(p.numel() for p in module.parameters(recurse=False))
            own += sum(b.numel() for n, b in module.named_buffers(recurse=False) if n in _KERAS_STATS)
            rows.append(Row(name, type(module).__name__, (None, *output.shape[1:]), own, _macs(module, output)))

        return fn

    for name, module in model.named_modules():
        # ReLUs are part of their layer, as in Keras' Conv2D(activation="relu").
        if name and not list(module.children()) and not isinstance(module, (nn.ReLU, nn.Identity)):
            hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(b.numel() for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] in _KERAS_STATS)
    return Summary(rows, trainable, frozen + stats, sum(r.macs for r in rows), image_size)


def format_summary(s: Summary, title: str = "") -> str:
    header = ("Layer", "Type", "Output shape", "Params", "MACs")
    body = [
        (r.name, r.kind, str(r.output_shape).replace("None", "N"), f"{r.params:,}", f"{r.macs:,}" if r.macs else "-")
        for r in s.rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    line = "  ".join(
        "{:<%d}" % w if i < 3 else "{:>%d}" % w for i, w in enumerate(widths)
    )
    rule = "=" * (sum(widths) + 2 * (len(widths) - 1))
    out = [title] if title else []
    out += [rule, line.format(*header), rule, *(line.format(*row) for row in body), rule]
    out += [
        f"Total params: {s.total:,}",
        f"Trainable params: {s.trainable:,}",
        f"Non-trainable params: {s.non_trainable:,}",
        f"Total MACs: {s.macs:,} ({s.macs / 1e9:.3f} G per {s.image_size}x{s.image_size} image)",
        rule,
    ]
    return "\n".join(out)
