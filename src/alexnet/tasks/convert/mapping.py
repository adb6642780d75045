"""Tensors in Caffe's layout -> an ``alexnet2012`` model, checked layer by layer.

Every source format is first brought to Caffe's layout, so this is the one place where
shapes are checked and the architecture is decided:

* conv weights ``(out, in / groups, kh, kw)``, cross-correlation (as ``nn.Conv2d``);
* fc weights ``(out, in)``, fc6's ``in`` being pool5 flattened in C, H, W order (as
  ``torch.flatten`` of an ``(N, C, H, W)`` map);
* conv1's input channels in the order the weights were trained on (Caffe: B, G, R).

The groups of each conv follow from its weight's shape (``in_channels / weight.shape[1]``),
whatever a prototxt says; widths, fc width and the number of classes follow from shapes too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ...data.classnames import imagenet_categories
from ...data.transforms import Preprocess
from ...errors import AlexNetError
from ...models.portable import save_weights_file
from ...models.alexnet import CONV_LAYERS, FC_LAYERS, AlexNet
from ...models.variants import PAPER
from ...models.weights import load_state_dict

ARCH = "alexnet2012"
LAYERS = CONV_LAYERS + FC_LAYERS
# (kernel side, stride, padding) of conv1..conv5 in alexnet2012 and in bvlc_alexnet
CONV_GEOMETRY = {"conv1": (11, 4, 0), "conv2": (5, 1, 2), "conv3": (3, 1, 1), "conv4": (3, 1, 1), "conv5": (3, 1, 1)}
# Caffe's defaults for the ImageNet models: 0-255 pixels, B, G, R means (Caffe's
# ilsvrc_2012_mean.npy averaged per channel), images resized to 256, 227 crops.
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
CAFFE_RESIZE, CAFFE_CROP = 256, 227


class ConvertError(AlexNetError, ValueError):
    """A file that cannot be converted; the message names the file, the layer and what is wrong."""


@dataclass
class Layer:
    """One weighted layer in Caffe's layout (see the module docstring)."""

    weight: np.ndarray
    bias: np.ndarray


def build_model(layers: dict[str, Layer], *, lrn_k: float, bgr: bool, source: str) -> AlexNet:
    """``alexnet2012`` with ``layers``' weights; conv1 takes R, G, B input whatever ``bgr`` says.

    ``lrn_k``: the LRN constant the weights were trained with (Caffe's default is 1).
    """
    if missing := [name for name in LAYERS if name not in layers]:
        raise ConvertError(f"{source}: no weights for {', '.join(missing)}")
    for name in LAYERS:
        for part in ("weight", "bias"):
            array = getattr(layers[name], part)
            if not np.issubdtype(array.dtype, np.number) or 0 in array.shape:
                raise ConvertError(f"{source}: {name} {part} is {array.dtype} of shape {tuple(array.shape)}; "
                                   "numbers expected")
    widths, groups = _conv_shapes(layers, source)
    hidden, num_classes = _fc_shapes(layers, widths[-1] * PAPER.pool5_size**2, source)
    # The paper's init stays in the config: a new fc8 for fine-tuning gets N(0, 0.01).
    model = AlexNet(replace(PAPER, widths=widths, groups=groups, hidden=hidden, num_classes=num_classes,
                            lrn_k=float(lrn_k)))
    state = {}
    for name in LAYERS:
        weight = np.asarray(layers[name].weight, dtype=np.float32)
        if name == "conv1" and bgr:
            weight = weight[:, ::-1]  # B, G, R input channels -> R, G, B
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(layers[name].bias, dtype=np.float32))
    for key, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise ConvertError(f"{source}: {key} holds NaN or infinite values")
    load_state_dict(model, state, source)
    return model.eval()


def _conv_shapes(layers: dict[str, Layer], source: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    widths, groups, fan_in = [], [], 3
    for name in CONV_LAYERS:
        w, b = layers[name].weight, layers[name].bias
        k = CONV_GEOMETRY[name][0]
        if w.ndim != 4 or w.shape[2:] != (k, k) or w.shape[1] == 0 or fan_in % w.shape[1]:
            raise ConvertError(f"{source}: {name} weight has shape {tuple(w.shape)}; AlexNet's {name} needs "
                               f"(out, {fan_in} / groups, {k}, {k})")
        group = fan_in // w.shape[1]
        if w.shape[0] % group:
            raise ConvertError(f"{source}: {name}: {w.shape[0]} filters cannot form {group} groups")
        if b.shape != (w.shape[0],):
            raise ConvertError(f"{source}: {name} bias has shape {tuple(b.shape)}, its weight {w.shape[0]} filters")
        widths.append(w.shape[0])
        groups.append(group)
        fan_in = w.shape[0]
    return tuple(widths), tuple(groups)


def _fc_shapes(layers: dict[str, Layer], pool5_values: int, source: str) -> tuple[int, int]:
    fan_in = pool5_values
    for name in FC_LAYERS:
        w, b = layers[name].weight, layers[name].bias
        if w.ndim != 2 or w.shape[1] != fan_in or b.shape != (w.shape[0],):
            raise ConvertError(f"{source}: {name} weight {tuple(w.shape)} and bias {tuple(b.shape)} do not fit "
                               f"AlexNet: {name} needs (out, {fan_in}) and (out,)")
        fan_in = w.shape[0]
    if layers["fc6"].weight.shape[0] != layers["fc7"].weight.shape[0]:
        raise ConvertError(f"{source}: fc6 has {layers['fc6'].weight.shape[0]} outputs, fc7 "
                           f"{layers['fc7'].weight.shape[0]}; AlexNet's are equal")
    return int(layers["fc6"].weight.shape[0]), int(layers["fc8"].weight.shape[0])


def fc6_from_hwc(weight: np.ndarray, channels: int, side: int) -> np.ndarray:
    """fc6 ``(out, H*W*C)`` whose inputs are pool5 flattened as H, W, C (TensorFlow's NHWC)
    -> ``(out, C*H*W)``, the order of ``torch.flatten`` on N, C, H, W."""
    out = weight.shape[0]
    if weight.shape[1] != channels * side * side:
        raise ConvertError(f"fc6 weight has {weight.shape[1]} inputs; pool5 gives {channels}x{side}x{side}")
    return weight.reshape(out, side, side, channels).transpose(0, 3, 1, 2).reshape(out, -1)


def caffe_preprocess(mean_image_bgr: np.ndarray | None = None, crop: int = CAFFE_CROP,
                     mean_bgr: tuple[float, ...] = CAFFE_MEAN_BGR) -> Preprocess:
    """Caffe's input for these weights, in this project's terms: 0-255 pixels (std 1/255 on
    [0, 1] images) less the mean image (``(3, S, S)``, B, G, R, 0-255: resize S) or, without
    one, less the per-channel means; then the central ``crop``."""
    std = (1 / 255,) * 3
    if mean_image_bgr is None:
        mean = tuple(m / 255 for m in reversed(mean_bgr))
        return Preprocess(crop=crop, resize=CAFFE_RESIZE, mean=mean, std=std, normalize="channel",
                          stats_from="Caffe's per-channel ImageNet means (B, G, R " + ", ".join(f"{m:g}" for m in mean_bgr) + ")")
    image = torch.from_numpy(np.ascontiguousarray(mean_image_bgr[::-1], dtype=np.float32)) / 255
    return Preprocess(crop=crop, resize=image.shape[-1], mean=tuple(image.mean(dim=(1, 2)).tolist()), std=std,
                      normalize="paper", mean_image=image, stats_from="Caffe's ImageNet mean image (binaryproto)")


def class_names_for(num_classes: int) -> list[str]:
    """ImageNet's 1,000 names in Caffe's index order (the sorted wnids, torchvision's order too),
    else the class indices."""
    return imagenet_categories() if num_classes == 1000 else [str(i) for i in range(num_classes)]


def save_converted(path: str, model: AlexNet, preprocess: Preprocess, source: dict) -> None:
    """Write the portable weights file: tensors, config, class names, preprocessing, and where they came from."""
    try:
        save_weights_file(path, model, arch=ARCH, class_names=class_names_for(model.config.num_classes),
                          preprocess=preprocess.to_dict(), extra={"converted_from": source})
    except OSError as e:
        raise ConvertError(f"cannot write {path}: {e.strerror or e}") from None
