"""``--weights W``: a model with the class names and preprocessing that belong to it.

``W`` is one of

* ``torchvision``: torchvision's ImageNet weights (``AlexNet_Weights.IMAGENET1K_V1``),
  taken from the torch hub cache, downloaded when missing, with their 1000 categories;
* a checkpoint of this project (it describes itself: architecture, classes, preprocessing);
* a portable weights file (``models.portable``: ``alexnet export --format safetensors``), or
  a folder holding one as ``model.safetensors`` (``--format hf``);
* an exported ``.onnx`` file (``--format onnx``, float or int8): it runs in ONNX Runtime,
  for inference only;
* an exported TorchScript file (``--format torchscript``);
* a bare state dict (``.pth``/``.pt``, e.g. torchvision's ``alexnet-owt-7be5be79.pth``) or a
  ``.safetensors`` file; the architecture is the registered variant whose tensors fit.

Nothing here executes pickled code: ``.pth`` files are read with ``weights_only=True``
(``checkpoint.read``), safetensors and ONNX hold tensors and strings only, and of a
TorchScript file only the tensors and the metadata are used (the model is rebuilt here).
"""

from __future__ import annotations

import io
import os
import socket
import urllib.error
import warnings
import zipfile
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .. import checkpoint
from ..errors import first_line
from . import onnx_file, portable
from .alexnet import AlexNet, AlexNetConfig
from .preprocess import Preprocess
from .registry import get_model, list_models, model_info
from .weights import WeightsError, load_state_dict, model_from_checkpoint, normalize_state_dict

TORCHVISION = "torchvision"
# torchvision's file name, and the one it used before 0.13 (same tensors, re-saved).
HUB_FILES = ("alexnet-owt-7be5be79.pth", "alexnet-owt-4df8aa71.pth")
DOWNLOAD_TIMEOUT_S = 30  # per socket operation; an offline machine must not hang on DNS or a proxy


@dataclass
class Pretrained:
    """A model ready for inference and what it needs around it."""

    model: AlexNet
    class_names: list[str]
    preprocess: Preprocess
    description: str  # one line for the user: what was loaded, from where
    spec: str  # "torchvision" or an absolute path: what to pass to load_pretrained again
    arch: str = "?"  # the registered variant, where known
    display_names: dict[str, str] | None = None  # readable names where class names are ids (wnids)
    metrics: dict[str, Any] | None = None  # how well the weights did, where the file says
    trained_on: dict[str, Any] | None = None  # a checkpoint's record of its data: source, val split, held-out files

    @property
    def labels(self) -> list[str]:
        """One readable name per output: the display name where there is one, else the class name."""
        shown = self.display_names or {}
        return [shown.get(c, c) for c in self.class_names]

    def __iter__(self) -> Iterator[Any]:  # model, class_names, preprocess, description = load_pretrained(w)
        return iter((self.model, self.class_names, self.preprocess, self.description))


def load_pretrained(spec: str | os.PathLike) -> Pretrained:
    """Resolve a ``--weights`` value (see the module docstring) into a model in eval mode."""
    if str(spec) == TORCHVISION:
        return _from_torchvision()
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "model.safetensors").is_file():  # `alexnet export --format hf`
        return load_pretrained(path / "model.safetensors")
    if path.is_dir():
        raise WeightsError(f"{spec}: a folder without model.safetensors; --weights takes a folder only as "
                           "`alexnet export --format hf` writes it")
    if not path.is_file():
        raise WeightsError(f"{spec}: no such file; --weights takes 'torchvision', a checkpoint, an exported "
                           ".safetensors, .onnx, TorchScript file or hf folder, or a .pth state dict")
    if path.suffix == ".safetensors":
        state, meta = portable.read_safetensors(path)
        if meta.get("format") == portable.FORMAT:
            return _from_weights_file(path, portable.weights_from_metadata(path, meta, state))
        if meta.get("format"):
            raise _not_weights(path, meta)
        return _from_state_dict(path, state)
    if onnx_file.is_onnx(path):
        return _from_onnx(path)
    if _is_torchscript(path):
        return _from_torchscript(path)
    obj = checkpoint.read(path)
    if checkpoint.is_checkpoint(obj):
        checkpoint.check_version(obj, path)
        return _from_checkpoint(path, obj)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict or a checkpoint, found {type(obj).__name__}")
    return _from_state_dict(path, obj)


def from_object(obj: Mapping[str, Any], source: str = "state dict") -> Pretrained:
    """An in-memory checkpoint (a dict as ``checkpoint.read`` returns it) or state dict."""
    if checkpoint.is_checkpoint(obj):
        return _from_checkpoint(source, obj)
    return _from_state_dict(source, obj)


def _not_weights(path: Path, meta: Mapping[str, str]) -> WeightsError:
    # Another kind of file of this project (a `features --classifier` file): it names the
    # command that reads it, so this layer need not know the kinds above it.
    usage = f"; use `{meta['usage'].replace('FILE', str(path))}`" if meta.get("usage") else ""
    return WeightsError(f"{path} is a {meta['format']!r} file, not model weights{usage}")


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet class names in index order, as torchvision publishes them."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_preprocess() -> Preprocess:
    # torchvision's eval transform for these weights: resize 256, centre crop 224, ImageNet mean/std.
    return Preprocess.for_size(224)



def _spec(path: Path | str) -> str:
    return str(path.resolve()) if isinstance(path, Path) else str(path)


def _from_checkpoint(path: Path | str, ckpt: Mapping[str, Any]) -> Pretrained:
    model = model_from_checkpoint(ckpt).eval()
    names = list(ckpt["class_names"])
    description = f"{path} ({ckpt.get('arch', '?')}, {len(names)} classes)"
    shown = ckpt.get("display_names")
    return Pretrained(model, names, Preprocess.from_dict(ckpt["preprocess"]), description, _spec(path),
                      ckpt.get("arch", "?"), dict(zip(names, shown)) if shown else None, checkpoint_metrics(ckpt),
                      ckpt.get("data") if isinstance(ckpt.get("data"), dict) else None)


def checkpoint_metrics(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a checkpoint holds: its epoch's row of metrics.csv and the best val top-1."""
    metrics = {k: v for k, v in dict(ckpt.get("metrics") or {}).items() if isinstance(v, (int, float, str))}
    if ckpt.get("best_top1") is not None:
        metrics["best_val_top1"] = float(ckpt["best_top1"])
    return metrics


def _from_weights_file(path: Path, wf: portable.WeightsFile) -> Pretrained:
    try:
        model = AlexNet(AlexNetConfig(**wf.model_config))
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{path}: its model config is not usable ({e})") from None
    load_state_dict(model, wf.state_dict, str(path))
    description = f"{path} ({wf.arch}, {len(wf.class_names)} classes)"
    return Pretrained(model.eval(), wf.class_names, Preprocess.from_dict(wf.preprocess), description,
                      str(path.resolve()), wf.arch, _as_dict(wf.class_names, wf.display_names), wf.metrics)


def _from_onnx(path: Path) -> Pretrained:
    proto, meta = onnx_file.read_onnx(path)
    if meta.get("format") != portable.FORMAT:
        raise WeightsError(f"{path}: an ONNX file without alexnet metadata (classes, preprocessing); "
                           "write it with `alexnet export --format onnx`")
    wf = portable.weights_from_metadata(path, meta, {})
    quantized = onnx_file.is_quantized(proto)
    kind = "int8 ONNX" if quantized else "ONNX"
    description = f"{path} ({wf.arch}, {kind}, {len(wf.class_names)} classes)"
    try:
        config = AlexNetConfig(**wf.model_config)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{path}: its model config is not usable ({e})") from None
    model = onnx_file.OnnxModel(onnx_file.make_session(proto.SerializeToString()), description, quantized, config)
    return Pretrained(model.eval(), wf.class_names, Preprocess.from_dict(wf.preprocess), description,
                      str(path.resolve()), wf.arch, _as_dict(wf.class_names, wf.display_names), wf.metrics)


TORCHSCRIPT_META = "alexnet.json"  # the extra file of an exported TorchScript archive: the metadata table


def _is_torchscript(path: Path) -> bool:
    # A TorchScript archive is a zip holding code/; torch.save's zip files hold data.pkl only.
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _from_torchscript(path: Path) -> Pretrained:
    import json

    extra = {TORCHSCRIPT_META: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": it still reads
            scripted = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[TORCHSCRIPT_META] or "{}")
    except Exception as e:  # noqa: BLE001 - torch.jit raises RuntimeError and friends for foreign archives
        raise WeightsError(f"{path}: not a readable TorchScript file ({first_line(e)})") from None
    return _from_weights_file(path, portable.weights_from_metadata(path, meta, dict(scripted.state_dict())))


def _as_dict(names: list[str], shown: Any) -> dict[str, str] | None:
    if isinstance(shown, (list, tuple)):
        return dict(zip(names, shown))
    return dict(shown) if shown else None


def _from_state_dict(path: Path | str, state: Mapping[str, Any]) -> Pretrained:
    state = normalize_state_dict(state)
    arch, options = infer_arch(state)
    num_classes = state["fc8.weight"].shape[0] if "fc8.weight" in state else 1000
    model = get_model(arch, num_classes=num_classes, **options)
    load_state_dict(model, state, str(path))
    # A state dict knows no class names: 1000 outputs are taken to be ImageNet's (torchvision's
    # files, and anything fine-tuned from them without changing fc8); other counts get indices.
    if num_classes == 1000:
        names, preprocess, what = imagenet_categories(), imagenet_preprocess(), "ImageNet classes"
    else:
        names, what = [str(i) for i in range(num_classes)], f"{num_classes} unnamed classes"
        preprocess = Preprocess.for_size(model_info(arch).image_size)
    return Pretrained(model.eval(), names, preprocess, f"{path} ({arch} state dict, {what})", _spec(path), arch)


def infer_arch(state: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """The registered variant whose tensors (names and shapes) are exactly ``state``'s.

    With none exact, the closest one is returned, so that loading names what differs.
    """
    num_classes = state["fc8.weight"].shape[0] if "fc8.weight" in state else 1000
    candidates = [(name, {}) for name in list_models()] + [("alexnet_bn", {"bn_all": True})]
    best, best_misfits = candidates[0], None
    for name, options in candidates:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            own = get_model(name, num_classes=num_classes, **options).state_dict()
        misfits = len(own.keys() ^ state.keys()) + sum(
            1 for k in own.keys() & state.keys() if getattr(state[k], "shape", None) != own[k].shape
        )
        if misfits == 0:
            return name, options
        if best_misfits is None or misfits < best_misfits:
            best, best_misfits = (name, options), misfits
    return best


def hub_dir() -> Path:
    """Where torch hub keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _from_torchvision() -> Pretrained:
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    cached = next((hub_dir() / name for name in HUB_FILES if (hub_dir() / name).is_file()), None)
    if cached is not None:
        state, where = checkpoint.read(cached), cached
    else:
        state, where = _download(weights), hub_dir() / HUB_FILES[0]
    model = get_model("alexnet")
    load_state_dict(model, state, str(where))
    acc = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    description = f"torchvision ImageNet weights (IMAGENET1K_V1, top-1 {acc}%) from {where}"
    return Pretrained(model.eval(), list(weights.meta["categories"]), imagenet_preprocess(), description, TORCHVISION,
                      "alexnet", metrics={"imagenet_val_top1": acc / 100,
                                          "imagenet_val_top5": weights.meta["_metrics"]["ImageNet-1K"]["acc@5"] / 100})


def _download(weights) -> Mapping[str, torch.Tensor]:
    """torchvision's own download into the hub cache, checked against the hash in its name."""
    target = hub_dir() / HUB_FILES[0]
    try:
        # torch.hub announces the download on stdout, which belongs to the command's output (--json);
        # its progress bar (stderr) shows a download, and a failure is the one line below.
        with _socket_timeout(DOWNLOAD_TIMEOUT_S), redirect_stdout(io.StringIO()):
            return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:  # offline, refused, timed out, bad hash
        reason = first_line(getattr(e, "reason", None) or e, default=type(e).__name__)
        raise WeightsError(
            f"torchvision's AlexNet ImageNet weights are not in the torch hub cache and could not be downloaded "
            f"({reason}); download {weights.url} and save it as {target} (or set TORCH_HOME to a folder whose "
            f"hub/checkpoints/ holds it)"
        ) from None


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torch.hub opens its URL without a timeout; without one, a machine behind a dead proxy waits forever.
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)
