"""Loss and accuracy curves of a run, drawn from its metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import AlexNetError


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise AlexNetError(f"{path}: no such file; point at a run folder written by `alexnet train`")
    try:
        with open(path, newline="") as f:
            return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    except (ValueError, TypeError) as e:
        raise AlexNetError(f"{path}: not a metrics file written by `alexnet train` ({e})") from None


def draw_curves(rows: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Two panels: loss, and top-1 accuracy (train and validation, plus validation top-5)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [100 * r["train_top1"] for r in rows], "o-", label="train top-1")
    ax_acc.plot(epochs, [100 * r["val_top1"] for r in rows], "o-", label="validation top-1")
    ax_acc.plot(epochs, [100 * r["val_top5"] for r in rows], "--", label="validation top-5")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)  # a reader never sees half a PNG
    return path
