"""The report's pictures: confusion matrix, per-class bars, image grids, conv1 filters.

Each function returns a ``matplotlib.figure.Figure`` on its own Agg canvas (see
``engine/visuals.py``): a notebook shows it, ``save_figure`` writes it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from ..engine.visuals import conv1_tiles, filter_columns, new_figure, plain, tower_blocks
from .analysis import ClassRow, normalise_rows

LABELLED_CLASSES = 30  # up to this many classes the matrix gets names and numbers in its cells


def confusion_figure(counts: np.ndarray, names: Sequence[str], title: str = "confusion matrix"):
    """The matrix normalised per true class (each row sums to 1), names on both axes.

    Up to ``LABELLED_CLASSES`` classes every cell shows its percentage; beyond that the
    cells are too small to read, so only the colours remain (the report adds a table of
    the most confused pairs).
    """
    c = len(names)
    names = [plain(n) for n in names]
    rates = normalise_rows(counts)
    side = min(16, max(4.5, 0.45 * c + 2.5)) if c <= LABELLED_CLASSES else 12
    fig = new_figure(side + 1, side)
    ax = fig.subplots()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    if c <= LABELLED_CLASSES:
        ax.set_xticks(range(c), names, rotation=45 if c > 4 else 0, ha="right" if c > 4 else "center", fontsize=9)
        ax.set_yticks(range(c), names, fontsize=9)
        for t in range(c):
            for p in range(c):
                if counts[t, p]:
                    ax.text(p, t, f"{100 * rates[t, p]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if rates[t, p] > 0.5 else "black")
    else:  # numbered ticks; the names are in the pairs table
        ax.tick_params(labelsize=7)
    return fig


def per_class_figure(rows: list[ClassRow], title: str = "per class"):
    """Horizontal bars of precision, recall and F1 for each class, support in the labels."""
    n = len(rows)
    fig = new_figure(8, min(40, max(2.5, 0.32 * n + 1.2)))
    ax = fig.subplots()
    y = np.arange(n)
    h = 0.27
    for k, (key, colour) in enumerate((("precision", "C0"), ("recall", "C1"), ("f1", "C2"))):
        ax.barh(y + (k - 1) * h, [100 * getattr(r, key) for r in rows], h, color=colour, label=key)
    ax.set_yticks(y, [plain(f"{r.name} ({r.support})") for r in rows], fontsize=8 if n <= 40 else 6)
    ax.invert_yaxis()  # first class on top, as in the table
    ax.set(xlim=(0, 100), xlabel="% (support in brackets)", title=title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def image_grid_figure(images: Sequence[Image.Image], captions: Sequence[str], title: str,
                      colours: Sequence[str] | None = None, cols: int = 8, thumb: float = 1.7):
    """Thumbnails with a caption each (e.g. "true: rose / pred: tulip 97%")."""
    n = max(1, len(images))
    cols = min(cols, n)
    rows = -(-n // cols)
    fig = new_figure(thumb * cols, (thumb + 0.45) * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for i, (ax, image, caption) in enumerate(zip(axes, images, captions)):
        ax.imshow(image.convert("RGB"))  # grey images would otherwise get a colour map
        ax.set_title(plain(caption), fontsize=7, color=colours[i] if colours else "black")
    if not images:
        axes[0].text(0.5, 0.5, "none", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle(plain(title), fontsize=10)
    return fig


def conv1_figure(model, title: str = ""):
    """conv1's filters as in the paper's Figure 3: one tile per filter, each scaled to its own
    range, the two towers of ``alexnet2012`` (48 + 48 filters) as two blocks."""
    tiles = conv1_tiles(model.conv1.weight)
    blocks = tower_blocks(model)
    per = len(tiles) // blocks
    cols = filter_columns(per)
    rows = -(-per // cols)
    k = tiles.shape[1]
    fig = new_figure(min(14, 0.4 * cols + 1), min(14, (0.4 * rows + 0.5) * blocks + 0.4))
    axes = np.atleast_1d(fig.subplots(blocks, 1, squeeze=False)).ravel()
    for b, ax in enumerate(axes):
        # One AxesImage per filter, placed on a grid: each keeps its own data and scale.
        for j in range(per):
            r, c = divmod(j, cols)
            ax.imshow(tiles[b * per + j], extent=(c * (k + 1), c * (k + 1) + k, r * (k + 1) + k, r * (k + 1)),
                      interpolation="nearest")
        ax.set_xlim(-1, cols * (k + 1))
        ax.set_ylim(rows * (k + 1), -1)
        ax.set_axis_off()
        if blocks > 1:
            ax.set_title(f"tower {b + 1}: filters {b * per}-{(b + 1) * per - 1}", fontsize=9)
    w = model.conv1.weight
    fig.suptitle(title or f"conv1: {w.shape[0]} filters of {w.shape[2]}x{w.shape[3]}x{w.shape[1]}", fontsize=10)
    return fig
