"""The TensorFlow copy of bvlc_alexnet (``bvlc_alexnet.npy``, myalexnet) -> ``alexnet2012``.

The file is a NumPy ``.npy`` holding one pickled object: a dict ``{"conv1": [W, b], ...,
"fc8": [W, b]}`` with conv ``W`` as ``(kh, kw, in / groups, out)`` and fc ``W`` as
``(in, out)``, made from the caffemodel by caffe-tensorflow. That converter keeps conv1's
B, G, R input order and rewires fc6 to TensorFlow's N, H, W, C pool5, so fc6's rows are in
H, W, C order (``--fc6-order chw`` for a file made otherwise).

Pickle can name any Python callable; this reader's unpickler admits only what NumPy needs
to rebuild arrays (``ndarray``, ``dtype``, ``_reconstruct``) and rejects every other global
before anything is called. Dicts, lists, strings and numbers need no global at all.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ...errors import first_line
from .mapping import LAYERS, ConvertError, Layer, build_model, caffe_preprocess, fc6_from_hwc, save_converted


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


# (module, name) as a pickle names them -> the object, for NumPy 1 and 2 pickles alike.
ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct(),
}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """An unpickler for dicts and lists of NumPy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays, dicts and lists "
                                         "are allowed") from None


def load_npy_object(path: str | Path) -> object:
    """The pickled object inside an ``.npy`` file, unpickled with :class:`ArraysOnlyUnpickler`."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            shape, _, dtype = header
            if dtype != np.dtype(object):
                raise ConvertError(f"{path}: a plain {dtype} array of shape {shape}, not the pickled dict of "
                                   "bvlc_alexnet.npy")
            # Python 2 pickles (the original file) hold arrays' bytes as str: latin-1 gives them back intact.
            obj = ArraysOnlyUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise ConvertError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, EOFError, pickle.UnpicklingError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError) as e:
        raise ConvertError(f"{path}: not a bvlc_alexnet.npy file ({first_line(e)})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():  # np.save(dict) wraps it
        obj = obj.item()
    return obj


def read_tf_npy(path: str | Path, fc6_order: str = "hwc") -> dict[str, Layer]:
    obj = load_npy_object(path)
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: holds a {type(obj).__name__}; bvlc_alexnet.npy holds a dict of [W, b] lists")
    if missing := [name for name in LAYERS if name not in obj]:
        found = ", ".join(sorted(map(str, obj))) or "nothing"
        raise ConvertError(f"{path}: no layer {', '.join(map(repr, missing))} (the file has {found})")
    layers = {}
    for name in LAYERS:
        pair = obj[name]
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(a, np.ndarray) for a in pair)):
            raise ConvertError(f"{path}: {name} is not a [W, b] pair of arrays")
        w, b = pair
        if name.startswith("conv"):
            if w.ndim != 4:
                raise ConvertError(f"{path}: {name} W has shape {w.shape}; (kh, kw, in, out) expected")
            w = w.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        else:
            if w.ndim != 2:
                raise ConvertError(f"{path}: {name} W has shape {w.shape}; (in, out) expected")
            w = w.T
        layers[name] = Layer(w, b)
    if fc6_order == "hwc":
        c5 = layers["conv5"].weight.shape[0]
        side = int(round((layers["fc6"].weight.shape[1] / max(c5, 1)) ** 0.5))
        try:
            layers["fc6"].weight = fc6_from_hwc(layers["fc6"].weight, c5, side)
        except ConvertError as e:
            raise ConvertError(f"{path}: {e}") from None
    elif fc6_order != "chw":
        raise ConvertError(f"fc6 order must be 'hwc' or 'chw', got {fc6_order!r}")
    return layers


def convert_tf_npy(path: str | Path, out: str | Path, *, fc6_order: str = "hwc", lrn_k: float = 1.0) -> dict:
    """Convert and write ``out``; returns a summary."""
    model = build_model(read_tf_npy(path, fc6_order), lrn_k=lrn_k, bgr=True, source=str(path))
    preprocess = caffe_preprocess(None)
    save_converted(str(out), model, preprocess, {"format": "tf-npy", "file": Path(path).name, "fc6_order": fc6_order,
                                                  "input_channels": "BGR, swapped to RGB in conv1"})
    return {"groups": model.config.groups, "lrn_k": lrn_k, "num_classes": model.config.num_classes,
            "preprocess": "per-channel means", "crop": preprocess.crop}
