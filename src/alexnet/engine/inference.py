"""Inference on the fastest path a device offers, checked against eager PyTorch before it is used.

``optimize_for_inference(model, device, example_shape)`` returns a callable, batch -> logits:

* CPU: the model exported to ONNX and run by ONNX Runtime (the ``onnx`` extra), whose MLAS
  convolutions (blocked NCHWc layout, ReLU fused in) beat oneDNN's, for a few seconds of
  export. It is the fastest of the candidates that ``benchmarks/model_throughput.py
  --candidates`` compares (channels_last, ``torch.compile``, frozen TorchScript, fx's
  oneDNN pass, bf16 autocast, ``inference_mode``); the figures are in docs/performance.md,
  "Model throughput". ``torch.compile`` comes second but costs tens of seconds of compiling,
  and bf16 autocast is emulated, hence slower, on CPUs without bf16 units. Without the
  extra, ``auto`` runs eager PyTorch and says so in ``notes``.
* CUDA: ``channels_last`` + ``torch.compile``; ``amp="bf16"`` adds bf16 autocast (faster,
  but the logits then differ from fp32 by more than rounding).
* Anywhere else, or when the above cannot be built: eager PyTorch in ``inference_mode``
  (``channels_last`` on CPU and CUDA).

Before a fast path is accepted, it runs an example batch, and one a sample longer, and its
logits are compared with the eager model's; a path that fails to build, raises, or disagrees
is dropped with a warning for eager, which always works. The ONNX Runtime path holds a
*copy* of the weights taken at export: build it again after changing them.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..extras import available, check, install_hint, require
from ..models.onnx_file import OnnxModel, make_session
from ..errors import first_line
from .loop import autocast

BACKENDS = ("auto", "onnxruntime", "compile", "eager")
# Largest |fast - eager| accepted, relative to max(1, max |eager logit|). fp32 paths differ
# from eager only in the order of their sums (~1e-6 relative here); bf16 keeps 8 mantissa bits.
TOLERANCE = {"off": 1e-4, "bf16": 5e-2, "fp16": 1e-2}


@dataclass
class InferenceFn:
    """``fn(images) -> logits`` (float32, on ``device``); ``backend`` says which path runs.

    Images of another ``(C, H, W)`` than the example's go through the eager model, as does
    every call after the fast path raised once (with a warning).
    """

    model: nn.Module
    device: torch.device
    input_shape: tuple[int, ...]  # (C, H, W) the fast path was built for
    backend: str
    amp: str = "off"
    notes: list[str] = field(default_factory=list)  # why faster paths were not taken
    _fast: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, torch.float32, non_blocking=True)
        if self._fast is not None and tuple(images.shape[1:]) == self.input_shape and len(images):
            try:
                return self._fast(images)
            except Exception as e:  # noqa: BLE001 - any failure of the fast path falls back to eager
                warnings.warn(f"inference: {self.backend} failed ({e!r}); using eager PyTorch from now on")
                self.notes.append(f"{self.backend} failed at run time: {e!r}")
                self._fast, self.backend = None, "eager"
        return self.eager(images)

    def eager(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, torch.float32, non_blocking=True)
        if self.device.type in ("cpu", "cuda"):
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.model(images).float()


def optimize_for_inference(
    model: nn.Module,
    device: torch.device | str,
    example_shape: tuple[int, int, int, int],
    *,
    backend: str = "auto",
    amp: str = "off",
) -> InferenceFn:
    """The fastest checked way to run ``model`` for inference on ``device``.

    ``example_shape`` is ``(N, C, H, W)``: ``C, H, W`` are fixed for the fast path, the batch
    size may vary. The model is put in eval mode, moved to ``device`` and, on CPU and CUDA,
    converted to ``channels_last`` in place (the same values in another memory layout).
    ``backend``: ``auto`` (onnxruntime on CPU, compile on CUDA), or one of them explicitly,
    or ``eager``; a backend that cannot be used falls back to eager with a warning.
    ``amp`` (``off``, ``bf16``, ``fp16``) applies to the CUDA paths only.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if amp not in TOLERANCE:
        raise ValueError(f"amp must be one of {tuple(TOLERANCE)}, got {amp!r}")
    device = torch.device(device)
    if device.type == "cpu":
        amp = "off"  # bf16 on CPUs without bf16 units is emulated, and slower (docs/performance.md)
    model.eval().to(device)
    if device.type in ("cpu", "cuda"):
        model.to(memory_format=torch.channels_last)
    shape = tuple(int(s) for s in example_shape)
    if isinstance(model, OnnxModel):  # an exported ONNX file already runs in ONNX Runtime
        return InferenceFn(model, device, shape[1:], "onnxruntime")
    fn = InferenceFn(model, device, shape[1:], "eager", amp)
    if backend == "auto":
        backend = {"cpu": "onnxruntime", "cuda": "compile"}.get(device.type, "eager")
        if backend == "onnxruntime" and not (available("onnx") and available("onnxruntime")):
            # An extra the user chose not to install: a note, not a warning on every run.
            fn.notes.append(f"onnxruntime: not installed ({install_hint('onnxruntime')})")
            backend = "eager"
    if backend == "eager":
        return fn

    example = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    # The example, and one more image: a path must take any batch size.
    longer = torch.cat([example, example[:1]])
    reference = fn.eager(longer)
    bound = TOLERANCE[amp] * max(1.0, reference.abs().max().item())
    try:
        build = {"onnxruntime": _onnxruntime, "compile": _compiled}[backend]
        fast = build(model, device, example, amp)
        for batch in (example, longer):
            error = (fast(batch).float() - reference[: len(batch)]).abs().max().item()
            if not error <= bound:  # also catches NaN
                raise RuntimeError(f"logits differ from eager by {error:.3g} (allowed {bound:.3g})")
    except Exception as e:  # noqa: BLE001 - any failure means: use eager
        reason = first_line(e)  # the exporter's messages run to pages
        warnings.warn(f"inference: {backend} not used ({reason}); using eager PyTorch")
        fn.notes.append(f"{backend}: {reason}")
        return fn
    fn._fast, fn.backend = fast, backend
    return fn



def _onnxruntime(model: nn.Module, device: torch.device, example: torch.Tensor, amp: str) -> Callable:
    if device.type != "cpu":
        raise RuntimeError("the onnxruntime path runs on the CPU only")
    check("the onnxruntime path", "onnx", "onnxruntime")
    session = make_session(export_onnx(model, example).SerializeToString(), device)

    def run(images: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(None, {"images": images.detach().contiguous().numpy()})
        return torch.from_numpy(logits)

    return run


def export_onnx(model: nn.Module, example: torch.Tensor, opset: int | None = None):
    """``model`` as an ``onnx.ModelProto``: input ``images`` (batch, C, H, W) with C, H, W of
    ``example`` and a free batch size, output ``logits``. Every variant exports: adaptive
    pooling becomes the fixed op it computes at this size (``_fixed_adaptive_pools``)."""
    onnx = require("onnx", "ONNX export")

    buffer = io.BytesIO()
    # The TorchScript-based exporter (onnx needed, onnxscript not) with every shape fixed to
    # the example's: shapes computed in forward (the shape checks, cuda-convnet's padding)
    # become constants, which a dynamic batch axis would spoil (adaptive pooling then fails
    # to export). Its deprecation and tracer warnings say nothing useful here.
    kwargs = {"opset_version": opset} if opset else {}
    with warnings.catch_warnings(), torch.no_grad(), _fixed_adaptive_pools(model, example):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example.contiguous(),), buffer, dynamo=False,
                          input_names=["images"], output_names=["logits"], **kwargs)
    # Every op of these nets (conv, pool, LRN, Flatten, Gemm) works per image, so the batch
    # dimension can be made free afterwards; callers check two batch sizes against eager.
    graph = onnx.load_from_string(buffer.getvalue())
    for value in (*graph.graph.input, *graph.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.graph.value_info[:]  # intermediate shapes recorded for the example's batch
    _undo_shared_initializers(graph)
    return graph


def _undo_shared_initializers(graph) -> None:
    """Give each layer its own copy of a tensor the exporter shared between equal ones.

    Equal tensors (e.g. two bias vectors still all ones) become one initializer and an
    ``Identity`` node per other user; quantizers then miss those biases and the weights
    no longer carry their layer's name.
    """
    inits = {t.name: t for t in graph.graph.initializer}
    for node in list(graph.graph.node):
        if node.op_type == "Identity" and node.input[0] in inits:
            copy_ = graph.graph.initializer.add()
            copy_.CopyFrom(inits[node.input[0]])
            copy_.name = node.output[0]
            graph.graph.node.remove(node)


@contextlib.contextmanager
def _fixed_adaptive_pools(model: nn.Module, example: torch.Tensor):
    """Swap each AdaptiveAvgPool2d for the fixed op it amounts to at the example's size.

    The exporter needs the input size of an adaptive pool, and loses it when a shape is
    computed in forward (``CeilConv2d``'s padding); it cannot export sizes that do not
    divide (pool5 of 1x1 or 7x7 pooled to 6x6). At the variant's own size the pool is the
    identity; a divisible size is a plain average pool, any other an averaging matrix per
    axis. The swap is undone on leaving.
    """
    sizes: dict[str, tuple] = {}
    pools = {name: m for name, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    hooks = [
        m.register_forward_hook(lambda _m, inp, out, name=name: sizes.__setitem__(name, (inp[0].shape[-2:], out.shape[-2:])))
        for name, m in pools.items()
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    swapped = []
    for name, (size_in, size_out) in sizes.items():
        if size_in == size_out:
            fixed: nn.Module = nn.Identity()
        elif all(i % o == 0 for i, o in zip(size_in, size_out)):
            kernel = tuple(i // o for i, o in zip(size_in, size_out))
            fixed = nn.AvgPool2d(kernel, kernel)
        else:
            fixed = _AveragingMatrices(*size_in, *size_out).to(example.device)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        swapped.append((parent, attr, getattr(parent, attr)))
        setattr(parent, attr, fixed)
    try:
        yield
    finally:
        for parent, attr, original in swapped:
            setattr(parent, attr, original)


class _AveragingMatrices(nn.Module):
    """Adaptive average pooling at fixed sizes as two matmuls: ``(rows @ x) @ cols.T``.

    Output cell i of an axis averages input cells floor(i * n / m) .. ceil((i + 1) * n / m) - 1,
    exactly as ``adaptive_avg_pool2d`` does.
    """

    def __init__(self, h_in: int, w_in: int, h_out: int, w_out: int) -> None:
        super().__init__()
        self.register_buffer("rows", self._matrix(h_in, h_out))
        self.register_buffer("cols", self._matrix(w_in, w_out))

    @staticmethod
    def _matrix(n: int, m: int) -> torch.Tensor:
        a = torch.zeros(m, n)
        for i in range(m):
            start, end = (i * n) // m, -(-(i + 1) * n // m)
            a[i, start:end] = 1.0 / (end - start)
        return a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols.t())


def _compiled(model: nn.Module, device: torch.device, example: torch.Tensor, amp: str) -> Callable:
    compiled = torch.compile(model)

    def run(images: torch.Tensor) -> torch.Tensor:
        if device.type in ("cpu", "cuda"):
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(device, amp):
            return compiled(images).float()

    return run


__all__ = ["BACKENDS", "InferenceFn", "export_onnx", "optimize_for_inference"]
