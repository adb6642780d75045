"""What a run shows and leaves behind: console lines, metrics.csv, TensorBoard, curves.png."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from ..tasks.plot import draw_curves

METRIC_FIELDS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "img_per_s", "seconds")


class RunLogger:
    """Writes only on the main rank; every other rank gets a silent one (``enabled=False``)."""

    def __init__(self, out: Path, enabled: bool, purge_step: int | None = None, title: str = ""):
        self.out, self.enabled, self.title = out, enabled, title
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after its last checkpoint.
            self.tb = SummaryWriter(str(out / "tb"), purge_step=purge_step)

    def progress(self, total: int, epoch: int, epochs: int, initial: int = 0):
        from tqdm import tqdm

        # disable=None: a bar on a terminal, nothing in a log file or CI.
        return tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                    dynamic_ncols=True, disable=None if self.enabled else True, file=sys.stderr)

    def step(self, global_step: int, loss: float, lr: float, img_per_s: float) -> None:
        if self.tb:
            self.tb.add_scalar("train/loss_step", loss, global_step)
            self.tb.add_scalar("lr", lr, global_step)
            self.tb.add_scalar("img_per_s", img_per_s, global_step)

    def images(self, batch: torch.Tensor, mean, std, global_step: int) -> None:
        """A grid of augmented training images, un-normalised, as the network sees them."""
        if self.tb:
            from torchvision.utils import make_grid

            x = batch[:32].float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
            self.tb.add_image("train/augmented_batch", make_grid(x.clamp(0, 1), nrow=8), global_step)

    def epoch(self, history: list[dict[str, float]], global_step: int) -> None:
        """Rewrite metrics.csv from the whole history (so a resumed run never duplicates a
        row), log the epoch to TensorBoard and redraw curves.png."""
        if not self.enabled:
            return
        row = history[-1]
        tmp = self.out / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
        tmp.replace(self.out / "metrics.csv")
        if self.tb:
            for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
                split, name = key.split("_", 1)
                self.tb.add_scalar(f"{split}/{name}", row[key], global_step)
            self.tb.add_scalar("epoch_img_per_s", row["img_per_s"], global_step)
            self.tb.flush()
        draw_curves(history, self.out / "curves.png", self.title)

    def close(self) -> None:
        if self.tb:
            self.tb.close()
