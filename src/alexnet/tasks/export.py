"""``alexnet export``: a trained model as a file other programs can use.

Every format carries the portable weights file's metadata (``models.portable``: class names,
preprocessing, architecture config, the run's metrics), so each loads again with
``alexnet.load`` and ``--weights``. Files are written atomically with the user's umask.

* ``safetensors``: the weights and their metadata; no optimizer, no pickle.
* ``onnx``: input ``images`` (batch, 3, crop, crop) with a free batch size, output
  ``logits``; checked against eager PyTorch with ONNX Runtime before it is written.
  ``quantize="int8"``: static int8 quantization by ONNX Runtime (``tasks.quantize``).
* ``torchscript``: a traced module, loadable with ``torch.jit.load`` and nothing of this
  package; the metadata is its extra file ``alexnet.json``.
* ``hf``: a folder in the Hugging Face layout: ``config.json``, ``model.safetensors``,
  ``README.md`` (a model card) and the run's ``curves.png``.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint
from ..data.classnames import CLASS_LIST_FILES, display_names, read_class_list
from ..engine.inference import export_onnx
from ..errors import AlexNetError
from ..extras import check
from ..models import onnx_file
from ..models.portable import atomic_path, save_weights_file, weights_metadata
from ..models.pretrained import TORCHSCRIPT_META, Pretrained, load_pretrained
from . import model_card

FORMATS = ("safetensors", "onnx", "torchscript", "hf")
SUFFIX = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".torchscript.pt", "hf": "_hf"}
# Largest |exported - eager| logit accepted, relative to max(1, max |eager logit|): fp32
# paths differ from eager only in the order of their sums.
TOLERANCE = 1e-4


class ExportError(AlexNetError):
    """An export that cannot be made or did not check out."""


@dataclass
class Exported:
    path: Path
    format: str
    lines: list[str] = field(default_factory=list)  # what was checked and measured, for the user


def default_out(source: str, fmt: str, quantize: str | None = None) -> Path:
    stem = "alexnet_torchvision" if source == "torchvision" else str(Path(source).with_suffix(""))
    if fmt == "onnx" and quantize:
        return Path(f"{stem}.{quantize}.onnx")
    return Path(stem + SUFFIX[fmt])


def export(source: str, fmt: str, out: str | Path | None = None, *, quantize: str | None = None,
           calibration_data: str | None = None, calibration_images: int = 256,
           eval_json: str | None = None, class_list: str | None = None) -> Exported:
    """Export ``source`` (anything ``--weights`` takes, but ONNX) as ``fmt`` to ``out``."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if quantize and fmt != "onnx":
        raise ExportError("--quantize applies to --format onnx only")
    if quantize and quantize != "int8":
        raise ExportError(f"--quantize {quantize}: only int8 is supported")
    if quantize and not calibration_data:
        raise ExportError("--quantize int8 needs --calibration-data DIR: images like the ones the model will see")
    if fmt == "onnx":  # written with onnx, checked with onnxruntime
        check("--format onnx", "onnx", "onnxruntime")
    pretrained = load_pretrained(source)
    if isinstance(pretrained.model, onnx_file.OnnxModel):
        raise ExportError(f"{source} is an ONNX file already; export from the checkpoint or a safetensors export")
    if class_list:
        pretrained.display_names = _wnid_names(pretrained.class_names, Path(class_list))
    out = Path(out) if out else default_out(source, fmt, quantize)
    info = _source_info(source, pretrained, eval_json)
    try:
        if fmt == "safetensors":
            return _safetensors(pretrained, info, out)
        if fmt == "onnx":
            return _onnx(pretrained, info, out, quantize, calibration_data, calibration_images)
        if fmt == "torchscript":
            return _torchscript(pretrained, info, out)
        return _hf(pretrained, info, out)
    except OSError as e:  # a read-only folder, a file where a folder should be, a full disk
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None


def _wnid_names(classes: list[str], listing: Path) -> dict[str, str]:
    """Readable names for ImageNet wnid classes, through a class list (imagenet_class_index.json,
    LOC_synset_mapping.txt) that gives each wnid its ImageNet index."""
    if not listing.is_file():
        raise ExportError(f"--class-list {listing}: no such file")
    order = read_class_list(listing)
    names = display_names(classes, listing.parent) if len(order) == 1000 else None
    if listing.name not in CLASS_LIST_FILES or names is None:
        raise ExportError(f"--class-list {listing}: the classes are not ImageNet wnids found in it "
                          "(give imagenet_class_index.json or LOC_synset_mapping.txt)")
    return dict(zip(classes, names))


def _source_info(source: str, p: Pretrained, eval_json: str | None) -> dict[str, Any]:
    """What the model card and the metadata say beyond the weights: metrics, recipe, data."""
    info: dict[str, Any] = {"source": p.spec, "metrics": dict(p.metrics or {}), "train_config": None, "data": None,
                            "history": [], "run_dir": None}
    if source != "torchvision" and Path(source).is_file():
        obj = _maybe_checkpoint(Path(source))
        if obj is not None:
            info.update(train_config=obj.get("train_config"), data=obj.get("data"), history=obj.get("history") or [])
            if Path(source).parent.name == "checkpoints":
                info["run_dir"] = Path(source).parent.parent
    if eval_json:
        info["metrics"].update(_evaluation(eval_json))
    return info


def _maybe_checkpoint(path: Path) -> dict | None:
    try:
        obj = checkpoint.read(path)
    except checkpoint.CheckpointError:
        return None
    return obj if checkpoint.is_checkpoint(obj) else None


def _evaluation(path: str) -> dict[str, float]:
    """``alexnet evaluate --json FILE``'s figures as ``{split}_top1``, ``{split}_top5``."""
    try:
        report = json.loads(Path(path).read_text())
        split = report["split"]
        return {f"{split}_top1": float(report["top1"]), f"{split}_top5": float(report["top5"]),
                f"{split}_images": int(report["images"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"--eval-json {path}: not a report of `alexnet evaluate --json` ({e})") from None


def metadata_args(p: Pretrained, info: dict[str, Any]) -> dict[str, Any]:
    extra = {"source": info["source"], "exported_by": f"alexnet {_version()}"}
    return {"arch": p.arch, "class_names": p.class_names, "preprocess": p.preprocess.to_dict(),
            "display_names": p.display_names, "metrics": info["metrics"] or None, "extra": extra}


def _version() -> str:
    from .. import __version__

    return __version__


def _safetensors(p: Pretrained, info: dict[str, Any], out: Path) -> Exported:
    save_weights_file(out, p.model, **metadata_args(p, info))
    return Exported(out, "safetensors", [f"{len(p.model.state_dict())} tensors, {_size(out)}"])


def _example(p: Pretrained, batch: int = 1) -> torch.Tensor:
    size = p.preprocess.crop
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _onnx(p: Pretrained, info: dict[str, Any], out: Path, quantize: str | None, calibration_data: str | None,
          calibration_images: int) -> Exported:
    model = copy.deepcopy(p.model).cpu().eval()
    proto = export_onnx(model, _example(p))
    meta = weights_metadata(model, **metadata_args(p, info), embed_mean_image=True)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "alexnet"
    data = proto.SerializeToString()
    error = _check_against_eager(model, data, p)
    lines = [f"checked against eager PyTorch with onnxruntime at batch 1 and 3: max |diff| {error:.2e}"]
    if quantize:
        from .quantize import quantize_int8

        data, report = quantize_int8(data, p, calibration_data, calibration_images)
        lines += report
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    lines.append(f"{_size(out)}, input 'images' (batch, 3, {p.preprocess.crop}, {p.preprocess.crop}), output 'logits'")
    return Exported(out, "onnx", lines)


@torch.no_grad()
def _check_against_eager(model: torch.nn.Module, data: bytes, p: Pretrained) -> float:
    session = onnx_file.make_session(data)
    worst = 0.0
    for batch in (1, 3):
        x = _example(p, batch)
        reference = model(x)
        (logits,) = session.run(None, {"images": x.numpy()})
        error = (torch.from_numpy(logits) - reference).abs().max().item()
        bound = TOLERANCE * max(1.0, reference.abs().max().item())
        if not error <= bound:  # also catches NaN
            raise ExportError(f"the ONNX model's logits differ from eager PyTorch by {error:.3g} at batch {batch} "
                              f"(allowed {bound:.3g}); not written")
        worst = max(worst, error)
    return worst


def _torchscript(p: Pretrained, info: dict[str, Any], out: Path) -> Exported:
    model = copy.deepcopy(p.model).cpu().eval()
    example = _example(p, 2)
    # Tracing records this size's shape arithmetic (cuda-convnet padding, input checks) as
    # constants: the module takes any batch of crop x crop images, as the ONNX file does.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        error = (traced(_example(p, 3)) - model(_example(p, 3))).abs().max().item()
    meta = weights_metadata(model, **metadata_args(p, info), embed_mean_image=True)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.save is deprecated": it still reads everywhere
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})
    return Exported(out, "torchscript", [f"traced; max |diff| against eager at batch 3: {error:.2e}", _size(out),
                                         "load anywhere with torch.jit.load(path)"])


def _hf(p: Pretrained, info: dict[str, Any], out: Path) -> Exported:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; --format hf writes a folder")
    out.mkdir(parents=True, exist_ok=True)
    save_weights_file(out / "model.safetensors", p.model, **metadata_args(p, info))
    config = model_card.hf_config(p, info["metrics"])
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    curves = info["run_dir"] / "curves.png" if info["run_dir"] else None
    has_curves = bool(curves and curves.is_file())
    if has_curves:
        with atomic_path(out / "curves.png") as tmp:
            shutil.copyfile(curves, tmp)
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(model_card.render(p, info, has_curves))
    files = sorted(f.name for f in out.iterdir() if not f.name.startswith("."))
    return Exported(out, "hf", [f"files: {', '.join(files)}"])


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"
