"""``alexnet report`` and ``evaluate --report``: what a model learned and where it fails.

``build_report(RUN_DIR)`` writes one self-contained HTML page (every picture embedded,
so it opens offline and can be mailed) and the PNGs and CSV beside it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import checkpoint
from ..data import DataError, Preprocess, Splits, open_source
from ..engine.visuals import best_row, curves_figure, save_figure
from ..errors import AlexNetError
from ..extras import check
from ..models import model_from_checkpoint
from . import analysis, figures
from .analysis import Predictions
from .gradcam import network_view
from .html import render_report
from .plot import read_metrics

log = logging.getLogger(__name__)

GRID_IMAGES = 16  # images in each of the mistakes / unsure grids
REPORT_LIBRARIES = ("matplotlib", "sklearn")  # the pictures; the per-class table


class ReportError(AlexNetError):
    """A run folder or output the report cannot use."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    preprocess: Preprocess
    class_names: list[str]
    display_names: list[str] | None
    val_split: float
    description: str
    data_source: str | None = None  # what the model was trained on, where known
    held_out: list[int] | None = None  # the val files its training split off (checkpoint.held_out)


def load_checkpoint_model(path: str | os.PathLike) -> LoadedModel:
    ckpt = checkpoint.load(path)
    return LoadedModel(model_from_checkpoint(ckpt).eval(), Preprocess.from_dict(ckpt["preprocess"]),
                       list(ckpt["class_names"]), ckpt.get("display_names"), ckpt["data"]["val_split"],
                       f"{path} ({ckpt.get('arch', '?')}, epoch {ckpt.get('epoch', '?')})", ckpt["data"]["source"],
                       checkpoint.held_out(ckpt))


def load_weights_model(weights: str) -> LoadedModel:
    from ..models.pretrained import load_pretrained

    p = load_pretrained(weights)
    return LoadedModel(p.model.eval(), p.preprocess, list(p.class_names), None, 0.1, p.description)


def open_data(m: LoadedModel, data: str) -> Splits:
    """``data`` with the model's preprocessing; its classes must be the model's."""
    splits = open_source(data, m.preprocess.crop, m.val_split, preprocess=m.preprocess, held_out=m.held_out)
    if list(m.class_names) not in (list(splits.class_names), list(splits.display_names or [])):
        shown = ", ".join(splits.class_names[:5]) + (" ..." if len(splits.class_names) > 5 else "")
        raise DataError(f"{data} has classes [{shown}] but the model predicts {len(m.class_names)} others "
                        f"([{', '.join(m.class_names[:5])}{' ...' if len(m.class_names) > 5 else ''}])")
    return splits


@dataclass
class Analysis:
    """One split's predictions and the files drawn from them."""

    split: str
    pred: Predictions
    table: list[analysis.ClassRow]
    pairs: list[analysis.Pair]
    files: dict[str, Path] = field(default_factory=dict)


def analyse(m: LoadedModel, splits: Splits, split: str, out_dir: str | os.PathLike, device: torch.device,
            batch_size: int = 128, workers: int = 0, views: str = "centre", prefix: str = "") -> Analysis:
    """Predict ``split`` and write the confusion matrix, the per-class table (CSV and PNG) and
    the mistakes / unsure grids to ``out_dir``."""
    dataset = splits.get(split)
    names = list(splits.display_names or splits.class_names)
    pred = analysis.predict_split(m.model, dataset, m.preprocess, names, device, batch_size, workers, views)
    a = Analysis(split, pred, analysis.per_class(pred), analysis.confused_pairs(pred))
    out = _writable(out_dir)
    where = f"{split}, {len(pred.labels)} images, {views}"
    a.files["confusion"] = save_figure(figures.confusion_figure(analysis.confusion(pred), names,
                                                                f"confusion matrix ({where})"), out / f"{prefix}confusion.png")
    a.files["per_class_csv"] = analysis.write_per_class_csv(a.table, out / f"{prefix}per_class.csv")
    a.files["per_class"] = save_figure(figures.per_class_figure(a.table, f"precision, recall, F1 ({where})"),
                                       out / f"{prefix}per_class.png")
    a.files["mistakes"] = save_figure(_grid(pred, dataset, m.preprocess, analysis.confident_mistakes(pred, GRID_IMAGES),
                                            f"most confident mistakes ({split})"), out / f"{prefix}mistakes.png")
    a.files["unsure"] = save_figure(_grid(pred, dataset, m.preprocess, analysis.unsure_correct(pred, GRID_IMAGES),
                                          f"least confident correct answers ({split})"), out / f"{prefix}unsure_correct.png")
    return a


def _grid(pred: Predictions, dataset: Dataset, preprocess: Preprocess, rows: np.ndarray, title: str):
    images, captions, colours = [], [], []
    for r in rows:
        item = dataset[int(pred.index[r])]
        if not isinstance(item, tuple):  # unreadable since the prediction: leave it out
            continue
        images.append(network_view(item[0], preprocess.crop, preprocess.resize))
        t, p = pred.class_names[pred.labels[r]], pred.class_names[pred.predicted[r]]
        captions.append(f"true: {_clip(t)}\npred: {_clip(p)} {pred.confidence[r]:.0%}")
        colours.append("tab:green" if t == p else "tab:red")
    return figures.image_grid_figure(images, captions, title, colours)


def _clip(name: str, n: int = 18) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _writable(folder: str | os.PathLike) -> Path:
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".alexnet-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ReportError(f"{out}: cannot write there ({e.strerror or e}); choose another output") from None
    return out


def run_checkpoint(run_dir: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise ReportError(f"{run_dir}: no checkpoints/best.pt or last.pt; point at a run folder written by `alexnet train`")


def build_report(run_dir: str | os.PathLike, data: str | None = None, out: str | os.PathLike | None = None,
                 device: torch.device = torch.device("cpu"), batch_size: int = 128, workers: int = 0,
                 tta: bool = False) -> Path:
    """Write the run's report (``RUN_DIR/report.html`` by default) and its PNGs beside it."""
    check("alexnet report", *REPORT_LIBRARIES)
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"{run}: no such run folder")
    ckpt_path = run_checkpoint(run)
    m = load_checkpoint_model(ckpt_path)
    source = data or m.data_source
    try:
        splits = open_data(m, source)
    except DataError as e:
        raise ReportError(f"{e} (pass the data the run was trained on with --data)") from None
    html_path = Path(out) if out else run / "report.html"
    if html_path.is_dir():  # --out a folder: the page goes inside it
        html_path = html_path / "report.html"
    folder = _writable(html_path.parent)
    rows = read_metrics(run) if (run / "metrics.csv").is_file() else []
    classes = len(m.class_names)
    files: dict[str, Path] = {}
    if rows:
        files["curves"] = save_figure(curves_figure(rows, classes, f"{run.name}"), folder / "curves.png")
    files["conv1"] = save_figure(figures.conv1_figure(m.model), folder / "conv1_filters.png")
    split = "test" if splits.test is not None else "val"  # never images the run trained on
    log.info(f"report: predicting {split} of {source} with {ckpt_path}")
    main = analyse(m, splits, split, folder, device, batch_size, workers)
    scores = _scores(m, splits, main, device, batch_size, workers, tta)
    page = render_report(
        run=run, checkpoint=m.description, config=_read_json(run / "config.json"), rows=rows,
        best=best_row(rows) if rows else None, classes=m.class_names, data=_data_table(splits),
        data_description=splits.description, main=main, scores=scores, files=files,
        summary=_summary_text(m), evaluations=_saved_evaluations(run))
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(html_path)
    return html_path


def _scores(m: LoadedModel, splits: Splits, main: Analysis, device, batch_size, workers, tta) -> list[dict]:
    """Loss, top-1 and top-5 on each split the source holds apart from training (and with
    ``tta``, of flip and ten-crop views on the analysed split)."""
    out = []
    for split in ("val", "test"):
        if split not in splits.available:
            continue
        pred = main.pred if split == main.split else analysis.predict_split(
            m.model, splits.get(split), m.preprocess, main.pred.class_names, device, batch_size, workers)
        out.append(_score(split, "centre crop", pred))
    if tta:
        for views in ("flip", "ten-crop"):
            log.info(f"report: {views} views of {main.split}")
            pred = analysis.predict_split(m.model, splits.get(main.split), m.preprocess, main.pred.class_names,
                                          device, batch_size, workers, views)
            out.append(_score(main.split, views, pred))
    return out


def _score(split: str, views: str, pred: Predictions) -> dict:
    return {"split": split, "views": views, "images": len(pred.labels), "loss": pred.loss, "top1": pred.top1,
            "top5": pred.topk(5), "skipped": pred.skipped}


def _data_table(splits: Splits) -> dict[str, list[int]]:
    """Images per class in each split."""
    table = {}
    for split in splits.available:
        targets = getattr(splits.get(split), "targets", None)
        if targets is not None:
            table[split] = np.bincount(np.asarray(targets, dtype=int), minlength=len(splits.class_names)).tolist()
    return table


def _summary_text(m: LoadedModel) -> str:
    from .summary import format_summary, summarize

    try:
        return format_summary(summarize(m.model, m.preprocess.crop), f"input (N, 3, {m.preprocess.crop}, {m.preprocess.crop})")
    except (ValueError, RuntimeError) as e:  # a model that does not run at its own crop size
        return f"(no summary: {e})"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _saved_evaluations(run: Path) -> list[dict]:
    """`alexnet evaluate --json` results saved in the run folder (test sets, ten-crop ...)."""
    found = []
    for path in sorted(run.glob("*.json")):
        doc = _read_json(path)
        if isinstance(doc, dict) and "top1_acc" in doc:
            found.append({"file": path.name, **doc})
    return found


def evaluation_report(out_dir: str | os.PathLike, data: str, split: str, device: torch.device, *,
                      checkpoint: str | None = None, weights: str | None = None, ten_crop: bool = False,
                      batch_size: int = 128, workers: int = 0) -> Path:
    """``evaluate --report DIR``: the analysis files of ``split`` of ``data`` for a checkpoint
    or ``--weights``, in ``out_dir``."""
    check("evaluate --report", *REPORT_LIBRARIES)
    m = load_checkpoint_model(checkpoint) if checkpoint else load_weights_model(weights)
    splits = open_data(m, data)
    analyse(m, splits, split, out_dir, device, batch_size, workers, "ten-crop" if ten_crop else "centre")
    return Path(out_dir)
