"""Heuritech's convnets-keras AlexNet (``alexnet_weights.h5``) -> ``alexnet2012``.

The weights are bvlc_alexnet's, saved by Keras 1 under Theano: layers ``conv_1``,
``conv_2_1``/``conv_2_2`` (the two towers of conv2, each seeing one half of the input
maps), ``conv_3``, ``conv_4_1``/``conv_4_2``, ``conv_5_1``/``conv_5_2``, ``dense_1..3``;
each an HDF5 group whose ``weight_names`` attribute lists ``[W, b]``. Conv ``W`` is
``(out, in, kh, kw)`` ("th" ordering) or ``(kh, kw, in, out)`` ("tf"); dense ``W`` is
``(in, out)``, dense_1's inputs pool5 flattened as C, H, W.

Kernel orientation. Theano's ``conv2d`` convolves (it flips the kernel), Caffe, TensorFlow
and PyTorch cross-correlate, so a kernel that works under Theano is the Caffe kernel
rotated by 180 degrees. The file does not always say which it holds; we decide, in order:

1. ``--kernels theano`` / ``tensorflow`` from the user;
2. the file's ``backend`` attribute (Keras >= 1.2 writes it): ``theano`` means flipped;
3. the kernel layout: "th" ``(out, in, kh, kw)`` kernels without a ``backend`` attribute
   come from Keras 1 under Theano (Heuritech's model runs only there: its LRN and tower
   split are Theano expressions), so they are flipped; "tf" kernels are not.

convnets-keras feeds this model R, G, B images less the means 123.68, 116.779, 103.939
(``preprocess_image_batch``), so conv1 is taken as R, G, B. Its own graph normalises after
pooling with k = 2 and alpha not divided by n; the weights were trained in Caffe, so the
converted model runs them as Caffe did (LRN before pooling, k = 1, alpha / n).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import first_line
from ...extras import require
from .mapping import ConvertError, Layer, build_model, caffe_preprocess, save_converted

# paper layer -> the Keras layers whose outputs it concatenates (one per tower)
KERAS_LAYERS = {
    "conv1": ("conv_1",), "conv2": ("conv_2_1", "conv_2_2"), "conv3": ("conv_3",),
    "conv4": ("conv_4_1", "conv_4_2"), "conv5": ("conv_5_1", "conv_5_2"),
    "fc6": ("dense_1",), "fc7": ("dense_2",), "fc8": ("dense_3",),
}
KERNEL_CHOICES = ("auto", "theano", "tensorflow")
MEAN_RGB = (123.68, 116.779, 103.939)  # convnets-keras' preprocess_image_batch


def _h5py():
    return require("h5py", "reading Keras .h5 files")


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str | Path, kernels: str = "auto") -> tuple[dict[str, Layer], str]:
    """The paper's layers in Caffe's layout, and how the kernel orientation was decided."""
    if kernels not in KERNEL_CHOICES:
        raise ConvertError(f"--kernels must be one of {', '.join(KERNEL_CHOICES)}, got {kernels!r}")
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f  # model.save() nests them
            backend = _text(root.attrs.get("backend", f.attrs.get("backend", ""))) or None
            arrays = {name: _weights(root, name, path) for names in KERAS_LAYERS.values() for name in names}
    except OSError as e:
        raise ConvertError(f"{path}: not a readable HDF5 file ({first_line(e)})") from None
    th = arrays["conv_1"][0].ndim == 4 and arrays["conv_1"][0].shape[-1] == arrays["conv_1"][0].shape[-2]
    if kernels == "auto":
        flipped = backend == "theano" if backend else th
        reason = f"backend attribute {backend!r}" if backend else f"no backend attribute, {'th' if th else 'tf'} layout"
    else:
        flipped, reason = kernels == "theano", "--kernels " + kernels
    layers = {paper: _paper_layer([arrays[n] for n in names], paper, th, flipped, path)
              for paper, names in KERAS_LAYERS.items()}
    return layers, f"{'flipped (Theano)' if flipped else 'as stored (cross-correlation)'}: {reason}"


def _weights(root, name: str, path) -> tuple[np.ndarray, np.ndarray]:
    if name not in root:
        raise ConvertError(f"{path}: no layer {name!r}; Heuritech's AlexNet has "
                           f"{', '.join(n for names in KERAS_LAYERS.values() for n in names)} "
                           f"(found: {', '.join(list(root.keys())[:12]) or 'none'})")
    group = root[name]
    names = [_text(n) for n in group.attrs.get("weight_names", [])]
    if not names:  # no attribute: take the datasets in the group, W before b
        names = []
        group.visit(lambda key: names.append(key) if hasattr(group[key], "shape") else None)
        names.sort(key=lambda key: ("_b" in key or "bias" in key, key))
    if len(names) != 2:
        raise ConvertError(f"{path}: layer {name!r} holds {len(names)} arrays; W and b expected")
    return np.asarray(group[names[0]]), np.asarray(group[names[1]])


def _paper_layer(parts: list[tuple[np.ndarray, np.ndarray]], paper: str, th: bool, flipped: bool, path) -> Layer:
    weights, biases = [], []
    for w, b in parts:
        if paper.startswith("conv"):
            if w.ndim != 4:
                raise ConvertError(f"{path}: {paper} kernel of shape {w.shape}; 4 dimensions expected")
            w = w if th else w.transpose(3, 2, 0, 1)  # "tf" (kh, kw, in, out) -> (out, in, kh, kw)
            w = w[:, :, ::-1, ::-1] if flipped else w
        else:
            if w.ndim != 2:
                raise ConvertError(f"{path}: {paper} weight of shape {w.shape}; (in, out) expected")
            w = w.T
        weights.append(w)
        biases.append(b.reshape(-1))
    # Towers: each saw one half of the input maps and made one half of the output maps,
    # which is a grouped convolution with the towers' filters stacked in order.
    shapes = {w.shape[1:] for w in weights}
    if len(shapes) != 1:
        raise ConvertError(f"{path}: the towers of {paper} have kernels {[w.shape for w in weights]}; equal expected")
    return Layer(np.concatenate(weights), np.concatenate(biases))


def convert_keras(path: str | Path, out: str | Path, *, kernels: str = "auto", bgr: bool = False,
                  lrn_k: float = 1.0) -> dict:
    """Convert and write ``out``; returns a summary. ``bgr``: conv1 expects B, G, R (default R, G, B)."""
    layers, orientation = read_keras_h5(path, kernels)
    model = build_model(layers, lrn_k=lrn_k, bgr=bgr, source=str(path))
    preprocess = caffe_preprocess(None, mean_bgr=MEAN_RGB[::-1])  # it takes B, G, R
    save_converted(str(out), model, preprocess, {"format": "keras", "file": Path(path).name, "kernels": orientation,
                                                  "input_channels": "BGR, swapped to RGB" if bgr else "RGB"})
    return {"groups": model.config.groups, "lrn_k": lrn_k, "num_classes": model.config.num_classes,
            "kernels": orientation, "preprocess": "per-channel means", "crop": preprocess.crop}
