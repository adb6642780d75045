"""ONNX files as models: an ONNX Runtime session behind the ``nn.Module`` call interface.

An exported ``.onnx`` file (``alexnet export --format onnx``) carries the portable weights
file's metadata (``models.portable``) in its ``metadata_props``, so it describes itself like
a checkpoint. A float file is rebuilt into the PyTorch model where its initializers are the
state dict's tensors; an int8 file (its weights quantized) runs only as this session.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import first_line
from ..extras import require
from .weights import WeightsError


def session_options(threads: int | None = None):
    ort = require("onnxruntime", "running an ONNX model")

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()  # the threads PyTorch would use
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # No busy-waiting between calls: it leaves the cores to data loading and other processes.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers(device: torch.device | str = "cpu") -> list[str]:
    """CUDA where asked for and available in this onnxruntime build; the CPU always last."""
    ort = require("onnxruntime", "running an ONNX model")

    wanted = ["CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
    return [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]


def make_session(model: bytes | str | os.PathLike, device: torch.device | str = "cpu", threads: int | None = None):
    """An ``InferenceSession`` for ONNX bytes or a file, with one-line errors."""
    ort = require("onnxruntime", "running an ONNX model")

    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, session_options(threads), providers=providers(device))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/... types
        where = "ONNX model" if isinstance(model, bytes) else str(model)
        raise WeightsError(f"{where}: onnxruntime cannot load it ({first_line(e)})") from None


class OnnxModel(nn.Module):
    """``images (N, 3, H, W) -> logits (N, classes)`` computed by ONNX Runtime.

    Inference only: no gradients, no layer taps. ``quantized`` says whether the weights are int8.
    """

    def __init__(self, session, description: str = "", quantized: bool = False, config=None) -> None:
        super().__init__()
        self.session, self.description, self.quantized = session, description, quantized
        self.config = config  # the AlexNetConfig the file was exported from, where its metadata says
        self.input_name = session.get_inputs()[0].name

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise WeightsError(f"{self.description or 'an ONNX model'}: ONNX files run inference only; train or "
                               "fine-tune from the checkpoint, or from a safetensors, hf or torchscript export")
        return super().train(False)

    def activations(self, images: torch.Tensor, layers) -> dict:
        raise WeightsError(f"{self.description or 'an ONNX model'}: an ONNX file computes the logits only; take "
                           "features from the checkpoint, or from a safetensors, hf or torchscript export")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(logits).to(images.device)


def read_onnx(path: str | os.PathLike):
    """``(ModelProto, metadata dict)`` of an ONNX file, with one-line errors."""
    onnx = require("onnx", "reading an ONNX file")

    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise WeightsError(f"{path}: not a readable ONNX file ({first_line(e)})") from None
    return proto, {p.key: p.value for p in proto.metadata_props}


def initializers(proto) -> dict[str, torch.Tensor]:
    """The float initializers of a graph by name (the exporter keeps the state dict's names)."""
    numpy_helper = require("onnx.numpy_helper", "reading an ONNX file")

    out = {}
    for tensor in proto.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f":
            out[tensor.name] = torch.from_numpy(array.copy())
    return out


def is_quantized(proto) -> bool:
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "MatMulInteger",
                                "ConvInteger", "DynamicQuantizeLinear") for node in proto.graph.node)


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"
