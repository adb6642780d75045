"""What a run draws while it trains: honest learning curves and the conv1 filters.

Drawing never touches matplotlib's global state: every picture is a
``matplotlib.figure.Figure`` on its own Agg canvas (no ``pyplot``, no
``matplotlib.use``), returned to the caller, so a notebook's own backend keeps
working and the caller decides whether to show it or save it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import AlexNetError
from ..extras import require

Rows = Sequence[dict[str, float]]  # metrics.csv rows: epoch, train_loss, ..., lr


def new_figure(width: float, height: float):
    """A Figure of ``width`` x ``height`` inches on a private Agg canvas."""
    require("matplotlib", "drawing pictures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically: a reader (a browser, TensorBoard) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # open(), not mkstemp: the umask's modes, as any file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise AlexNetError(f"{path}: cannot write the picture ({e.strerror or e})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def plain(text: str) -> str:
    """``text`` as matplotlib should print it: a '$' in a class or folder name is a dollar
    sign, not the start of a formula (an unpaired one would stop the drawing)."""
    return str(text).replace("$", r"\$")


def show_top5(rows: Rows, classes: int | None) -> bool:
    """Top-5 says something only with more than 5 classes; where the class count is not
    known, only if it ever fell below 100%."""
    if classes is not None:
        return classes > 5
    return any(r.get("val_top5", 1.0) < 1.0 for r in rows)


def best_row(rows: Rows) -> dict[str, float]:
    """The epoch with the best validation top-1 (the first of equals: what best.pt holds)."""
    return max(rows, key=lambda r: (r["val_top1"], -r["epoch"]))


def epoch_axis(ax, epochs: list[float]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)  # one epoch: a point in the middle, not 0.96-1.04
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def curves_figure(rows: Rows, classes: int | None = None, title: str = ""):
    """Three panels: loss, accuracy (with chance and the best epoch marked) and learning rate.

    ``classes``: the number of classes, for the chance line and the top-5 rule; None where
    it is not known. Returns the Figure.
    """
    if not rows:
        raise ValueError("no finished epoch to draw")
    epochs = [r["epoch"] for r in rows]
    best = best_row(rows)
    fig = new_figure(14, 4)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "s-", label="validation")
    ax_loss.set(ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [100 * r["train_top1"] for r in rows], "o-", label="train top-1")
    ax_acc.plot(epochs, [100 * r["val_top1"] for r in rows], "s-", label="validation top-1")
    if show_top5(rows, classes):
        ax_acc.plot(epochs, [100 * r["val_top5"] for r in rows], "^--", label="validation top-5")
    if classes:
        ax_acc.axhline(100 / classes, color="grey", ls=":", label=f"chance ({100 / classes:.3g}%)")
    ax_acc.plot([best["epoch"]], [100 * best["val_top1"]], "*", color="tab:red", ms=14, zorder=5,
                label=f"best: {100 * best['val_top1']:.1f}% (epoch {best['epoch']:g})")
    ax_acc.set(ylabel="accuracy (%)", title="accuracy", ylim=(0, 102))  # 102: a 100% line stays visible
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.axvline(best["epoch"], color="tab:red", alpha=0.25, lw=1)
    _lr_panel(ax_lr, epochs, [r.get("lr", math.nan) for r in rows])
    for ax in (ax_loss, ax_acc, ax_lr):
        epoch_axis(ax, epochs)
    ax_loss.legend()
    ax_acc.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(plain(title))
    return fig


def _lr_panel(ax, epochs: list[float], lrs: list[float]) -> None:
    ax.plot(epochs, lrs, "o-", color="tab:purple", label="learning rate")
    ax.set(ylabel="learning rate", title="learning rate (end of epoch)")
    positive = [v for v in lrs if v > 0]
    if positive and max(positive) / min(positive) > 20:  # a step or cosine decay reads better on a log scale
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)


def draw_curves(rows: Rows, path: str | os.PathLike, title: str = "", classes: int | None = None) -> Path:
    """:func:`curves_figure` written to ``path`` (PNG)."""
    return save_figure(curves_figure(rows, classes, title), path)


def conv1_tiles(weight: torch.Tensor) -> np.ndarray:
    """conv1's filters ``(N, 3, k, k)`` as RGB tiles ``(N, k, k, 3)`` in [0, 1], each scaled
    to its own range (as the paper's Figure 3), so weak filters are as visible as strong ones."""
    w = weight.detach().float().cpu()
    if w.ndim != 4 or w.shape[1] not in (1, 3):
        raise ValueError(f"expected conv1 weights (N, 3, k, k), got {tuple(w.shape)}")
    flat = w.flatten(1)
    lo, hi = flat.min(1).values[:, None, None, None], flat.max(1).values[:, None, None, None]
    tiles = (w - lo) / (hi - lo).clamp_min(1e-12)
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)
    return tiles.permute(0, 2, 3, 1).numpy()


def tower_blocks(model) -> int:
    """How many blocks conv1's filters form: 2 for the paper's two towers (conv2 reads
    filters 0-47 on one GPU and 48-95 on the other), else 1."""
    groups = model.config.groups[1]
    return groups if model.config.widths[0] % groups == 0 else 1


def filter_columns(n: int) -> int:
    """Columns for a block of ``n`` filters: 16 for a tower's 48, 3 rows as in Figure 3."""
    return max(1, math.ceil(math.sqrt(n * 16 / 3)))


def conv1_grid(model) -> torch.Tensor:
    """conv1's filters as one image ``(3, H, W)`` for TensorBoard, one tower above the other."""
    from torchvision.utils import make_grid

    tiles = torch.from_numpy(conv1_tiles(model.conv1.weight)).permute(0, 3, 1, 2)
    blocks = tower_blocks(model)
    per = len(tiles) // blocks
    cols = filter_columns(per)
    grids = [make_grid(tiles[b * per:(b + 1) * per], nrow=cols, padding=1, pad_value=1.0) for b in range(blocks)]
    return torch.cat(grids, dim=1) if blocks > 1 else grids[0]
