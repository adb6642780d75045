"""The report's HTML: one file, pictures embedded as base64, no script, no network."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 12px; }
.lead { color: #555; } .grid2 { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
"""
MANY_CLASSES = 30  # from here on the per-class and data tables fold away


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f'<td class="n">{v:.4g}</td>'
        if isinstance(v, int):
            return f'<td class="n">{v:,}</td>'
        return f"<td>{escape(str(v))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _fold(html: str, summary: str, fold: bool) -> str:
    return f"<details><summary>{escape(summary)}</summary>{html}</details>" if fold else html


def _scores(scores: list[dict], evaluations: list[dict]) -> str:
    rows = [[s["split"], s["views"], s["images"], f"{s['loss']:.4f}", _pct(s["top1"]), _pct(s["top5"])] for s in scores]
    html = _table(["split", "views", "images", "loss", "top-1", "top-5"], rows)
    if evaluations:
        html += "<p>Saved by <code>alexnet evaluate --json</code> in the run folder:</p>" + _table(
            ["file", "split", "views", "images", "loss", "top-1", "top-5"],
            [[e["file"], e.get("split", ""), e.get("views", ""), e.get("images", ""), f"{e.get('loss', float('nan')):.4f}",
              _pct(e["top1_acc"]), _pct(e.get("top5_acc", float("nan")))] for e in evaluations])
    return html


def _timings(rows: list[dict]) -> str:
    if not rows:
        return "<p>No finished epoch in metrics.csv.</p>"
    seconds = [r.get("seconds", 0.0) for r in rows]
    rates = [r["img_per_s"] for r in rows if "img_per_s" in r]
    items = [["epochs", len(rows)], ["training time", f"{sum(seconds) / 60:.1f} min"],
             ["per epoch (mean)", f"{sum(seconds) / len(rows):.1f} s"]]
    if rates:
        items.append(["training images/s (mean)", f"{sum(rates) / len(rates):.0f}"])
    return _table(["", "value"], items)


def _data(classes: list[str], data: dict[str, list[int]], description: str) -> str:
    splits = list(data)
    rows = [[name] + [data[s][i] for s in splits] for i, name in enumerate(classes)]
    rows.append(["all"] + [sum(data[s]) for s in splits])
    table = _table(["class"] + splits, rows)
    return f"<p>{escape(description)}</p>" + _fold(table, f"{len(classes)} classes: images per split", len(classes) > MANY_CLASSES)


def _analysis(main, files: dict[str, Path]) -> str:
    pairs = _table(["true class", "predicted as", "images", "of the class"],
                   [[p.true, p.predicted, p.count, _pct(p.fraction)] for p in main.pairs[:20]])
    many = len(main.pred.class_names) > MANY_CLASSES
    per_class = _table(["class", "precision", "recall", "F1", "support"],
                       [[r.name, f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}", r.support] for r in main.table])
    note = (" With this many classes the matrix shows colours only; the table names the most confused pairs."
            if many else "")
    return (
        f"<h2>Confusion matrix ({escape(main.split)})</h2><p class=lead>Each row is a true class, normalised to its "
        f"images, so the diagonal is the recall.{note}</p>"
        f'<div class="grid2"><div>{_img(main.files["confusion"], "confusion matrix")}</div>'
        f"<div><h3>Most confused pairs</h3>{pairs if main.pairs else '<p>No mistakes.</p>'}</div></div>"
        f"<h2>Per class ({escape(main.split)})</h2><p class=lead>Computed with sklearn.metrics."
        f" Also in per_class.csv.</p>"
        f'<div class="grid2"><div>{_fold(per_class, "the table", many)}</div>'
        f'<div>{_img(main.files["per_class"], "per-class precision, recall and F1")}</div></div>'
        f"<h2>Most confident mistakes</h2>{_img(main.files['mistakes'], 'most confident mistakes')}"
        f"<h2>Least confident correct answers</h2>{_img(main.files['unsure'], 'least confident correct answers')}"
    )


def render_report(*, run: Path, checkpoint: str, config: dict | None, rows: list[dict], best: dict | None,
                  classes: list[str], data: dict[str, list[int]], data_description: str, main, scores: list[dict],
                  files: dict[str, Path], summary: str, evaluations: list[dict]) -> str:
    """The whole page as a string."""
    chance = 1 / len(classes)
    headline = (f"Best validation top-1 {_pct(best['val_top1'])} at epoch {best['epoch']:g} of {len(rows)}"
                if best else "No finished epoch")
    parts = [
        f"<h1>{escape(run.name)}</h1><p class=lead>{escape(headline)}; {len(classes)} classes, chance "
        f"{_pct(chance)}. Model: {escape(checkpoint)}.</p>",
        "<h2>Scores</h2>" + _scores(scores, evaluations),
    ]
    if "curves" in files:
        parts.append("<h2>Learning curves</h2><p class=lead>The star and the red line mark the best epoch "
                     "(checkpoints/best.pt); the dotted line is chance.</p>" + _img(files["curves"], "learning curves"))
    parts.append(_analysis(main, files))
    parts.append("<h2>conv1 filters</h2><p class=lead>Each filter scaled to its own range, as in the paper's "
                 "Figure 3.</p>" + _img(files["conv1"], "conv1 filters"))
    parts.append("<h2>Data</h2>" + _data(classes, data, data_description))
    parts.append("<h2>Timings</h2>" + _timings(rows))
    parts.append(f"<h2>Model</h2><pre>{escape(summary)}</pre>")
    if config is not None:
        parts.append(f"<h2>Config</h2><pre>{escape(json.dumps(config, indent=2))}</pre>")
    title = escape(f"alexnet report: {run.name}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
