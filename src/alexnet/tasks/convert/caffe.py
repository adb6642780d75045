"""Caffe's ``bvlc_alexnet`` (``.caffemodel`` + ``deploy.prototxt`` [+ mean ``.binaryproto``]) -> ``alexnet2012``.

Read without Caffe or protobuf (``wire.py``, ``prototxt.py``). Field numbers are those of
BVLC Caffe's ``src/caffe/proto/caffe.proto``:

* ``NetParameter``: ``layer`` = 100 (``LayerParameter``, 2015 on), ``layers`` = 2
  (``V1LayerParameter``, the 2014 files);
* ``LayerParameter``: name = 1, type = 2 (a string), blobs = 7;
* ``V1LayerParameter``: name = 4, type = 5 (an enum), blobs = 6;
* ``BlobProto``: shape = 7 (``BlobShape``: dim = 1), data = 5 (float), double_data = 8,
  and the 2014 num, channels, height, width = 1, 2, 3, 4.

The caffemodel gives the tensors; the prototxt gives the structure, which is checked
against ``alexnet2012``'s (conv geometry, LRN after ReLU and before pooling, max pooling
3/2, LRN n = 5, alpha = 1e-4, beta = 0.75), and LRN's k (Caffe's default 1), which goes
into the model's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .mapping import CAFFE_CROP, CONV_GEOMETRY, LAYERS, ConvertError, Layer, build_model, caffe_preprocess, save_converted
from .prototxt import PrototxtError, Tree, parse
from .wire import Message, WireError

# V1LayerParameter.LayerType values of the layers an AlexNet has, by their later string names.
V1_TYPES = {4: "Convolution", 5: "Data", 6: "Dropout", 14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU",
            20: "Softmax", 21: "SoftmaxWithLoss", 1: "Accuracy", 12: "ImageData", 29: "MemoryData", 24: "WindowData"}
V1_TEXT_TYPES = {"CONVOLUTION": "Convolution", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "POOLING": "Pooling",
                 "RELU": "ReLU", "DROPOUT": "Dropout", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
                 "DATA": "Data", "ACCURACY": "Accuracy", "IMAGE_DATA": "ImageData", "MEMORY_DATA": "MemoryData"}
# The main chain of bvlc_alexnet (dropout aside): LRN follows the ReLU and precedes pooling.
CHAIN = ("Convolution ReLU LRN Pooling Convolution ReLU LRN Pooling Convolution ReLU Convolution ReLU "
         "Convolution ReLU Pooling InnerProduct ReLU InnerProduct ReLU InnerProduct").split()
# alexnet2012's fixed LRN (nn.LocalResponseNorm(5, 1e-4, 0.75, k)); only k may differ.
LRN = {"local_size": 5, "alpha": 1e-4, "beta": 0.75}


@dataclass
class NetSpec:
    """What the prototxt says: layer names in order, LRN's k, the input side."""

    conv: list[str]  # names of the 5 convolutions
    fc: list[str]  # names of the 3 inner products
    lrn_k: float
    input_size: int


def convert_caffe(prototxt: str | Path, caffemodel: str | Path, out: str | Path, mean: str | Path | None = None) -> dict:
    """Convert and write ``out``; returns a summary (layers, groups, LRN k, preprocessing)."""
    spec = read_prototxt(prototxt)
    blobs = read_caffemodel(caffemodel)
    layers = {}
    for paper, name in zip(LAYERS, spec.conv + spec.fc):
        if name not in blobs:
            raise ConvertError(f"{caffemodel}: no layer {name!r} (the prototxt's {paper}); it has "
                               f"{', '.join(n for n in blobs if blobs[n]) or 'no weighted layers'}")
        layers[paper] = _layer(blobs[name], name, paper, str(caffemodel))
    model = build_model(layers, lrn_k=spec.lrn_k, bgr=True, source=str(caffemodel))
    mean_image = read_mean(mean) if mean else None
    if mean_image is not None and mean_image.shape[-1] < spec.input_size:
        raise ConvertError(f"{mean}: mean image {mean_image.shape[-1]} px is smaller than the input {spec.input_size} px")
    preprocess = caffe_preprocess(mean_image, crop=spec.input_size)
    source = {"format": "caffe", "caffemodel": Path(caffemodel).name, "prototxt": Path(prototxt).name,
              "mean": Path(mean).name if mean else None, "input_channels": "BGR, swapped to RGB in conv1"}
    save_converted(str(out), model, preprocess, source)
    return {"groups": model.config.groups, "lrn_k": spec.lrn_k, "num_classes": model.config.num_classes,
            "preprocess": "mean image" if mean_image is not None else "per-channel means", "crop": spec.input_size}


def _layer(blobs: list[np.ndarray], name: str, paper: str, source: str) -> Layer:
    if len(blobs) != 2:
        raise ConvertError(f"{source}: layer {name!r} ({paper}) has {len(blobs)} blobs; a weight and a bias expected")
    weight, bias = blobs
    if paper.startswith("fc"):  # 2014 files keep 4-D shapes: (1, 1, out, in)
        weight = weight.reshape(weight.shape[-2:]) if weight.ndim == 4 and weight.shape[:2] == (1, 1) else weight
    if bias.ndim > 1 and all(d == 1 for d in bias.shape[:-1]):  # 2014 files: (1, 1, 1, out)
        bias = bias.reshape(bias.shape[-1])
    return Layer(weight, bias)


# ---- the binary files ----------------------------------------------------------------------

def _read_message(path: str | Path, what: str) -> Message:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConvertError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise ConvertError(f"{path}: empty file, not a {what}")
    try:
        return Message(data)
    except WireError as e:
        raise ConvertError(f"{path}: not a {what} ({e})") from None


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its blobs, from either form of ``NetParameter``."""
    net = _read_message(path, "Caffe model")
    try:
        layers = [(m.string(1), m.messages(7)) for m in net.messages(100)]
        layers += [(m.string(4), m.messages(6)) for m in net.messages(2)]
        if not layers:
            raise ConvertError(f"{path}: no layers; not a Caffe model (NetParameter)")
        return {name: [blob_array(b) for b in blobs] for name, blobs in layers}
    except WireError as e:
        raise ConvertError(f"{path}: not a Caffe model ({e})") from None


def blob_array(blob: Message) -> np.ndarray:
    """A ``BlobProto``'s values in its shape (``shape.dim``, else num, channels, height, width)."""
    data = blob.numbers(5, "<f4")
    if not len(data):
        data = blob.numbers(8, "<f8").astype(np.float32)
    shapes = blob.messages(7)
    if shapes:
        shape = tuple(int(d) for d in shapes[-1].ints(1))
    else:
        shape = tuple(blob.int(n) for n in (1, 2, 3, 4))
        shape = shape if any(shape) else (len(data),)
    if any(d < 0 for d in shape) or int(np.prod(shape)) != len(data):
        raise WireError(f"a blob of shape {shape} holds {len(data)} values")
    return data.reshape(shape)


def read_mean(path: str | Path) -> np.ndarray:
    """The mean image of a ``.binaryproto`` (one ``BlobProto``) as ``(3, S, S)``, B, G, R, 0-255."""
    try:
        image = blob_array(_read_message(path, "mean .binaryproto"))
    except WireError as e:
        raise ConvertError(f"{path}: not a mean .binaryproto ({e})") from None
    image = image.reshape(image.shape[1:]) if image.ndim == 4 and image.shape[0] == 1 else image
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2]:
        raise ConvertError(f"{path}: mean of shape {tuple(image.shape)}; a square 3-channel image expected")
    return image


# ---- the prototxt ----------------------------------------------------------------------------

def read_prototxt(path: str | Path) -> NetSpec:
    try:
        tree = parse(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConvertError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConvertError(f"{path}: not a text prototxt (binary: is it the caffemodel?)") from None
    except PrototxtError as e:
        raise ConvertError(f"{path}: not a prototxt ({e})") from None
    except RecursionError:
        raise ConvertError(f"{path}: not a prototxt (nested too deeply)") from None
    layers = [_typed(layer) for layer in tree.get("layer", []) + tree.get("layers", [])]
    chain = [(name, kind, layer) for name, kind, layer in layers if kind in CHAIN or kind == "Dropout"]
    kinds = [kind for _, kind, _ in chain if kind != "Dropout"]
    if kinds != CHAIN:
        raise ConvertError(f"{path}: layers {' '.join(kinds) or '(none)'} are not AlexNet's "
                           f"({' '.join(CHAIN)}){_order_hint(kinds)}")
    main = [c for c in chain if c[1] != "Dropout"]
    conv = [(n, l) for n, k, l in main if k == "Convolution"]
    for (name, layer), paper in zip(conv, CONV_GEOMETRY):
        _check_conv(layer, name, paper, path)
    for name, kind, layer in main:
        if kind == "Pooling":
            _check_pool(layer, name, path)
        if kind == "ReLU" and _param(layer, "relu_param", "negative_slope", 0) != 0:
            raise ConvertError(f"{path}: {name} is a leaky ReLU; AlexNet's are plain")
    ks = {_check_lrn(layer, name, path) for name, kind, layer in main if kind == "LRN"}
    if len(ks) != 1:
        raise ConvertError(f"{path}: the two LRN layers have different k ({sorted(ks)}); alexnet2012 has one")
    return NetSpec([n for n, _ in conv], [n for n, k, _ in main if k == "InnerProduct"], ks.pop(),
                   _input_size(tree, layers, path))


def _typed(layer: Tree) -> tuple[str, str, Tree]:
    name = str(_one(layer, "name", ""))
    kind = _one(layer, "type", "")
    return name, V1_TEXT_TYPES.get(kind, kind) if isinstance(kind, str) else V1_TYPES.get(kind, str(kind)), layer


def _order_hint(kinds: list[str]) -> str:
    if kinds[:4] == ["Convolution", "ReLU", "Pooling", "LRN"]:
        return "; this is CaffeNet's order (pool, then LRN), bvlc_alexnet normalises before pooling"
    return ""


def _one(tree: Tree, key: str, default: Any) -> Any:
    values = tree.get(key)
    return values[-1] if values else default


def _param(layer: Tree, group: str, key: str, default: Any) -> Any:
    return _one(_one(layer, group, {}), key, default)


def _check_conv(layer: Tree, name: str, paper: str, path) -> None:
    p = _one(layer, "convolution_param", {})
    kernel, stride, pad = CONV_GEOMETRY[paper]
    found = {"kernel_size": _side(p, "kernel", None), "stride": _side(p, "stride", 1), "pad": _side(p, "pad", 0)}
    wanted = {"kernel_size": kernel, "stride": stride, "pad": pad}
    if found != wanted:
        raise ConvertError(f"{path}: {name} ({paper}) has {_fmt(found)}; AlexNet's {paper} has {_fmt(wanted)}")
    if str(_one(p, "bias_term", "true")).lower() == "false":
        raise ConvertError(f"{path}: {name} ({paper}) has no bias; AlexNet's convolutions have one")


def _side(p: Tree, key: str, default: int | None) -> int | tuple | None:
    # kernel_size: 11, or kernel_h: 11 kernel_w: 11; stride and pad alike
    h, w = _one(p, f"{key}_h", None), _one(p, f"{key}_w", None)
    if h is not None or w is not None:
        return h if h == w else (h, w)
    values = p.get(key if key != "kernel" else "kernel_size", [])
    if len(set(values)) > 1:
        return tuple(values)
    return values[0] if values else default


def _check_pool(layer: Tree, name: str, path) -> None:
    p = _one(layer, "pooling_param", {})
    found = {"pool": _one(p, "pool", "MAX"), "kernel_size": _side(p, "kernel", None), "stride": _side(p, "stride", 1),
             "pad": _side(p, "pad", 0)}
    found["pool"] = {0: "MAX", 1: "AVE"}.get(found["pool"], found["pool"])
    wanted = {"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 0}
    if found != wanted:
        raise ConvertError(f"{path}: {name} has {_fmt(found)}; AlexNet pools with {_fmt(wanted)}")


def _check_lrn(layer: Tree, name: str, path) -> float:
    p = _one(layer, "lrn_param", {})
    # Caffe's defaults: local_size 5, alpha 1, beta 0.75, k 1, ACROSS_CHANNELS
    found = {"local_size": _one(p, "local_size", 5), "alpha": _one(p, "alpha", 1.0), "beta": _one(p, "beta", 0.75)}
    region = _one(p, "norm_region", "ACROSS_CHANNELS")
    if region not in ("ACROSS_CHANNELS", 0) or not all(np.isclose(found[k], v, rtol=1e-6) for k, v in LRN.items()):
        raise ConvertError(f"{path}: {name} has {_fmt(found)}, norm_region {region}; alexnet2012's LRN has "
                           f"{_fmt(LRN)}, ACROSS_CHANNELS")
    k = float(_one(p, "k", 1.0))
    if not k > 0:
        raise ConvertError(f"{path}: {name} has k = {k}; LRN needs k > 0")
    return k


def _input_size(tree: Tree, layers: list, path) -> int:
    """The input side: ``input_dim`` x4, ``input_shape``, an ``Input`` layer, or a data layer's crop."""
    dims = list(tree.get("input_dim", []))
    for shape in tree.get("input_shape", []):
        dims = dims or list(shape.get("dim", []))
    for _, kind, layer in layers:
        if kind == "Input":
            dims = dims or list(_one(_one(layer, "input_param", {}), "shape", {}).get("dim", []))
        elif "transform_param" in layer and not dims:
            crop = _param(layer, "transform_param", "crop_size", 0)
            dims = [1, 3, crop, crop] if crop else dims
    if not dims:
        return CAFFE_CROP
    if len(dims) != 4 or dims[1] != 3 or dims[2] != dims[3] or not isinstance(dims[2], int):
        raise ConvertError(f"{path}: input of shape {dims}; a square 3-channel image (N, 3, S, S) expected")
    if dims[2] < 64:
        raise ConvertError(f"{path}: input {dims[2]} px; AlexNet needs at least 64")
    return dims[2]


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())
