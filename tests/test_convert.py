"""`alexnet convert`: Caffe, Keras and TensorFlow AlexNet files -> alexnet2012.

Each file is written here from random weights, in its format as the format defines it (a
tiny protobuf wire-format writer, h5py, np.save), and the converted model's logits are
compared with a forward pass written in numpy from Caffe's layer definitions: grouped
convolution, LRN with k = 1 and alpha / n, max pooling with Caffe's ceil rounding, inner
products. Narrow layers (8..24 maps) keep it fast; conv1 and the 227 px input are real.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.data.transforms import eval_transform
from alexnet.models.pretrained import load_pretrained
from alexnet.tasks.convert import ConvertError, convert_caffe, convert_keras, convert_tf_npy
from alexnet.tasks.convert.prototxt import parse
from alexnet.tasks.convert.tf_npy import load_npy_object

WIDTHS = (8, 16, 24, 24, 16)  # conv1..conv5 outputs (bvlc_alexnet: 96, 256, 384, 384, 256)
HIDDEN, CLASSES = 32, 10
GEOMETRY = {"conv1": (11, 4, 0), "conv2": (5, 1, 2), "conv3": (3, 1, 1), "conv4": (3, 1, 1), "conv5": (3, 1, 1)}
CONVS, FCS = list(GEOMETRY), ["fc6", "fc7", "fc8"]


# ---- random Caffe-layout weights and the numpy reference --------------------------------------

def caffe_weights(groups=(1, 2, 1, 2, 2), classes=CLASSES, seed=0, widths=WIDTHS,
                  hidden=HIDDEN) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """W (out, in/groups, k, k) and (out, in), as Caffe stores them; He-scaled so every layer is live."""
    rng = np.random.default_rng(seed)
    out, fan_in = {}, 3
    for name, width, g in zip(CONVS, widths, groups):
        k = GEOMETRY[name][0]
        w = rng.normal(0, (2 / (fan_in // g * k * k)) ** 0.5, (width, fan_in // g, k, k))
        out[name] = (w.astype(np.float32), rng.normal(0, 1, width).astype(np.float32))
        fan_in = width
    fan_in = widths[-1] * 6 * 6  # pool5 flattened
    for name, n in zip(FCS, (hidden, hidden, classes)):
        # fc6 and fc7 He-scaled, fc8 small: logits of order 1, so 1e-4 is a tight tolerance.
        std = (2 / fan_in) ** 0.5 if name != "fc8" else 0.3 / fan_in**0.5
        out[name] = (rng.normal(0, std, (n, fan_in)).astype(np.float32), rng.normal(0, 0.1, n).astype(np.float32))
        fan_in = n
    return out


def np_conv(x, w, b, stride, pad, groups):
    """Caffe's ConvolutionLayer: cross-correlation, output floor((H + 2p - k) / s) + 1, groups split channels."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k, cg, og = w.shape[-1], x.shape[1] // groups, w.shape[0] // groups
    outs = []
    for g in range(groups):
        windows = np.lib.stride_tricks.sliding_window_view(x[:, g * cg:(g + 1) * cg], (k, k), axis=(2, 3))
        windows = windows[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, k, k)
        outs.append(np.tensordot(windows, w[g * og:(g + 1) * og], axes=([1, 4, 5], [1, 2, 3])))  # (N, Ho, Wo, O)
    return np.concatenate(outs, axis=-1).transpose(0, 3, 1, 2) + b[None, :, None, None]


def np_lrn(x, k=1.0, n=5, alpha=1e-4, beta=0.75):
    """Caffe's LRN, ACROSS_CHANNELS: x / (k + alpha / n * sum of x^2 over n neighbouring maps)^beta."""
    sq = np.pad(x**2, ((0, 0), (n // 2, n // 2), (0, 0), (0, 0)))
    window = sum(sq[:, i:i + x.shape[1]] for i in range(n))
    return x / (k + alpha / n * window) ** beta


def np_maxpool(x, k=3, s=2):
    """Caffe's PoolingLayer, MAX: output ceil((H - k) / s) + 1, windows clipped at the edge."""
    h = x.shape[2]
    size = -(-(h - k) // s) + 1
    out = np.empty(x.shape[:2] + (size, size))
    for i in range(size):
        for j in range(size):
            out[:, :, i, j] = x[:, :, i * s:min(i * s + k, h), j * s:min(j * s + k, h)].max(axis=(2, 3))
    return out


def caffe_forward(weights, x_bgr, groups=(1, 2, 1, 2, 2), lrn_k=1.0):
    """bvlc_alexnet's deploy net on (N, 3, 227, 227) B, G, R input (mean already off), in float64."""
    x = x_bgr.astype(np.float64)
    for name, g in zip(CONVS, groups):
        k, s, p = GEOMETRY[name]
        x = np.maximum(np_conv(x, weights[name][0].astype(np.float64), weights[name][1], s, p, g), 0)
        if name in ("conv1", "conv2"):
            x = np_lrn(x, k=lrn_k)
        if name in ("conv1", "conv2", "conv5"):
            x = np_maxpool(x)
    x = x.reshape(len(x), -1)  # C, H, W order
    for name in FCS:
        x = x @ weights[name][0].astype(np.float64).T + weights[name][1]
        x = np.maximum(x, 0) if name != "fc8" else x
    return x


# ---- a protobuf wire-format writer (caffe.proto's field numbers) ------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def blob(array: np.ndarray, legacy: bool) -> bytes:
    """BlobProto: data = 5 (packed float); shape = 7 (BlobShape.dim = 1) or num/channels/height/width = 1..4."""
    data = field_bytes(5, np.ascontiguousarray(array, dtype="<f4").tobytes())
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        return b"".join(field_varint(i + 1, d) for i, d in enumerate(dims)) + data
    return field_bytes(7, field_bytes(1, b"".join(varint(d) for d in array.shape))) + data


V1_ENUM = {"Convolution": 4, "ReLU": 18, "LRN": 15, "Pooling": 17, "InnerProduct": 14, "Dropout": 6, "Softmax": 20}


def caffemodel(weights, legacy: bool, rename: dict | None = None) -> bytes:
    """NetParameter: layers = 2 (V1LayerParameter: name 4, type 5 enum, blobs 6) or layer = 100
    (LayerParameter: name 1, type 2 string, blobs 7); ReLUs and pools without blobs, as Caffe saves them."""
    out = b""
    for name, kind in NET:
        blobs = []
        if name in weights:
            w, b = weights[name]
            blobs = [w, b[None, None, None, :]] if legacy else [w, b]  # 2014 files: 4-D biases
            if legacy and w.ndim == 2:
                blobs[0] = w[None, None]
        name = (rename or {}).get(name, name)
        if legacy:
            body = field_bytes(4, name.encode()) + field_varint(5, V1_ENUM[kind])
            out += field_bytes(2, body + b"".join(field_bytes(6, blob(a, True)) for a in blobs))
        else:
            body = field_bytes(1, name.encode()) + field_bytes(2, kind.encode())
            out += field_bytes(100, body + b"".join(field_bytes(7, blob(a, False)) for a in blobs))
    return field_bytes(1, b"AlexNet") + out


NET = [("conv1", "Convolution"), ("relu1", "ReLU"), ("norm1", "LRN"), ("pool1", "Pooling"),
       ("conv2", "Convolution"), ("relu2", "ReLU"), ("norm2", "LRN"), ("pool2", "Pooling"),
       ("conv3", "Convolution"), ("relu3", "ReLU"), ("conv4", "Convolution"), ("relu4", "ReLU"),
       ("conv5", "Convolution"), ("relu5", "ReLU"), ("pool5", "Pooling"),
       ("fc6", "InnerProduct"), ("relu6", "ReLU"), ("drop6", "Dropout"), ("fc7", "InnerProduct"), ("relu7", "ReLU"),
       ("drop7", "Dropout"), ("fc8", "InnerProduct"), ("prob", "Softmax")]


def prototxt(legacy: bool, group_lines: bool, lrn_k: float | None = None, order=NET, widths=WIDTHS,
             classes=CLASSES, conv2_kernel=5, hidden=HIDDEN) -> str:
    """deploy.prototxt in the 2014 form (layers, enum types, input_dim) or the later one (layer, Input layer)."""
    text = 'name: "AlexNet"\n'
    text += ('input: "data"\n' + "".join(f"input_dim: {d}\n" for d in (10, 3, 227, 227)) if legacy else
             'layer { name: "data" type: "Input" top: "data"\n  input_param { shape: { dim: 10 dim: 3 dim: 227 dim: 227 } } }\n')
    convs = dict(zip(CONVS, widths))
    for name, kind in order:
        params = ""
        if kind == "Convolution":
            k, s, p = GEOMETRY[name]
            k = conv2_kernel if name == "conv2" else k
            group = f" group: 2" if group_lines and name in ("conv2", "conv4", "conv5") else ""
            params = f"convolution_param {{ num_output: {convs[name]} kernel_size: {k} stride: {s} pad: {p}{group} }}"
        elif kind == "LRN":
            k = f" k: {lrn_k}" if lrn_k is not None else ""
            params = f"lrn_param {{ local_size: 5 alpha: 0.0001 beta: 0.75{k} }}"
        elif kind == "Pooling":
            params = f"pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }}"
        elif kind == "InnerProduct":
            params = f"inner_product_param {{ num_output: {classes if name == 'fc8' else hidden} }}"
        elif kind == "Dropout":
            params = "dropout_param { dropout_ratio: 0.5 }"
        kind_text = {"Convolution": "CONVOLUTION", "ReLU": "RELU", "LRN": "LRN", "Pooling": "POOLING",
                     "InnerProduct": "INNER_PRODUCT", "Dropout": "DROPOUT", "Softmax": "SOFTMAX"}[kind]
        text += (f'layers {{\n  name: "{name}"\n  type: {kind_text}\n  {params}\n}}\n' if legacy else
                 f'layer {{\n  name: "{name}"\n  type: "{kind}"\n  {params}\n}}\n')
    return text


def write_caffe(tmp_path: Path, weights, legacy=False, group_lines=True, **kw) -> tuple[Path, Path]:
    proto, model = tmp_path / "deploy.prototxt", tmp_path / "net.caffemodel"
    proto.write_text(prototxt(legacy, group_lines, **kw))
    model.write_bytes(caffemodel(weights, legacy))
    return proto, model


def logits(path: Path, x_rgb: np.ndarray) -> np.ndarray:
    model = load_pretrained(path).model
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x_rgb, dtype=np.float32))).double().numpy()


def random_input(n=2, seed=1) -> np.ndarray:
    """Mean-subtracted pixels in Caffe's order (B, G, R), the scale Caffe feeds."""
    return np.random.default_rng(seed).uniform(-128, 128, (n, 3, 227, 227)).astype(np.float32)


# ---- Caffe ------------------------------------------------------------------------------------

@pytest.mark.parametrize("legacy", [False, True], ids=["layer", "v1-layers"])
@pytest.mark.parametrize("group_lines", [True, False], ids=["group-lines", "no-group-lines"])
def test_caffe_matches_numpy_reference(tmp_path, legacy, group_lines):
    weights = caffe_weights()
    proto, model = write_caffe(tmp_path, weights, legacy=legacy, group_lines=group_lines)
    convert_caffe(proto, model, tmp_path / "out.safetensors")
    x = random_input()
    expected = caffe_forward(weights, x)
    got = logits(tmp_path / "out.safetensors", x[:, ::-1])  # the converted net takes R, G, B
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(expected).max() > 0.1  # logits that carry the input, not a dead net
    loaded = load_pretrained(tmp_path / "out.safetensors")
    assert loaded.model.config.groups == (1, 2, 1, 2, 2) and loaded.model.config.lrn_k == 1.0
    assert loaded.arch == "alexnet2012" and loaded.model.config.conv1_padding == "ceil"


def test_caffe_without_groups_and_the_lrn_constant_matters(tmp_path):
    groups = (1, 1, 1, 1, 1)
    weights = caffe_weights(groups=groups)
    proto, model = write_caffe(tmp_path, weights, group_lines=False, lrn_k=2)
    convert_caffe(proto, model, tmp_path / "out.safetensors")
    x = random_input(n=1)
    got = logits(tmp_path / "out.safetensors", x[:, ::-1])
    assert np.abs(got - caffe_forward(weights, x, groups, lrn_k=2.0)).max() < 1e-4
    # the reference tells k = 1 from k = 2, and channel order, so the test above can fail
    assert np.abs(got - caffe_forward(weights, x, groups, lrn_k=1.0)).max() > 1e-2
    assert np.abs(got - caffe_forward(weights, x[:, ::-1], groups, lrn_k=2.0)).max() > 1e-2
    assert load_pretrained(tmp_path / "out.safetensors").model.config.groups == groups


def test_caffe_mean_image_and_class_names(tmp_path):
    from alexnet.data.classnames import imagenet_categories

    weights = caffe_weights(classes=1000)
    proto, model = write_caffe(tmp_path, weights, classes=1000)
    rng = np.random.default_rng(3)
    mean_bgr = rng.uniform(90, 130, (3, 256, 256)).astype(np.float32)
    for legacy in (False, True):
        mean_file = tmp_path / f"mean{legacy}.binaryproto"
        mean_file.write_bytes(blob(mean_bgr[None], legacy))
        convert_caffe(proto, model, tmp_path / "out.safetensors", mean=mean_file)
        p = load_pretrained(tmp_path / "out.safetensors")
        assert p.class_names == imagenet_categories()
        assert (p.preprocess.crop, p.preprocess.resize, p.preprocess.normalize) == (227, 256, "paper")
    # an image already 256 x 256: Caffe's input is its B, G, R pixels less the mean image, centre 227 crop
    pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    got = eval_transform(p.preprocess)(Image.fromarray(pixels)).numpy()
    caffe_input = (pixels[:, :, ::-1].transpose(2, 0, 1) - mean_bgr)[:, 14:241, 14:241]
    assert np.abs(got - caffe_input[::-1]).max() < 1e-3
    with torch.no_grad():
        ours = p.model(torch.from_numpy(got[None]).float()).double().numpy()
    assert np.abs(ours - caffe_forward(weights, caffe_input[None])).max() < 1e-4


def test_caffe_per_channel_means_when_no_mean_file(tmp_path):
    proto, model = write_caffe(tmp_path, caffe_weights())
    convert_caffe(proto, model, tmp_path / "out.safetensors")
    p = load_pretrained(tmp_path / "out.safetensors").preprocess
    assert p.mean_image is None and (p.crop, p.resize) == (227, 256)
    assert np.allclose(np.array(p.mean) * 255, (123, 117, 104)) and np.allclose(np.array(p.std) * 255, 1)


# ---- malformed Caffe files: one-line errors ---------------------------------------------------

def _convert_error(tmp_path, proto, model, mean=None) -> str:
    with pytest.raises(ConvertError) as e:
        convert_caffe(proto, model, tmp_path / "bad.safetensors", mean=mean)
    assert "\n" not in str(e.value) and not (tmp_path / "bad.safetensors").exists()
    return str(e.value)


def test_caffe_truncated_and_garbage_files(tmp_path):
    proto, model = write_caffe(tmp_path, caffe_weights())
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    assert "truncated" in _convert_error(tmp_path, proto, model)
    model.write_bytes(b"")
    assert "empty" in _convert_error(tmp_path, proto, model)
    model.write_bytes(os.urandom(4096))
    _convert_error(tmp_path, proto, model)
    model.write_bytes(b"\x0a\x07AlexNet")  # a valid NetParameter with a name and no layers
    assert "no layers" in _convert_error(tmp_path, proto, model)
    proto.write_text("layer { name: 'conv1' ")
    assert "not a prototxt" in _convert_error(tmp_path, proto, model)


def test_caffe_wrong_names_and_shapes(tmp_path):
    weights = caffe_weights()
    proto, model = write_caffe(tmp_path, weights)
    model.write_bytes(caffemodel(weights, False, rename={"conv3": "conv3_new"}))
    assert "no layer 'conv3'" in _convert_error(tmp_path, proto, model)
    bad = dict(weights, conv2=(np.zeros((16, 4, 3, 3), np.float32), weights["conv2"][1]))
    model.write_bytes(caffemodel(bad, False))
    assert "conv2 weight has shape (16, 4, 3, 3)" in _convert_error(tmp_path, proto, model)
    bad = dict(weights, fc6=(np.zeros((HIDDEN, 100), np.float32), weights["fc6"][1]))
    model.write_bytes(caffemodel(bad, False))
    assert "fc6" in _convert_error(tmp_path, proto, model)
    bad = dict(weights, conv2=(np.zeros((16, 3, 5, 5), np.float32), weights["conv2"][1]))  # 8 inputs, 3 per group
    model.write_bytes(caffemodel(bad, False))
    assert "conv2" in _convert_error(tmp_path, proto, model)


def test_caffe_structures_that_are_not_alexnet2012(tmp_path):
    weights = caffe_weights()
    caffenet = NET[:2] + [NET[3], NET[2]] + NET[4:]  # pool before LRN
    proto, model = write_caffe(tmp_path, weights, order=caffenet)
    assert "CaffeNet" in _convert_error(tmp_path, proto, model)
    proto, model = write_caffe(tmp_path, weights, conv2_kernel=3)
    assert "conv2" in _convert_error(tmp_path, proto, model)
    proto.write_text(prototxt(False, True).replace("alpha: 0.0001", "alpha: 0.001"))
    assert "alpha" in _convert_error(tmp_path, proto, model)
    mean = tmp_path / "mean.binaryproto"
    mean.write_bytes(blob(np.zeros((1, 3, 100, 100), np.float32), False))
    assert "smaller than the input" in _convert_error(tmp_path, write_caffe(tmp_path, weights)[0], model, mean)
    mean.write_bytes(blob(np.zeros((1, 3, 256, 200), np.float32), False))
    assert "square" in _convert_error(tmp_path, write_caffe(tmp_path, weights)[0], model, mean)


def test_prototxt_text_format():
    tree = parse('a: 1 b: "x\\"y" # comment\nm { n: 2.5e-1 e: MAX } m: < n: -3 > r: [1, 2]')
    assert tree == {"a": [1], "b": ['x"y'], "m": [{"n": [0.25], "e": ["MAX"]}, {"n": [-3]}], "r": [1, 2]}


# ---- Keras h5 ---------------------------------------------------------------------------------

KERAS_NAMES = {"conv1": ["conv_1"], "conv2": ["conv_2_1", "conv_2_2"], "conv3": ["conv_3"],
               "conv4": ["conv_4_1", "conv_4_2"], "conv5": ["conv_5_1", "conv_5_2"],
               "fc6": ["dense_1"], "fc7": ["dense_2"], "fc8": ["dense_3"]}


def write_keras(path: Path, weights, layout: str, backend: str | None):
    """Keras' save_weights: root attribute layer_names, one group per layer with weight_names [W, b].
    "th": kernels (out, in, kh, kw); under Theano they are rotated 180 degrees, since Theano
    convolves. "tf": (kh, kw, in, out), as cross-correlation uses them. Dense W is (in, out).
    conv1 takes R, G, B, as convnets-keras feeds it."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        if backend:
            f.attrs["backend"] = backend.encode()
        names = []
        for paper, keras_names in KERAS_NAMES.items():
            w, b = weights[paper]
            w = w[:, ::-1] if paper == "conv1" else w  # B, G, R -> R, G, B
            for i, name in enumerate(keras_names):
                part = slice(i * len(b) // len(keras_names), (i + 1) * len(b) // len(keras_names))
                wk, bk = w[part], b[part]
                if paper.startswith("conv"):
                    wk = wk[:, :, ::-1, ::-1] if backend != "tensorflow" and layout == "th" else wk
                    wk = wk if layout == "th" else wk.transpose(2, 3, 1, 0)
                else:
                    wk = wk.T
                g = f.create_group(name)
                g.attrs["weight_names"] = [f"{name}_W".encode(), f"{name}_b".encode()]
                g[f"{name}_W"], g[f"{name}_b"] = np.ascontiguousarray(wk), bk
                names.append(name.encode())
        f.attrs["layer_names"] = names


@pytest.mark.parametrize("layout,backend", [("th", None), ("th", "theano"), ("tf", "tensorflow"), ("tf", None)])
def test_keras_matches_numpy_reference(tmp_path, layout, backend):
    weights = caffe_weights()
    write_keras(tmp_path / "alexnet_weights.h5", weights, layout, backend)
    done = convert_keras(tmp_path / "alexnet_weights.h5", tmp_path / "out.safetensors")
    assert ("flipped" in done["kernels"]) == (layout == "th" and backend != "tensorflow")
    x = random_input(n=1)
    got = logits(tmp_path / "out.safetensors", x[:, ::-1])
    assert np.abs(got - caffe_forward(weights, x)).max() < 1e-4
    p = load_pretrained(tmp_path / "out.safetensors").preprocess
    assert np.allclose(np.array(p.mean) * 255, (123.68, 116.779, 103.939))


def test_keras_orientation_override_and_bad_files(tmp_path):
    weights = caffe_weights()
    write_keras(tmp_path / "w.h5", weights, "th", None)
    convert_keras(tmp_path / "w.h5", tmp_path / "out.safetensors", kernels="tensorflow")  # wrong on purpose
    x = random_input(n=1)
    assert np.abs(logits(tmp_path / "out.safetensors", x[:, ::-1]) - caffe_forward(weights, x)).max() > 1e-2
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ConvertError, match="not a readable HDF5"):
        convert_keras(tmp_path / "junk.h5", tmp_path / "o.safetensors")
    import h5py

    with h5py.File(tmp_path / "w.h5", "a") as f:
        f.move("conv_3", "conv3")
    with pytest.raises(ConvertError, match="no layer 'conv_3'"):
        convert_keras(tmp_path / "w.h5", tmp_path / "o.safetensors")


# ---- TensorFlow npy ---------------------------------------------------------------------------

def tf_npy_dict(weights, fc6_order="hwc"):
    """bvlc_alexnet.npy: {name: [W, b]}, conv W (kh, kw, in, out), fc W (in, out), fc6's rows in
    H, W, C order (pool5 flattened in TensorFlow's N, H, W, C), conv1 in B, G, R."""
    out = {}
    for name, (w, b) in weights.items():
        if name.startswith("conv"):
            w = w.transpose(2, 3, 1, 0)
        elif name == "fc6" and fc6_order == "hwc":
            w = w.reshape(len(w), WIDTHS[-1], 6, 6).transpose(2, 3, 1, 0).reshape(-1, len(w))
        else:
            w = w.T
        out[name] = [np.ascontiguousarray(w), b]
    return out


@pytest.mark.parametrize("fc6_order", ["hwc", "chw"])
def test_tf_npy_matches_numpy_reference(tmp_path, fc6_order):
    weights = caffe_weights()
    np.save(tmp_path / "bvlc_alexnet.npy", tf_npy_dict(weights, fc6_order))  # a 0-d object array, as the original
    convert_tf_npy(tmp_path / "bvlc_alexnet.npy", tmp_path / "out.safetensors", fc6_order=fc6_order)
    x = random_input(n=1)
    assert np.abs(logits(tmp_path / "out.safetensors", x[:, ::-1]) - caffe_forward(weights, x)).max() < 1e-4


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_tf_npy_refuses_anything_but_arrays(tmp_path):
    target = tmp_path / "pwned"
    np.save(tmp_path / "evil.npy", np.array({"conv1": [_Evil(target)]}, dtype=object))
    with pytest.raises(ConvertError, match="refused to load"):
        load_npy_object(tmp_path / "evil.npy")
    assert not target.exists()
    # a raw pickle stream after an npy header: the same refusal (builtins.eval)
    (tmp_path / "raw.npy").write_bytes((tmp_path / "evil.npy").read_bytes()[:128] + pickle.dumps(eval))
    with pytest.raises(ConvertError):
        load_npy_object(tmp_path / "raw.npy")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ConvertError, match="plain float64 array"):
        convert_tf_npy(tmp_path / "plain.npy", tmp_path / "o.safetensors")
    np.save(tmp_path / "missing.npy", {"conv1": [np.zeros(1), np.zeros(1)]})
    with pytest.raises(ConvertError, match="no layer 'conv2', 'conv3'"):
        convert_tf_npy(tmp_path / "missing.npy", tmp_path / "o.safetensors")
    np.save(tmp_path / "odd.npy", {name: [np.zeros(1)] for name in ("conv1", "conv2", "conv3", "conv4", "conv5",
                                                                     "fc6", "fc7", "fc8")})
    with pytest.raises(ConvertError, match="conv1 is not a \\[W, b\\] pair"):
        convert_tf_npy(tmp_path / "odd.npy", tmp_path / "o.safetensors")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "missing.npy").read_bytes()[:150])
    with pytest.raises(ConvertError):
        convert_tf_npy(tmp_path / "cut.npy", tmp_path / "o.safetensors")


# ---- the command line -------------------------------------------------------------------------

def test_cli_convert_then_predict(tmp_path, capsys):
    proto, model = write_caffe(tmp_path, caffe_weights(), legacy=True)
    out = tmp_path / "bvlc.safetensors"
    assert main(["convert", "caffe", "--prototxt", str(proto), "--caffemodel", str(model), "--out", str(out)]) == 0
    assert "groups 1,2,1,2,2, LRN k=1" in capsys.readouterr().out
    Image.fromarray(np.full((300, 260, 3), 120, np.uint8)).save(tmp_path / "cat.jpg")
    assert main(["predict", "--weights", str(out), str(tmp_path / "cat.jpg"), "--top-k", "2", "--device", "cpu"]) == 0
    model.write_bytes(model.read_bytes()[:1000])
    assert main(["convert", "caffe", "--prototxt", str(proto), "--caffemodel", str(model), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("alexnet convert: error:") and "\n" not in err and "truncated" in err
    assert out.exists()  # the earlier file is untouched by a failed conversion


def test_wire_reader_packed_and_unpacked_floats():
    from alexnet.tasks.convert.wire import Message

    values = np.arange(4, dtype="<f4")
    unpacked = b"".join(varint(5 << 3 | 5) + struct.pack("<f", v) for v in values)
    for data in (field_bytes(5, values.tobytes()), unpacked):
        assert np.array_equal(Message(data + field_varint(1, 2)).numbers(5, "<f4"), values)


def test_converted_weights_in_the_workflow(tmp_path, split_folder):
    """features and alexnet.load take a converted file with no other flag (finetune: below)."""
    import alexnet

    proto, model = write_caffe(tmp_path, caffe_weights())
    mean = tmp_path / "mean.binaryproto"
    mean.write_bytes(blob(np.full((1, 3, 256, 256), 110, np.float32), True))
    out = tmp_path / "bvlc.safetensors"
    convert_caffe(proto, model, out, mean=mean)
    clf = alexnet.load(out)
    assert clf.predict(Image.new("RGB", (320, 240), (200, 30, 30))).label in [str(i) for i in range(CLASSES)]
    assert main(["features", "--weights", str(out), "--data", str(split_folder), "--out", str(tmp_path / "f.npz"),
                 "--workers", "0"]) == 0
    assert np.load(tmp_path / "f.npz")["train_features"].shape == (24, HIDDEN)


@pytest.mark.slow
def test_finetune_from_converted_weights(tmp_path, split_folder):
    proto, model = write_caffe(tmp_path, caffe_weights())
    mean = tmp_path / "mean.binaryproto"
    mean.write_bytes(blob(np.full((1, 3, 256, 256), 110, np.float32), True))
    out = tmp_path / "bvlc.safetensors"
    convert_caffe(proto, model, out, mean=mean)
    assert main(["finetune", "--weights", str(out), "--data", str(split_folder), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--batch-size", "8", "--workers", "0"]) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["arch"] == "alexnet2012" and ckpt["model_config"]["lrn_k"] == 1.0
    assert ckpt["model_config"]["num_classes"] == 3 and ckpt["preprocess"]["normalize"] == "paper"


@pytest.mark.slow
def test_caffe_at_bvlc_alexnet_size(tmp_path):
    """The real shapes (96..384 maps, 4096-wide fc, 1000 classes; a 244 MB 2014-format file)."""
    widths, hidden = (96, 256, 384, 384, 256), 4096
    weights = caffe_weights(classes=1000, widths=widths, hidden=hidden)
    proto, model = write_caffe(tmp_path, weights, legacy=True, group_lines=False, widths=widths, hidden=hidden,
                               classes=1000)
    done = convert_caffe(proto, model, tmp_path / "bvlc_alexnet.safetensors")
    assert done["groups"] == (1, 2, 1, 2, 2)
    loaded = load_pretrained(tmp_path / "bvlc_alexnet.safetensors")
    assert sum(p.numel() for p in loaded.model.parameters()) == 60_965_224  # the paper's count, as alexnet2012's
    x = random_input(n=1)
    with torch.no_grad():
        got = loaded.model(torch.from_numpy(np.ascontiguousarray(x[:, ::-1]))).double().numpy()
    assert np.abs(got - caffe_forward(weights, x)).max() < 1e-4


@pytest.mark.parametrize("args", [["convert"], ["convert", "caffe"], ["convert", "keras"], ["convert", "tf-npy"]])
def test_convert_help(args, capsys):
    with pytest.raises(SystemExit) as e:
        main([*args, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert ("--out" in out) if len(args) == 2 else all(kind in out for kind in ("caffe", "keras", "tf-npy"))


@pytest.mark.slow  # evaluate builds its ONNX Runtime path first
def test_evaluate_converted_weights(tmp_path, capsys):
    proto, model = write_caffe(tmp_path, caffe_weights(classes=3), classes=3)
    out = tmp_path / "w.safetensors"
    convert_caffe(proto, model, out)
    for split in ("train", "val"):
        for label in ("0", "1", "2"):  # the class names of a 3-output file are its indices
            (tmp_path / "data" / split / label).mkdir(parents=True)
            Image.new("RGB", (80, 64), (40 * int(label), 90, 200)).save(tmp_path / "data" / split / label / "a.png")
    assert main(["evaluate", "--weights", str(out), "--data", str(tmp_path / "data"), "--split", "val",
                 "--workers", "0", "--device", "cpu"]) == 0
    assert "[val, 3 images, centre crop]" in capsys.readouterr().out
