"""A training run: config in, run folder out (config.json, metrics.csv, checkpoints)."""

from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import checkpoint
from ..data import open_source
from ..errors import AlexNetError
from ..data.datasets import SPLIT_SEED, Splits
from ..models import get_model, model_info, parse_model_options
from .config import ConfigError, TrainConfig
from .device import resolve_device
from .loop import evaluate, train_one_epoch

METRIC_FIELDS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "seconds")


class RunDirError(AlexNetError):
    """The run folder cannot be used without losing earlier work."""


class DivergedError(AlexNetError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(dataset, batch_size: int, workers: int, device: torch.device, train: bool, seed: int = 0) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        # A last batch of one image would give BatchNorm a zero variance.
        drop_last=train and len(dataset) > batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed) if train else None,
    )


def prepare_run_dir(cfg: TrainConfig) -> Path:
    out = Path(cfg.out or f"runs/{cfg.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
        raise RunDirError(f"{out} already holds checkpoints of an earlier run; choose another --out or remove it")
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return out


def checkpoint_payload(
    cfg: TrainConfig, model, optimizer, scheduler, splits: Splits, epoch: int, metrics: dict[str, Any]
) -> dict[str, Any]:
    return {
        "arch": cfg.arch,
        "model_config": model.config.to_dict(),
        "class_names": list(splits.class_names),
        "preprocess": splits.preprocess.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "metrics": metrics,
        "train_config": asdict(cfg),
        "data": {"source": cfg.data, "val_split": cfg.val_split, "split_seed": SPLIT_SEED},
    }


def fit(cfg: TrainConfig, log=print) -> Path:
    """Train as ``cfg`` says; returns the run folder. Prints one line per epoch."""
    info = model_info(cfg.arch)  # fails early on an unknown --arch
    image_size = cfg.image_size or info.image_size
    device = resolve_device(cfg.device)
    out = prepare_run_dir(cfg)
    seed_everything(cfg.seed)

    splits = open_source(cfg.data, image_size, cfg.val_split)
    options = parse_model_options(cfg.model_option)
    if cfg.dropout is not None:
        options["dropout"] = cfg.dropout
    model = get_model(cfg.arch, num_classes=len(splits.class_names), **options).to(device)
    if image_size < model.min_input_size:
        raise ConfigError(f"--image-size {image_size} is below {cfg.arch}'s minimum of {model.min_input_size}")
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    train_loader = make_loader(splits.train, cfg.batch_size, cfg.workers, device, train=True, seed=cfg.seed)
    val_loader = make_loader(splits.val, cfg.batch_size, cfg.workers, device, train=False)

    (out / "config.json").write_text(cfg.to_json() + "\n")
    log(f"config: {json.dumps(asdict(cfg))}")
    log(f"data: {splits.description}")
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.arch}, {params:,} parameters, input {image_size}x{image_size}, device {device}")
    log(f"run folder: {out}")

    best_top1 = -1.0
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_top1 = train_one_epoch(model, train_loader, optimizer, device)
            if not math.isfinite(train_loss):
                last = out / "checkpoints" / "last.pt"
                kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
                raise DivergedError(f"epoch {epoch}: training loss is {train_loss}; the run diverged (try a lower --lr); {kept}")
            val = evaluate(model, val_loader, device)
            scheduler.step()
            row = {
                "epoch": epoch, "train_loss": train_loss, "train_top1": train_top1, "val_loss": val.loss,
                "val_top1": val.top1, "val_top5": val.top5, "lr": lr, "seconds": time.perf_counter() - start,
            }
            writer.writerow(row)
            f.flush()
            payload = checkpoint_payload(cfg, model, optimizer, scheduler, splits, epoch, row)
            checkpoint.save(out / "checkpoints" / "last.pt", payload)
            marker = ""
            if val.top1 > best_top1:
                best_top1 = val.top1
                checkpoint.save(out / "checkpoints" / "best.pt", payload)
                marker = " *"
            log(
                f"epoch {epoch:>3}/{cfg.epochs}  train loss {train_loss:.4f} top-1 {train_top1:.2%}  "
                f"val loss {val.loss:.4f} top-1 {val.top1:.2%} top-5 {val.top5:.2%}  "
                f"lr {lr:.3g}  {row['seconds']:.1f}s{marker}"
            )
    log(f"best val top-1 {best_top1:.2%}; checkpoints in {out / 'checkpoints'} (best.pt, last.pt)")
    return out
