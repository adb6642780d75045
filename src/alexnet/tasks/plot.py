"""Learning curves from run folders: one run's honest curves, or several runs overlaid."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

from ..engine.visuals import Rows, curves_figure, draw_curves, epoch_axis, new_figure, plain, save_figure, show_top5
from ..errors import AlexNetError

__all__ = ["compare_figure", "curves_figure", "draw_compare", "draw_curves", "read_metrics", "run_classes", "run_names",
           "write_curves"]


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise AlexNetError(f"{path}: no such file; point at a run folder written by `alexnet train`")
    try:
        with open(path, newline="") as f:
            rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as e:
        raise AlexNetError(f"{path}: not a metrics file written by `alexnet train` ({e})") from None
    needed = {"epoch", "train_loss", "train_top1", "val_loss", "val_top1"}
    if rows and (missing := needed - set(rows[0])):
        raise AlexNetError(f"{path}: not a metrics file written by `alexnet train` (no {', '.join(sorted(missing))})")
    return rows


def run_classes(run_dir: str | os.PathLike) -> list[str] | None:
    """The run's class names, from its best or last checkpoint; None if it has none."""
    from .. import checkpoint

    for name in ("best.pt", "last.pt"):
        path = Path(run_dir) / "checkpoints" / name
        if path.is_file():
            try:
                return list(checkpoint.load(path)["class_names"])
            except (AlexNetError, KeyError):
                continue
    return None


def run_names(run_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Short labels for runs: the folder names, or the whole paths where two names clash."""
    names = [Path(os.path.abspath(r)).name for r in run_dirs]
    if len(set(names)) == len(names):
        return names
    return [str(r) for r in run_dirs]


def compare_figure(runs: dict[str, Rows], classes: int | None = None, title: str = ""):
    """Several runs overlaid, one colour each: loss (train dashed, validation solid) and
    validation top-1 (and top-5 with more than 5 classes). Returns the Figure."""
    fig = new_figure(13, 4.5)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs: list[float] = []
    for i, (name, rows) in enumerate(runs.items()):
        colour, name = f"C{i % 10}", plain(name)
        x = [r["epoch"] for r in rows]
        epochs += x
        ax_loss.plot(x, [r["train_loss"] for r in rows], "o--", color=colour, alpha=0.6, label=f"{name} train")
        ax_loss.plot(x, [r["val_loss"] for r in rows], "s-", color=colour, label=f"{name} validation")
        ax_acc.plot(x, [100 * r["val_top1"] for r in rows], "s-", color=colour, label=f"{name} top-1")
        if show_top5(rows, classes):
            ax_acc.plot(x, [100 * r["val_top5"] for r in rows], "^:", color=colour, label=f"{name} top-5")
    if classes:
        ax_acc.axhline(100 / classes, color="grey", ls=":", label=f"chance ({100 / classes:.3g}%)")
    ax_loss.set(ylabel="cross-entropy loss", title="loss (dashed: train)")
    ax_acc.set(ylabel="validation accuracy (%)", title="validation accuracy", ylim=(0, 102))
    for ax in (ax_loss, ax_acc):
        epoch_axis(ax, epochs)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(plain(title))
    return fig


def draw_compare(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Read each run's metrics.csv and write their overlaid curves to ``out`` (PNG)."""
    runs: dict[str, Rows] = {}
    counts = set()
    for name, run_dir in zip(run_names(run_dirs), run_dirs):
        rows = read_metrics(run_dir)
        if not rows:
            raise AlexNetError(f"{run_dir}/metrics.csv has no finished epoch yet")
        runs[name] = rows
        classes = run_classes(run_dir)
        counts.add(len(classes) if classes else None)
    # A chance line only when every run has the same, known, number of classes.
    classes = counts.pop() if len(counts) == 1 else None
    return save_figure(compare_figure(runs, classes), out)


def write_curves(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Redraw a run's curves (RUN_DIR/curves.png by default) from its metrics.csv."""
    rows = read_metrics(run_dir)
    if not rows:
        raise AlexNetError(f"{run_dir}/metrics.csv has no finished epoch yet")
    classes = run_classes(run_dir)
    title = _run_title(run_dir)
    return draw_curves(rows, out or Path(run_dir) / "curves.png", title, len(classes) if classes else None)


def _run_title(run_dir: str | os.PathLike) -> str:
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
        return f"{cfg['arch']} on {cfg['data']}"
    except (OSError, ValueError, KeyError, TypeError):
        return str(run_dir)
