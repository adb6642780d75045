"""What a run shows and leaves behind: console lines, metrics.csv, TensorBoard, curves.png.

TensorBoard gets the scalars, the config as text, the conv1 filters each epoch and the
config as hparams against the best validation top-1 (the HParams tab compares runs)."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..extras import available
from .visuals import conv1_grid, draw_curves

METRIC_FIELDS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "img_per_s", "seconds")
EMA_FIELDS = ("ema_val_loss", "ema_val_top1")  # runs with --ema only
# (module, extra, what a run leaves out without it): extras, so a run without them trains all the same.
OPTIONAL_OUTPUTS = (("tensorboard", "tensorboard", "TensorBoard logs (tb/)"), ("matplotlib", "plots", "curves.png"))
# Drawing curves.png costs most of a second of CPU, much of a short epoch (digits, small
# folders): it is redrawn at most this often (seconds), and once more when the run ends.
CURVES_EVERY_S = 30.0


class MainRankOnly(logging.Filter):
    """Drops records on the non-zero ranks of a ``torchrun`` job (``RANK`` in the
    environment): rank 0 speaks for all of them, as one process would."""

    def filter(self, record: logging.LogRecord) -> bool:
        return os.environ.get("RANK", "0") == "0"


class _Stdout(logging.StreamHandler):
    """A handler that writes to ``sys.stdout`` as it is when a record comes (pytest and
    redirections replace it after the handler is made)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def log_to_stdout() -> None:
    """The messages of the ``alexnet`` loggers (``logging.getLogger(__name__)`` in every
    module) as plain lines on stdout, as ``print`` would write them, from rank 0 only.
    Called by the CLI and ``api.fit``; calling it again changes nothing."""
    package = logging.getLogger("alexnet")
    if not any(isinstance(h, _Stdout) for h in package.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(MainRankOnly())
        package.addHandler(handler)
    package.setLevel(logging.INFO)


class PlainProgress:
    """The progress bar's stand-in outside a terminal: one flushed line each time the loop
    reports (every --log-every steps): step, the loop's figures, and the time left."""

    def __init__(self, total: int, epoch: int, epochs: int, initial: int = 0):
        self.total, self.n, self.first, self.desc = total, initial, initial, f"epoch {epoch}/{epochs}"
        self.start, self.postfix = time.perf_counter(), None

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values  # printed at the next update, when the step is counted

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.postfix is not None:
            done, elapsed = self.n - self.first, time.perf_counter() - self.start
            eta = elapsed / done * (self.total - self.n) if done else 0.0
            figures = "  ".join(f"{k.replace('img_s', 'img/s')} {v}" for k, v in self.postfix.items())
            print(f"{self.desc} step {self.n}/{self.total}  {figures}  ETA {int(eta) // 60}:{int(eta) % 60:02d}", flush=True)
            self.postfix = None

    def close(self) -> None:
        pass


class RunLogger:
    """Writes only on the main rank; every other rank gets a silent one (``enabled=False``)."""

    def __init__(self, out: Path, enabled: bool, purge_step: int | None = None, title: str = "",
                 classes: int | None = None, config: dict[str, Any] | None = None):
        self.out, self.enabled, self.title, self.classes = out, enabled, title, classes
        self.tb = None
        self.curves = available("matplotlib")
        self._drawn_at = -float("inf")  # time.monotonic() of the last curves.png
        self._undrawn: list[dict[str, float]] | None = None  # history newer than curves.png
        missing = [(extra, what) for module, extra, what in OPTIONAL_OUTPUTS if not available(module)]
        if enabled and missing:
            logging.getLogger(__name__).info(f"note: no {' and no '.join(what for _, what in missing)} in this run: "
                                             f"pip install 'alexnet[{','.join(extra for extra, _ in missing)}]'")
        if enabled and available("tensorboard"):
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after its last checkpoint.
            self.tb = SummaryWriter(str(out / "tb"), purge_step=purge_step)
            if config is not None:
                self._describe(config)

    def _describe(self, config: dict[str, Any]) -> None:
        """The config as text, and as hparams whose metric is the best val top-1 so far."""
        from torch.utils.tensorboard.summary import hparams

        text = json.dumps(config, indent=2)
        self.tb.add_text("config", "\n".join("    " + line for line in text.splitlines()))  # markdown code block
        # hparams takes numbers, strings and booleans: lists and None become text.
        values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()}
        for summary in hparams(values, {"hparams/best_val_top1": 0.0}):
            self.tb.file_writer.add_summary(summary)

    def progress(self, total: int, epoch: int, epochs: int, initial: int = 0):
        from tqdm import tqdm

        if self.enabled and not (sys.stdout.isatty() and sys.stderr.isatty()):
            return PlainProgress(total, epoch, epochs, initial)  # a log file, a pipe, nohup, SLURM, CI
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

    def epoch(self, history: list[dict[str, float]], global_step: int, model: torch.nn.Module | None = None) -> None:
        """Rewrite metrics.csv from the whole history (so a resumed run never duplicates a
        row), log the epoch (and ``model``'s conv1 filters) to TensorBoard and redraw curves.png
        (unless it was drawn under ``CURVES_EVERY_S`` ago: then ``close`` draws it)."""
        if not self.enabled:
            return
        row = history[-1]
        tmp = self.out / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            columns = METRIC_FIELDS + (EMA_FIELDS if EMA_FIELDS[0] in row else ())
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
        tmp.replace(self.out / "metrics.csv")
        if self.tb:
            for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
                split, name = key.split("_", 1)
                self.tb.add_scalar(f"{split}/{name}", row[key], global_step)
            self.tb.add_scalar("epoch_img_per_s", row["img_per_s"], global_step)
            self.tb.add_scalar("hparams/best_val_top1", max(r["val_top1"] for r in history), global_step)
            if model is not None and hasattr(model, "conv1"):
                self.tb.add_image("conv1/filters", conv1_grid(model), global_step)
            self.tb.flush()
        if self.curves:
            self._undrawn = history
            if time.monotonic() - self._drawn_at >= CURVES_EVERY_S:
                self._draw()

    def _draw(self) -> None:
        if self._undrawn:
            draw_curves(self._undrawn, self.out / "curves.png", self.title, self.classes)
            self._drawn_at, self._undrawn = time.monotonic(), None

    def close(self) -> None:
        self._draw()
        if self.tb:
            self.tb.close()
            self.tb = None
