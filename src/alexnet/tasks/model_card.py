"""The Hugging Face folder's ``config.json`` and model card (``README.md``), made from what
the checkpoint knows: architecture, classes, data, the training recipe and its results."""

from __future__ import annotations

from typing import Any

from ..models.pretrained import Pretrained

# The recipe fields a reader of the card wants, in this order (TrainConfig's names).
RECIPE_FIELDS = ("recipe", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule",
                 "warmup_epochs", "label_smoothing", "image_size", "normalize", "lighting", "crop_scale", "weights")
MAX_LISTED_CLASSES = 100


def hf_config(p: Pretrained, metrics: dict[str, Any]) -> dict[str, Any]:
    labels = p.labels
    preprocess = {k: v for k, v in p.preprocess.to_dict().items() if k != "mean_image"}
    return {
        "library_name": "alexnet",
        "model_type": "alexnet",
        "architectures": ["AlexNet"],
        "arch": p.arch,
        "alexnet_config": p.model.config.to_dict(),
        "num_labels": len(labels),
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "class_names": p.class_names,
        "image_size": p.preprocess.crop,
        "preprocess": preprocess,
        "metrics": metrics,
    }


def render(p: Pretrained, info: dict[str, Any], has_curves: bool) -> str:
    """The model card: front matter, then what the model is, its data, recipe and results."""
    metrics = info["metrics"]
    params = sum(t.numel() for t in p.model.parameters())
    lines = [
        "---", "library_name: alexnet", "pipeline_tag: image-classification", "tags:", "- alexnet",
        "- image-classification", "---", "",
        f"# {p.arch} on {_data_name(info)}", "",
        f"An AlexNet (`{p.arch}`, {params:,} parameters) classifying {p.preprocess.crop}x{p.preprocess.crop} "
        f"images into {len(p.class_names)} classes, exported by `alexnet export` from `{info['source']}`.", "",
        "## Use", "", "```python", "import alexnet", "", 'clf = alexnet.load("PATH/TO/THIS/FOLDER")',
        'print(clf.predict("image.jpg"))', "```", "",
        "or `alexnet predict --weights PATH/TO/THIS/FOLDER image.jpg`, `alexnet serve PATH/TO/THIS/FOLDER`.", "",
        "## Data", "",
        *_data_lines(p, info), "",
        "## Preprocessing", "",
        f"Resize the shorter side to {p.preprocess.resize}, centre-crop {p.preprocess.crop}, scale to [0, 1], "
        + _normalisation(p) + ".", "",
        "## Training recipe", "",
        *_recipe_lines(info), "",
        "## Results", "",
        *_result_lines(metrics), "",
    ]
    if has_curves:
        lines += ["## Training curves", "", "![loss and accuracy per epoch](curves.png)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _data_name(info: dict[str, Any]) -> str:
    data = info.get("data") or {}
    source = str(data.get("source") or "")
    return source.rstrip("/").rsplit("/", 1)[-1] if source else "its data"


def _data_lines(p: Pretrained, info: dict[str, Any]) -> list[str]:
    data = info.get("data") or {}
    lines = []
    if data.get("source"):
        lines.append(f"Trained on `{data['source']}` (validation: the data's val/ split, or "
                     f"{data.get('val_split', 0.1):.0%} held out with a fixed seed).")
    else:
        lines.append(f"Source: {info['source']}.")
    shown = p.labels[:MAX_LISTED_CLASSES]
    more = f" and {len(p.labels) - len(shown)} more" if len(p.labels) > len(shown) else ""
    lines += ["", f"Classes ({len(p.labels)}): " + ", ".join(f"`{c}`" for c in shown) + more + "."]
    return lines


def _normalisation(p: Pretrained) -> str:
    pre = p.preprocess
    if pre.mean_image is not None:
        return f"subtract the training set's mean image (carried in the weights file), divide by {_fmt(pre.std)}"
    return f"subtract mean {_fmt(pre.mean)} and divide by std {_fmt(pre.std)} per channel ({pre.stats_from})"


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _recipe_lines(info: dict[str, Any]) -> list[str]:
    cfg = info.get("train_config")
    if not cfg:
        return ["Not recorded in the source (not a checkpoint of `alexnet train`)."]
    rows = [f"| {k} | {cfg[k]} |" for k in RECIPE_FIELDS if cfg.get(k) not in (None, "", [], ())]
    return ["| setting | value |", "|---|---|", *rows, "", f"Epochs run: {len(info.get('history') or [])}."]


def _result_lines(metrics: dict[str, Any]) -> list[str]:
    def pct(key: str) -> str:
        value = metrics.get(key)
        return f"{float(value):.2%}" if isinstance(value, (int, float)) else "not measured"

    val_top1 = metrics.get("best_val_top1", metrics.get("val_top1"))
    rows = [
        "| split | top-1 | top-5 |", "|---|---|---|",
        f"| validation | {f'{float(val_top1):.2%}' if val_top1 is not None else 'not measured'} | {pct('val_top5')} |",
        f"| test | {pct('test_top1')} | {pct('test_top5')} |",
    ]
    if "test_top1" not in metrics:
        rows += ["", "Test accuracy: run `alexnet evaluate --checkpoint CKPT --data DIR --json eval.json` and "
                     "export again with `--eval-json eval.json`."]
    return rows
