"""A training run: config in, run folder out. Resumable at any step, one code path for DDP.

Run folder: config.json, metrics.csv, curves.png, tb/ (TensorBoard), data_stats.pt,
checkpoints/last.pt and best.pt. Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoint
from ..data import open_source
from ..data.augment import DataStats, compute_stats
from ..data.datasets import SPLIT_SEED, Splits
from ..data.loading import EpochBatchSampler, Transformed, eval_loader, train_loader
from ..data.transforms import Preprocess, eval_transform, stats_transform, train_transform
from ..errors import AlexNetError
from ..models import AlexNet, get_model, model_info, parse_model_options
from ..models.weights import load_state_dict
from . import distributed
from .config import RESUME_OVERRIDES, ConfigError, TrainConfig
from .logging import RunLogger
from .loop import Knobs, Position, Totals, evaluate, train_one_epoch
from .optim import Schedule, build_optimizer


class RunDirError(AlexNetError):
    """The run folder cannot be used without losing earlier work, or holds no run to resume."""


class DivergedError(AlexNetError):
    """The loss became NaN or infinite."""


class RunInterrupted(Exception):
    """Ctrl-C stopped the run after saving it; ``--resume`` continues it."""


@dataclass
class Progress:
    """Everything about where a run is, beyond the model and optimizer; saved in checkpoints."""

    epoch: int = 0  # completed epochs
    position: Position = field(default_factory=Position)
    history: list[dict[str, float]] = field(default_factory=list)
    best_top1: float = -1.0
    epochs_since_best: int = 0


def resolve_config(cfg: TrainConfig, explicit: set[str]) -> tuple[TrainConfig, dict[str, Any] | None]:
    """With ``--resume``: the run's own config (plus the few allowed overrides) and its last checkpoint."""
    if not cfg.resume:
        return cfg, None
    if not cfg.out:
        raise ConfigError("--resume needs --out RUN_DIR, the folder of the run to continue")
    path = Path(cfg.out) / "checkpoints" / "last.pt"
    if not path.exists():
        raise RunDirError(f"{path}: no checkpoint to resume from; start the run without --resume")
    ckpt = checkpoint.load(path)
    saved = ckpt.get("train_config")
    if not isinstance(saved, dict) or "position" not in ckpt:
        raise RunDirError(f"{path}: has no training state to resume from")
    changed = sorted(k for k in explicit - RESUME_OVERRIDES if getattr(cfg, k) != saved.get(k))
    if changed:
        raise ConfigError(
            f"--resume continues the run as it was configured; cannot change {', '.join('--' + k.replace('_', '-') for k in changed)} "
            f"(only {', '.join(sorted('--' + k.replace('_', '-') for k in RESUME_OVERRIDES - {'out', 'resume'}))} may differ)"
        )
    return replace(TrainConfig(**saved), **{k: getattr(cfg, k) for k in explicit & RESUME_OVERRIDES}), ckpt


def prepare_run_dir(cfg: TrainConfig, d: distributed.Dist) -> Path:
    # Every rank must use the same folder, so rank 0's choice of default name wins.
    name = cfg.out or f"runs/{cfg.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(distributed.gather_objects(d, name)[0])
    if not cfg.resume and d.main:
        if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
            raise RunDirError(f"{out} already holds checkpoints of an earlier run; continue it with --resume, or choose another --out")
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return out


def dataset_stats(cfg: TrainConfig, splits: Splits, base: Preprocess, out: Path, d: distributed.Dist, log) -> Preprocess:
    """The training set's mean (and mean image), std and RGB PCA, computed once per run folder (on rank 0)."""
    if cfg.stats_images == 0:
        if cfg.normalize == "image":
            raise ConfigError("--normalize image needs the training set's mean image; drop --stats-images 0")
        return base
    cache = out / "data_stats.pt"
    key = {"data": cfg.data, "resize": base.resize, "train_images": len(splits.train), "max_images": cfg.stats_images}
    if d.main:
        cached = checkpoint.read(cache) if cache.exists() else None
        if cached is None or cached.get("key") != key:
            start = time.perf_counter()
            stats = compute_stats(Transformed(splits.train, stats_transform(base)), cfg.stats_images, cfg.workers, cfg.seed)
            checkpoint.atomic_torch_save(cache, {"key": key, "stats": stats.to_dict()})
            log(f"data stats: {stats.images} training images in {time.perf_counter() - start:.1f}s -> {cache}")
    distributed.barrier(d)
    return base.with_stats(DataStats.from_dict(checkpoint.read(cache)["stats"]))


def random_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _validate_resume(ckpt: dict[str, Any], model: AlexNet, path: Path) -> None:
    if ckpt.get("model_config") != model.config.to_dict():
        raise RunDirError(f"{path}: was written for another architecture or class count ({ckpt.get('arch')}); start a new run")


class StopFlag:
    """The first Ctrl-C asks the loop to stop after the current step and save; a second one
    interrupts at once."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.set:
                raise KeyboardInterrupt
            self.set = True

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave Ctrl-C as it is
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _ignore_sigint(_worker_id: int) -> None:
    # Data workers share the terminal's process group; Ctrl-C is the main process's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def fit(cfg: TrainConfig, explicit: set[str] | None = None, log=print) -> Path:
    """Train as ``cfg`` says; returns the run folder. ``explicit``: the fields the user set
    (the rest may be filled by ``--recipe`` or, with ``--resume``, by the run's config)."""
    explicit = set(explicit if explicit is not None else [])
    cfg, ckpt = resolve_config(cfg, explicit)
    d = distributed.setup(cfg.device)
    try:
        return _fit(cfg, ckpt, d, log if d.main else (lambda *a, **k: None))
    finally:
        distributed.teardown(d)


def _fit(cfg: TrainConfig, ckpt: dict[str, Any] | None, d: distributed.Dist, log) -> Path:
    if not cfg.data:
        raise ConfigError("--data is required: 'digits' or a folder of images")
    info = model_info(cfg.arch)
    image_size = cfg.image_size or info.image_size
    device = d.device
    out = prepare_run_dir(cfg, d)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels

    splits = open_source(cfg.data, image_size, cfg.val_split)
    if ckpt is not None:
        preprocess = Preprocess.from_dict(ckpt["preprocess"])
        if list(ckpt["class_names"]) != list(splits.class_names):
            raise RunDirError(f"{cfg.data} has other classes than the run being resumed ({len(ckpt['class_names'])} classes)")
    else:
        base = replace(splits.preprocess, lighting=cfg.lighting, normalize=cfg.normalize)
        preprocess = dataset_stats(cfg, splits, base, out, d, log)

    options = parse_model_options(cfg.model_option)
    if cfg.dropout is not None:
        options["dropout"] = cfg.dropout
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = get_model(cfg.arch, num_classes=len(splits.class_names), **options)
    if image_size < model.min_input_size:
        raise ConfigError(f"--image-size {image_size} is below {cfg.arch}'s minimum of {model.min_input_size}")
    if ckpt is not None:
        _validate_resume(ckpt, model, out)
        load_state_dict(model, ckpt["model"], "checkpoint weights")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and d.active:
        if device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on the CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net: nn.Module = model
    if d.active:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    optimizer = build_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, paper_momentum=cfg.paper_momentum,
                                no_decay_bias_norm=cfg.no_decay_bias_norm, device=device)
    try:
        sampler = EpochBatchSampler(len(splits.train), cfg.batch_size, cfg.seed, d.world, d.rank)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    steps = sampler.batches_per_epoch
    schedule = Schedule(cfg.schedule, cfg.lr, total_steps=cfg.epochs * steps, steps_per_epoch=steps,
                        warmup_steps=round(cfg.warmup_epochs * steps), step_epochs=cfg.step_epochs,
                        gamma=cfg.gamma, patience=cfg.plateau_patience)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    knobs = Knobs(cfg.amp, cfg.channels_last, cfg.label_smoothing, cfg.clip_grad_norm)
    pin = device.type == "cuda"
    loader = train_loader(Transformed(splits.train, train_transform(preprocess)), sampler, cfg.workers, pin)
    if cfg.workers:
        loader.worker_init_fn = _ignore_sigint
    val_loader = eval_loader(Transformed(splits.val, eval_transform(preprocess)), cfg.batch_size, cfg.workers, pin,
                             d.world, d.rank)

    progress = Progress()
    totals = Totals.zeros(device)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        scaler.load_state_dict(ckpt["scaler"])
        progress = Progress(ckpt["epoch"], Position(**ckpt["position"]), list(ckpt["history"]),
                            ckpt["best_top1"], ckpt["epochs_since_best"])
        totals = Totals.from_state(ckpt["totals"], device)
        states = ckpt["random_state"]
        if len(states) == d.world:
            set_random_state(states[d.rank])
        else:
            log(f"warning: the run was saved with {len(states)} processes, now {d.world}: dropout noise will differ")
            torch.manual_seed(cfg.seed + 7919 * (d.rank + 1))
    else:
        if d.main:
            (out / "config.json").write_text(cfg.to_json() + "\n")
        torch.manual_seed(cfg.seed + 7919 * (d.rank + 1))  # dropout: different on each rank

    def save(name: str) -> None:
        if not d.main:
            return
        payload = {
            "arch": cfg.arch, "model_config": model.config.to_dict(),
            "class_names": list(splits.class_names), "preprocess": preprocess.to_dict(),
            "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
            "epoch": progress.epoch, "position": asdict(progress.position), "history": progress.history,
            "best_top1": progress.best_top1, "epochs_since_best": progress.epochs_since_best,
            "totals": totals.state_dict(), "metrics": progress.history[-1] if progress.history else {},
            "random_state": random_states, "world": d.world,
            "train_config": asdict(cfg), "data": {"source": cfg.data, "val_split": cfg.val_split, "split_seed": SPLIT_SEED},
        }
        checkpoint.save(out / "checkpoints" / name, payload)

    logger = RunLogger(out, d.main, purge_step=progress.position.global_step if ckpt else None, title=f"{cfg.arch} on {cfg.data}")
    log(f"config: {json.dumps(asdict(cfg))}")
    log(f"data: {splits.description}; preprocessing {preprocess.resize}->{preprocess.crop}, "
        f"{preprocess.normalize} mean/std and PCA from {preprocess.stats_from}, lighting {preprocess.lighting}")
    log(f"model: {cfg.arch}, {sum(p.numel() for p in model.parameters()):,} parameters, input {image_size}x{image_size}, "
        f"device {device}" + (f" x {d.world} processes" if d.active else ""))
    log(f"run folder: {out}" + (f" (resumed at epoch {progress.epoch + 1}, step {progress.position.step_in_epoch})" if ckpt else ""))

    if progress.position.global_step == 0 and d.main:
        logger.images(_preview(loader.dataset, sampler), preprocess.mean, preprocess.std, 0)
    random_states: list[Any] = []
    finished = "completed"
    with StopFlag() as stop:
        while progress.epoch < cfg.epochs:
            epoch = progress.epoch + 1
            sampler.set_epoch(epoch, progress.position.step_in_epoch)
            start, start_seen = time.perf_counter(), totals.seen
            bar = logger.progress(steps, epoch, cfg.epochs, initial=progress.position.step_in_epoch)

            def after_step(loss: torch.Tensor) -> bool:
                nonlocal random_states
                pos = progress.position
                if pos.step_in_epoch % cfg.log_every == 0 or pos.step_in_epoch == steps:
                    if not math.isfinite(totals.loss_sum.item()):
                        raise DivergedError(_diverged_message(epoch, pos.step_in_epoch, out))
                    rate = (totals.seen - start_seen) * d.world / (time.perf_counter() - start)
                    bar.set_postfix(loss=f"{totals.loss_sum.item() / totals.seen:.4f}",
                                    acc=f"{totals.correct.item() / totals.seen:.2%}", img_s=f"{rate:.0f}")
                    logger.step(pos.global_step, loss.item(), optimizer.param_groups[0]["lr"], rate)
                bar.update(1)
                if cfg.save_every_steps and pos.global_step % cfg.save_every_steps == 0 and pos.step_in_epoch < steps:
                    _check_finite(totals, epoch, pos.step_in_epoch, out)
                    random_states = distributed.gather_objects(d, random_state())
                    save("last.pt")
                check_stop = not d.active or pos.step_in_epoch % cfg.log_every == 0
                return check_stop and distributed.any_rank(d, stop.set)

            stopped = train_one_epoch(net, loader, optimizer, schedule, scaler, device, knobs, totals,
                                      progress.position, after_step)
            bar.close()
            if stopped:
                _check_finite(totals, epoch, progress.position.step_in_epoch, out)
                random_states = distributed.gather_objects(d, random_state())
                save("last.pt")
                log(f"interrupted at epoch {epoch}, step {progress.position.step_in_epoch}/{steps}; saved {out / 'checkpoints' / 'last.pt'}")
                log(f"resume with: alexnet train --resume --out {out}")
                finished = "interrupted"
                break
            _check_finite(totals, epoch, steps, out)
            seconds = time.perf_counter() - start
            loss_sum, correct, seen = distributed.sum_across(d, totals.loss_sum, totals.correct, torch.tensor(float(totals.seen)))
            # Not through DDP: its forward may talk to other ranks, and val shards can differ by one batch.
            val = evaluate(model if d.active else net, val_loader, device, knobs, d)
            lr = optimizer.param_groups[0]["lr"]
            reduced = schedule.epoch_end(1.0 - val.top1)
            row = {
                "epoch": epoch, "train_loss": loss_sum.item() / seen.item(), "train_top1": correct.item() / seen.item(),
                "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5, "lr": lr,
                "img_per_s": (totals.seen - start_seen) * d.world / seconds, "seconds": seconds,
            }
            progress.history.append(row)
            progress.epoch = epoch
            progress.position.step_in_epoch = 0
            totals = Totals.zeros(device)
            improved = val.top1 > progress.best_top1
            if improved:
                progress.best_top1, progress.epochs_since_best = val.top1, 0
            else:
                progress.epochs_since_best += 1
            random_states = distributed.gather_objects(d, random_state())
            if improved:
                save("best.pt")
            save("last.pt")
            logger.epoch(progress.history, progress.position.global_step)
            log(
                f"epoch {epoch:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2%}  "
                f"val loss {val.loss:.4f} top-1 {val.top1:.2%} top-5 {val.top5:.2%}  lr {lr:.3g}  "
                f"{row['img_per_s']:.0f} img/s  {seconds:.1f}s" + (" *" if improved else "")
                + ("  (lr divided by 10: val error stopped improving)" if reduced else "")
            )
            if cfg.early_stop and progress.epochs_since_best >= cfg.early_stop:
                log(f"early stop: val top-1 has not improved for {cfg.early_stop} epochs")
                finished = "stopped early"
                break
    logger.close()
    if finished == "interrupted":
        raise RunInterrupted(out)
    log(f"best val top-1 {progress.best_top1:.2%}; run folder {out} (checkpoints/best.pt, last.pt, metrics.csv, curves.png, tb/)")
    return out


def _preview(dataset: Transformed, sampler: EpochBatchSampler, n: int = 32) -> torch.Tensor:
    """Up to ``n`` images of the first batch, augmented exactly as training will see them
    (per-sample seeds, so drawing them changes nothing in the run)."""
    probe = EpochBatchSampler(sampler.n, sampler.batch_size, sampler.seed, sampler.world, sampler.rank)
    probe.set_epoch(1)
    return torch.stack([dataset[index][0] for index in next(iter(probe))[:n]])


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _diverged_message(epoch: int, step: int, out: Path) -> str:
    last = out / "checkpoints" / "last.pt"
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
    return f"epoch {epoch}, step {step}: the training loss is not finite; the run diverged (try a lower --lr or --clip-grad-norm); {kept}"


def _check_finite(totals: Totals, epoch: int, step: int, out: Path) -> None:
    if not math.isfinite(totals.loss_sum.item()):
        raise DivergedError(_diverged_message(epoch, step, out))
