"""A training run: config in, run folder out. Resumable at any step, one code path for DDP.

Run folder: config.json, metrics.csv, curves.png, tb/ (TensorBoard), data_stats.pt,
checkpoints/last.pt and best.pt. Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import checkpoint
from ..data import DataError, open_source
from ..data.augment import DataStats, compute_stats
from ..data.datasets import SPLIT_SEED, BadSample, FolderSubset, Splits
from ..data.loading import EpochBatchSampler, collate
from ..data.mixing import Mixing
from ..data.transforms import Preprocess
from ..errors import AlexNetError
from ..models import AlexNet, AlexNetConfig, get_model, list_models, model_info, parse_model_options
from ..models.weights import load_state_dict
from . import distributed, finetune, pipeline, provenance
from .rundir import prepare_run_dir, release
from .config import ConfigError, TrainConfig, apply_recipe
from .scratch import scratch_settings, survey
from .logging import RunLogger
from .memory import check_image_size
from .skipped import NamingSkips, warn
from .loop import Knobs, Position, Totals, evaluate, train_one_epoch
from .optim import Schedule, build_optimizer
from .resume import Progress, Resumed, RunDirError, StopFlag, random_state, resolve_config, set_random_state

# Progress lines; engine.logging.log_to_stdout shows them (on the main rank only).
log = logging.getLogger(__name__).info


class DivergedError(AlexNetError):
    """The loss became NaN or infinite."""


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run after saving it; ``--resume`` continues it.
    ``args``: the run folder and the signal's number."""

    @property
    def exit_status(self) -> int:
        return 128 + (self.args[1] if len(self.args) > 1 else 2)  # the shell's convention; SIGINT is 2


def dataset_stats(cfg: TrainConfig, splits: Splits, base: Preprocess, out: Path, d: distributed.Dist,
                  caches: pipeline.Caches | None = None) -> Preprocess:
    """The training set's mean (and mean image), std and RGB PCA, computed once per run folder (on rank 0)."""
    if cfg.stats_images == 0:
        if cfg.normalize != "channel":
            raise ConfigError(f"--normalize {cfg.normalize} needs the training set's mean image; drop --stats-images 0")
        return base
    cache = out / "data_stats.pt"
    key = {"data": cfg.data, "resize": base.resize, "train_images": len(splits.train), "max_images": cfg.stats_images}
    stats = None
    if d.main:
        cached = checkpoint.read(cache) if cache.exists() else None
        if cached is not None and cached.get("key") == key:
            stats = DataStats.from_dict(cached["stats"])
        else:
            start = time.perf_counter()
            images = pipeline.stats_source(splits, base, caches)
            try:
                stats = compute_stats(images, cfg.stats_images, cfg.workers, cfg.seed, collate_fn=collate)
            except ValueError as e:
                raise ConfigError(f"{cfg.data}: {e}") from None
            checkpoint.atomic_torch_save(cache, {"key": key, "stats": stats.to_dict()})
            log(f"data stats: {stats.images} training images in {time.perf_counter() - start:.1f}s -> {cache}")
    distributed.barrier(d)  # the other ranks read what rank 0 wrote
    if stats is None:
        stats = DataStats.from_dict(checkpoint.read(cache)["stats"])
    return base.with_stats(stats)


def fit(cfg: TrainConfig, explicit: set[str] | None = None, argv: list[str] | None = None) -> Path:
    """Train as ``cfg`` says; returns the run folder. ``explicit``: the fields the user set
    (the rest may be filled by ``--recipe`` or, with ``--resume``, by the run's config).
    ``argv``: the command line to record (default ``sys.argv``). Progress lines go to the
    ``alexnet.engine.train`` logger (``engine.logging.log_to_stdout`` shows them)."""
    explicit = set(explicit) if explicit is not None else _given(cfg)
    cfg, resumed = resolve_config(cfg, explicit)
    if resumed is None:
        cfg = _fresh_config(cfg, explicit)
    d = distributed.setup(cfg.device)
    if cfg.amp == "auto":  # settled once, so config.json and a resume say what ran
        cfg = replace(cfg, amp="bf16" if d.device.type == "cuda" else "off")
    run = None
    try:
        run = _setup(cfg, resumed, d, arch_given="arch" in explicit, argv=argv,
                     batch_given="batch_size" in explicit)
        _train(run)
        return run.out
    finally:
        if run is not None:
            release(run.out)
        distributed.teardown(d)


def _fresh_config(cfg: TrainConfig, explicit: set[str]) -> TrainConfig:
    """A new run's config: the recipe's values, the scratch recipe's data-dependent ones, and
    --epochs from --unfreeze-schedule, for every field the user did not set."""
    cfg = apply_recipe(cfg, explicit)
    if cfg.recipe == "scratch":
        cfg = _scratch(cfg, explicit)
    if cfg.unfreeze_schedule and "epochs" not in explicit:
        cfg = replace(cfg, epochs=finetune.Plan.from_config(cfg.freeze, cfg.unfreeze_schedule).scheduled_epochs)
    return cfg


def _given(cfg: TrainConfig) -> set[str]:
    """From Python, without the command line's record: the fields that differ from their defaults."""
    defaults = TrainConfig()
    return {f.name for f in fields(TrainConfig) if getattr(cfg, f.name) != getattr(defaults, f.name)}


def _scratch(cfg: TrainConfig, explicit: set[str]) -> TrainConfig:
    """The scratch recipe's data-dependent values, for every field the user did not set."""
    if not cfg.data:
        raise ConfigError("--data is required: 'digits' or a folder of images")
    splits = open_source(cfg.data, 224, cfg.val_split, download=cfg.download, max_pixels=cfg.max_image_pixels)
    _check_classes(cfg, splits)
    values, why = scratch_settings(survey(splits))
    if "arch" in explicit:  # the network chosen is used exactly as it is
        values.pop("model_option")
    if "image_size" in explicit and cfg.image_size != values["image_size"]:  # a size of one's own: its own square
        values.pop("resize", None)
    given = sorted(k for k in values if k in explicit and getattr(cfg, k) != values[k])
    if given:
        why += "; yours: " + ", ".join(f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in given)
    if int(os.environ.get("RANK", "0")) == 0:  # before the process group exists: one line, not one per rank
        log(why)
    return replace(cfg, **{k: v for k, v in values.items() if k not in explicit})


@dataclass
class Run:
    """Everything a run holds between steps."""

    cfg: TrainConfig
    d: distributed.Dist
    out: Path
    splits: Splits
    preprocess: Preprocess
    model: AlexNet  # the bare model: what checkpoints hold and evaluation uses under DDP
    net: nn.Module  # what training calls: the model, maybe wrapped by DDP and torch.compile
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    knobs: Knobs
    sampler: EpochBatchSampler
    loader: Any
    val_loader: Any
    progress: Progress
    totals: Totals
    logger: RunLogger
    skips: pipeline.SkipReport
    plan: finetune.Plan
    ema: AveragedModel | None = None  # --ema: the running average of the weights and BatchNorm statistics
    best_from_ema: bool = False  # whether best.pt holds the average (it scored better) or the weights
    provenance: list[dict[str, Any]] = field(default_factory=list)  # one record per process that trained the run

    def save(self, name: str) -> None:
        """Write checkpoints/<name> with everything needed to resume exactly (rank 0 writes;
        every rank must call it, since each contributes its random state)."""
        random_states = distributed.gather_objects(self.d, random_state())
        if not self.d.main:
            return
        cfg, p = self.cfg, self.progress
        checkpoint.save(self.out / "checkpoints" / name, {
            "arch": cfg.arch, "model_config": self.model.config.to_dict(),
            "class_names": list(self.splits.class_names), "display_names": self.splits.display_names,
            "preprocess": self.preprocess.to_dict(),
            "model": self._inference_weights(name), "optimizer": self.optimizer.state_dict(),
            **({"ema": self.ema.state_dict(), "raw_model": self.model.state_dict()} if self.ema is not None else {}),
            "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": p.epoch, "position": asdict(p.position), "history": p.history,
            "best_top1": p.best_top1, "epochs_since_best": p.epochs_since_best, "best_from_ema": self.best_from_ema,
            "totals": self.totals.state_dict(), "metrics": p.history[-1] if p.history else {},
            "random_state": random_states, "world": self.d.world, "train_config": asdict(cfg),
            "data": {"source": cfg.data, "val_split": cfg.val_split, "split_seed": SPLIT_SEED,
                     "held_out": self.splits.held_out},
            "provenance": self.provenance,
        })


    def _inference_weights(self, name: str) -> dict[str, torch.Tensor]:
        """What evaluate and predict load: the weights, or in best.pt the EMA when it scored better.
        Resuming reads ``raw_model`` when there is an EMA."""
        if name == "best.pt" and self.best_from_ema:
            return self.ema.module.state_dict()
        return self.model.state_dict()


class _Optimisation(NamedTuple):
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    sampler: EpochBatchSampler


def _setup(cfg: TrainConfig, resumed: Resumed | None, d: distributed.Dist, arch_given: bool = False,
           argv: list[str] | None = None, batch_given: bool = True) -> Run:
    """Data, model, preprocessing, optimisation and state. A fresh run, a fine-tune and a
    resume take the same steps; they differ only in where weights and state come from."""
    ckpt = resumed.ckpt if resumed is not None else None
    cfg, pretrained = _pretrained(cfg, ckpt, arch_given)
    image_size = cfg.image_size or (pretrained.preprocess.crop if pretrained else model_info(cfg.arch).image_size)
    # Everything that can be wrong with the data or the model is found before the run
    # folder is made, so a typo leaves nothing behind.
    splits = _open_data(cfg, image_size, checkpoint.held_out(ckpt) if ckpt is not None else _held_by(pretrained, cfg))
    if ckpt is None and not batch_given:
        cfg = _batch_for(cfg, len(splits.train), d.world)
    model = _network(cfg, ckpt, pretrained, splits)
    _check_input_size(cfg, model, image_size, d.device)
    out = prepare_run_dir(cfg, d, in_place=resumed is not None and resumed.in_place)
    try:
        return _setup_in(out, cfg, ckpt, pretrained, splits, model, image_size, d, argv, resumed is not None)
    except BaseException:
        release(out)
        raise


def _setup_in(out: Path, cfg: TrainConfig, ckpt: dict[str, Any] | None, pretrained, splits: Splits, model: AlexNet,
              image_size: int, d: distributed.Dist, argv: list[str] | None, resumed: bool) -> Run:
    """The rest of ``_setup``, once the run folder is held."""
    _set_determinism(cfg, d.device)
    caches, preprocess = _preprocessing(cfg, ckpt, pretrained, splits, image_size, out, d)
    plan = finetune.Plan.from_config(cfg.freeze, cfg.unfreeze_schedule)
    model = _place(model, cfg, plan, ckpt["epoch"] if ckpt else 0, d)
    net = _wrap(model, cfg, d)
    opt = _optimisation(cfg, model, plan, splits, caches, d)
    loader, val_loader = pipeline.make_loaders(
        splits, caches, preprocess, opt.sampler, d, batch_size=cfg.batch_size, workers=cfg.workers,
        augment=pipeline.augment_of(cfg), channels_last=cfg.channels_last, decode_on_device=cfg.decode_on_device,
        max_pixels=cfg.max_image_pixels)
    progress, totals = _restore(opt, ckpt, cfg, d)

    history = [r for r in (ckpt or {}).get("provenance", []) if isinstance(r, dict)]
    records = [*history, provenance.record(cfg.data, splits, d.device, d.world, argv)] if d.main else []
    if d.main:  # also on resume, which may have changed --epochs, --data or --workers
        (out / "config.json").write_text(cfg.to_json(records) + "\n")
    logger = RunLogger(out, d.main, purge_step=progress.position.global_step if ckpt else None, title=f"{cfg.arch} on {cfg.data}",
                       classes=len(splits.class_names), config=asdict(cfg))
    knobs = Knobs(cfg.amp, cfg.channels_last, cfg.label_smoothing, cfg.clip_grad_norm, cfg.accumulate,
                  Mixing(cfg.mixup, cfg.cutmix), cfg.seed, d.rank, cfg.compile)
    report = warn if d.main else log
    run = Run(cfg, d, out, splits, preprocess, model, net, opt.optimizer, opt.schedule, opt.scaler,
              knobs, opt.sampler, loader, NamingSkips(val_loader, pipeline.SkipReport(report)), progress, totals,
              logger, pipeline.SkipReport(report), plan, opt.ema, bool(ckpt and ckpt.get("best_from_ema")), records)
    _announce(run, caches, image_size, resumed)
    return run


def _batch_for(cfg: TrainConfig, images: int, world: int) -> TrainConfig:
    """A default batch larger than the training set becomes one that gives two or more steps
    an epoch (a power of two, at least 2 for BatchNorm); a batch the user chose is kept."""
    if images >= cfg.batch_size * world:
        return cfg
    batch = 2 ** max(1, (images // (2 * world)).bit_length() - 1)
    log(f"batch {cfg.batch_size} is more than the {images} training images: batch {batch} (--batch-size to choose)")
    return replace(cfg, batch_size=batch)


def _pretrained(cfg: TrainConfig, ckpt: dict[str, Any] | None, arch_given: bool) -> tuple[TrainConfig, Any]:
    """A new run from --weights: the weights, and the config with their network's --arch.
    A resumed fine-tuning run takes its weights from the checkpoint instead."""
    if not cfg.weights or ckpt is not None:
        return cfg, None
    from ..models.pretrained import load_pretrained

    if cfg.model_option:
        raise ConfigError("--model-option shapes a new network; pretrained weights come with theirs")
    pretrained = load_pretrained(cfg.weights)
    if arch_given and pretrained.arch != cfg.arch:
        raise ConfigError(f"--arch {cfg.arch} conflicts with --weights {cfg.weights}, which is {pretrained.arch}; "
                          "drop --arch (the weights bring their network)")
    if pretrained.arch in list_models():
        cfg = replace(cfg, arch=pretrained.arch)
    return cfg, pretrained


def _held_by(pretrained, cfg: TrainConfig) -> list[int] | None:
    """The val files of the run whose checkpoint ``--weights`` names, when it trained on this
    same folder: a new run from its weights keeps them out of training too."""
    record = getattr(pretrained, "trained_on", None)
    if not record or not cfg.data or not isinstance(record.get("source"), str):
        return None
    try:
        same = Path(record["source"]).expanduser().resolve() == Path(cfg.data).expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    return checkpoint.held_out({"data": record}) if same else None


def _open_data(cfg: TrainConfig, image_size: int, held: list[int] | None = None) -> Splits:
    """--data, checked: at least two classes, the fast paths it allows, and with --strict every file.
    ``held``: a resumed run's val files, which stay its val files."""
    if not cfg.data:
        raise ConfigError("--data is required: 'digits' or a folder of images")
    if cfg.resize is not None and cfg.resize < image_size:
        raise ConfigError(f"--resize {cfg.resize} is smaller than the {image_size} px crop cut from it")
    if cfg.resize is not None and cfg.resize ** 2 > cfg.max_image_pixels:
        raise ConfigError(f"--resize {cfg.resize} makes every image {cfg.resize ** 2:,} pixels, over "
                          f"--max-image-pixels {cfg.max_image_pixels:,}")
    if cfg.resize not in (None, image_size) and cfg.data == "digits":
        raise ConfigError("digits are upsampled whole to --image-size; drop --resize")
    splits = open_source(cfg.data, image_size, cfg.val_split, download=cfg.download, max_pixels=cfg.max_image_pixels,
                         resize=cfg.resize, held_out=held)
    _check_classes(cfg, splits)
    pipeline.check_fast_paths(cfg, splits)
    for name in ("train", "val"):
        _check_some_readable(splits.get(name), name, cfg.data)
    if cfg.strict:
        pipeline.check_all_images(cfg, splits)
    return splits


def _check_classes(cfg: TrainConfig, splits: Splits) -> None:
    if len(splits.class_names) < 2:
        raise DataError(f"{cfg.data}: one class ({splits.class_names[0]}); a classifier learns nothing from one class "
                        "(every answer is right): add a folder per class, at least two")


def _check_some_readable(split, name: str, data: str) -> None:
    """A split whose every file is unreadable fails now, not after an epoch of training.
    Reads files until one opens: usually the first."""
    if not split or not isinstance(split, FolderSubset):
        return
    first = None
    for i in range(len(split)):
        item = split[i]
        if not isinstance(item, BadSample):
            return
        first = first or item.reason
    raise DataError(f"{data}: none of the {len(split)} images of the {name} split can be read (the first: {first}); "
                    "fix or replace them")


def _network(cfg: TrainConfig, ckpt: dict[str, Any] | None, pretrained, splits: Splits) -> AlexNet:
    """The model with its starting weights: the checkpoint's when resuming, the pretrained
    ones (with a new fc8 for other classes) when fine-tuning, else initialised from --seed."""
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    classes = len(splits.class_names)
    if ckpt is not None:
        return _resumed_network(cfg, ckpt, splits)
    if pretrained is None:
        return get_model(cfg.arch, num_classes=classes, **_model_options(cfg))
    model = pretrained.model.train()
    if list(pretrained.class_names) != list(splits.class_names):
        model.reset_classifier(classes)  # a new fc8 for the data's classes
        log(f"weights: {pretrained.description}; fc8 replaced for {classes} classes")
    else:
        log(f"weights: {pretrained.description}; its classes are the data's, fc8 kept")
    if cfg.dropout is not None:  # through the config, which checkpoints keep and --resume rebuilds from
        model = _with_config(model, dropout=cfg.dropout)
    return model


def _resumed_network(cfg: TrainConfig, ckpt: dict[str, Any], splits: Splits) -> AlexNet:
    """The network the run's config describes, checked against the checkpoint and loaded
    from it. A fine-tuning run's network is the one it was saved with."""
    if list(ckpt["class_names"]) != list(splits.class_names):
        raise RunDirError(f"{cfg.data} has other classes than the run being resumed ({len(ckpt['class_names'])} classes)")
    if cfg.weights:
        model = AlexNet(AlexNetConfig(**ckpt["model_config"]))
    else:
        model = get_model(cfg.arch, num_classes=len(splits.class_names), **_model_options(cfg))
    if ckpt.get("model_config") != model.config.to_dict():
        raise RunDirError(f"{cfg.resume}: was written for another architecture or class count ({ckpt.get('arch')}); "
                          "start a new run")
    load_state_dict(model, ckpt.get("raw_model", ckpt["model"]), "checkpoint weights")
    return model


def _model_options(cfg: TrainConfig) -> dict[str, Any]:
    options = parse_model_options(cfg.model_option)
    if cfg.dropout is not None:
        options["dropout"] = cfg.dropout
    return options


def _check_input_size(cfg: TrainConfig, model: AlexNet, image_size: int, device: torch.device) -> None:
    if image_size < model.min_input_size:
        raise ConfigError(f"--image-size {image_size} is below {cfg.arch}'s minimum of {model.min_input_size}")
    check_image_size(model.config, image_size, cfg.batch_size, device, training=True)


def _set_determinism(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.deterministic:
        # cuBLAS needs this to be deterministic; warn_only because some CUDA kernels
        # (AdaptiveAvgPool2d's backward) have no deterministic version and would raise.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels


def _preprocessing(cfg: TrainConfig, ckpt: dict[str, Any] | None, pretrained, splits: Splits, image_size: int,
                   out: Path, d: distributed.Dist) -> tuple[pipeline.Caches | None, Preprocess]:
    """The --cache caches and the input preprocessing: the checkpoint's when resuming, the
    pretrained weights' at this run's size, else the training set's statistics."""
    if ckpt is not None:
        preprocess = Preprocess.from_dict(ckpt["preprocess"])
        return pipeline.open_caches(cfg, splits, preprocess.resize, d), preprocess
    base = replace(splits.preprocess, lighting=cfg.lighting, normalize=cfg.normalize)
    if pretrained is not None:  # the input scale the weights were trained for, at this run's size
        p = pretrained.preprocess
        own = splits.preprocess  # this run's crop, and --resize
        sized = p if p.crop == image_size and cfg.resize is None else replace(p, crop=own.crop, resize=own.resize)
        if p.mean_image is not None and sized.resize != p.resize:
            raise ConfigError(f"the weights subtract a {p.resize} px mean image (normalize={p.normalize}); "
                              f"train them at --resize {p.resize} with an --image-size of at most {p.resize}")
        base = replace(sized, lighting=cfg.lighting, flip=splits.preprocess.flip)
    caches = pipeline.open_caches(cfg, splits, base.resize, d)
    if pretrained is not None:
        return caches, base
    return caches, dataset_stats(cfg, splits, base, out, d, caches)


def _place(model: AlexNet, cfg: TrainConfig, plan: finetune.Plan, epochs_done: int, d: distributed.Dist) -> AlexNet:
    """The model on its device, in its memory layout, with the layers that train from the next epoch on."""
    model.to(d.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and d.active:
        if d.device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on the CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    finetune.set_trainable(model, plan.trainable(epochs_done + 1))
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"--freeze {cfg.freeze} leaves no layer to train")
    return model


def _optimisation(cfg: TrainConfig, model: AlexNet, plan: finetune.Plan, splits: Splits,
                  caches: pipeline.Caches | None, d: distributed.Dist) -> _Optimisation:
    """Optimizer, schedule, grad scaler, weight average and the batch order, all fresh."""
    optimizer = build_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, paper_momentum=cfg.paper_momentum,
                                decay_bias_norm=cfg.decay_bias_norm, device=d.device,
                                backbone_lr_scale=cfg.backbone_lr_scale, amp=cfg.amp,
                                layers_join_later=bool(plan.rounds), kind=cfg.optimizer, nesterov=cfg.nesterov)
    # After the model is on its device and before any step: the average starts as a copy.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    try:
        sampler = EpochBatchSampler(pipeline.train_size(splits, caches), cfg.batch_size, cfg.seed, d.world, d.rank)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    steps = sampler.batches_per_epoch
    schedule = Schedule(cfg.schedule, cfg.lr, total_steps=cfg.epochs * steps, steps_per_epoch=steps,
                        warmup_steps=round(cfg.warmup_epochs * steps), step_epochs=cfg.step_epochs,
                        gamma=cfg.gamma, patience=cfg.plateau_patience)
    scaler = torch.amp.GradScaler(d.device.type, enabled=cfg.amp == "fp16")
    return _Optimisation(optimizer, schedule, scaler, ema, sampler)


def _restore(opt: _Optimisation, ckpt: dict[str, Any] | None, cfg: TrainConfig, d: distributed.Dist
             ) -> tuple[Progress, Totals]:
    """Where the run stands: the checkpoint's optimizer, schedule, position and random state,
    or a new run's start. Either way dropout differs between ranks."""
    if ckpt is None:
        torch.manual_seed(cfg.seed + 7919 * (d.rank + 1))
        return Progress(), Totals.zeros(d.device)
    opt.optimizer.load_state_dict(ckpt["optimizer"])
    if opt.ema is not None:
        opt.ema.load_state_dict(ckpt["ema"])
    opt.schedule.load_state_dict(ckpt["schedule"])
    opt.scaler.load_state_dict(ckpt["scaler"])
    states = ckpt["random_state"]
    if len(states) == d.world:
        set_random_state(states[d.rank])
    else:
        (warn if d.main else log)(f"warning: the run was saved with {len(states)} processes, now {d.world}: dropout noise will differ")
        torch.manual_seed(cfg.seed + 7919 * (d.rank + 1))
    progress = Progress(ckpt["epoch"], Position(**ckpt["position"]), list(ckpt["history"]),
                        ckpt["best_top1"], ckpt["epochs_since_best"])
    return progress, Totals.from_state(ckpt["totals"], d.device)


def _announce(run: Run, caches, image_size: int, resumed: bool) -> None:
    """The start of the run in four lines: config, data, model, run folder."""
    cfg, d, p = run.cfg, run.d, run.preprocess
    log(f"config: {json.dumps(asdict(cfg))}")
    log(f"data: {run.splits.description}; preprocessing {p.resize}->{p.crop}, {p.normalize} mean/std and PCA from "
        f"{p.stats_from}, lighting {p.lighting}; " + _feed(cfg, caches, run.loader))
    log(f"model: {cfg.arch}, {sum(t.numel() for t in run.model.parameters()):,} parameters, input {image_size}x{image_size}, "
        f"device {d.device}" + (f" x {d.world} processes" if d.active else ""))
    position = run.progress.position
    log(f"run folder: {run.out}" + (f" (resumed at epoch {run.progress.epoch + 1}, step {position.step_in_epoch})" if resumed else ""))


def _with_config(model: AlexNet, **changes: Any) -> AlexNet:
    """``model`` rebuilt from its config with ``changes`` (layers without weights, such as
    dropout), its weights moved over."""
    with torch.device("meta"):  # no memory and no random draws for weights about to be replaced
        new = AlexNet(replace(model.config, **changes))
    new.load_state_dict(model.state_dict(), assign=True)
    return new.train(model.training)


def _feed(cfg: TrainConfig, caches, loader) -> str:
    """How batches are made, for the log."""
    if caches:
        return "uint8 cache, batches finished on the device" + (" (resident in GPU memory)" if loader.resident else "")
    workers = "the main process" if cfg.workers == 0 else "1 worker" if cfg.workers == 1 else f"{cfg.workers} workers"
    if cfg.decode_on_device:
        return f"files read in {workers}, JPEGs decoded in batches on the device"
    return f"decoding per epoch in {workers}"


def _wrap(model: AlexNet, cfg: TrainConfig, d: distributed.Dist) -> nn.Module:
    """What training calls: the model, under DDP and torch.compile when asked. DDP takes the
    parameters that train at the time it is made, so a fine-tuning round that unfreezes
    layers wraps the model again."""
    net: nn.Module = model
    if d.active:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    return torch.compile(net) if cfg.compile else net


def _train(run: Run) -> None:
    """Epochs until the end, an early stop, or Ctrl-C (then ``RunInterrupted``)."""
    cfg, d, progress = run.cfg, run.d, run.progress
    if progress.epoch >= cfg.epochs:
        log(f"nothing left to train: the run has finished all {cfg.epochs} of its epochs" + (
            f"; its {cfg.schedule} schedule ended with them, so train on in a new run from its weights: "
            f"alexnet train --weights {run.out / 'checkpoints' / 'best.pt'} --data ... --out NEW"
            if cfg.schedule in ("cosine", "onecycle") else " (--epochs N extends it)"))
    if progress.position.global_step == 0 and d.main:
        run.logger.images(pipeline.preview(run.loader, run.splits, run.preprocess, run.sampler, pipeline.augment_of(cfg)),
                          run.preprocess.mean, run.preprocess.std, 0)
    try:
        with StopFlag() as stop:
            while progress.epoch < cfg.epochs:
                epoch = progress.epoch + 1
                start, start_seen = time.perf_counter(), run.totals.seen
                if _train_epoch(run, epoch, stop, start, start_seen):
                    _check_finite(run.totals, epoch, progress.position.step_in_epoch, run.out)
                    run.save("last.pt")
                    log(f"interrupted ({stop.name}) at epoch {epoch}, step {progress.position.step_in_epoch}/{run.sampler.batches_per_epoch}; "
                        f"saved {run.out / 'checkpoints' / 'last.pt'}")
                    log(f"resume with: alexnet train --resume --out {run.out}")
                    raise RunInterrupted(run.out, stop.signum)
                if _end_epoch(run, epoch, time.perf_counter() - start, run.totals.seen - start_seen):
                    break
    except BaseException:
        # Flush TensorBoard and draw the last curves of a failed or interrupted run too, but
        # never hide its error behind one of these (a full disk, say).
        with contextlib.suppress(Exception):
            run.logger.close()
        raise
    run.logger.close()
    log(f"best val top-1 {progress.best_top1:.2%}; run folder {run.out} "
        "(checkpoints/best.pt, last.pt, metrics.csv, curves.png, tb/)")


def _train_epoch(run: Run, epoch: int, stop: StopFlag, start: float, start_seen: int) -> bool:
    """The (rest of the) epoch's steps; True when Ctrl-C asked to stop."""
    cfg, d, pos = run.cfg, run.d, run.progress.position
    steps = run.sampler.batches_per_epoch
    run.sampler.set_epoch(epoch, pos.step_in_epoch)
    if run.plan.rounds or run.plan.frozen:
        layers = run.plan.trainable(epoch)
        if finetune.set_trainable(run.model, layers):
            run.net = _wrap(run.model, cfg, d)
        if epoch == 1 or run.plan.trainable(epoch - 1) != layers or pos.step_in_epoch:
            log(f"epoch {epoch}: training {', '.join(n for n in finetune.LAYERS if n in layers)}")
    bar = run.logger.progress(steps, epoch, cfg.epochs, initial=pos.step_in_epoch)

    def after_step(loss: torch.Tensor) -> bool:
        totals = run.totals
        if pos.step_in_epoch % cfg.log_every == 0 or pos.step_in_epoch == steps:  # the only syncs in an epoch
            _check_finite(totals, epoch, pos.step_in_epoch, run.out)
            rate = (totals.seen - start_seen) * d.world / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{totals.loss_sum.item() / totals.seen:.4f}",
                            acc=f"{totals.correct.item() / totals.seen:.2%}", img_s=f"{rate:.0f}")
            run.logger.step(pos.global_step, loss.item(), _lr(run.optimizer), rate)
        bar.update(1)
        if cfg.save_every_steps and pos.global_step % cfg.save_every_steps == 0 and pos.step_in_epoch < steps:
            _check_finite(totals, epoch, pos.step_in_epoch, run.out)
            run.save("last.pt")
        # Under DDP all ranks must agree to stop at the same step, which takes a collective:
        # ask only at logging intervals.
        check = not d.active or pos.step_in_epoch % cfg.log_every == 0
        return check and distributed.any_rank(d, stop.set)

    try:
        return train_one_epoch(run.net, run.loader, run.optimizer, run.schedule, run.scaler, d.device, run.knobs,
                               run.totals, pos, after_step, run.skips, run.ema)
    finally:
        bar.close()


def _end_epoch(run: Run, epoch: int, seconds: float, images: int) -> bool:
    """Validate, record, checkpoint, log; True when early stopping ends the run."""
    cfg, d, progress = run.cfg, run.d, run.progress
    _check_finite(run.totals, epoch, run.sampler.batches_per_epoch, run.out)
    loss_sum, correct, seen = distributed.sum_across(d, run.totals.loss_sum, run.totals.correct,
                                                     torch.tensor(float(run.totals.seen)))
    # Not through DDP: its forward may talk to other ranks, and val shards can differ by one batch.
    val = evaluate(run.model if d.active else run.net, run.val_loader, d.device, run.knobs, d)
    ema_val = evaluate(run.ema.module, run.val_loader, d.device, run.knobs, d) if run.ema is not None else None
    lr = _lr(run.optimizer)
    reduced = run.schedule.epoch_end(1.0 - val.top1)
    row = {
        "epoch": epoch, "train_loss": loss_sum.item() / seen.item(), "train_top1": correct.item() / seen.item(),
        "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5, "lr": lr,
        "img_per_s": images * d.world / seconds, "seconds": seconds,
        **({"ema_val_loss": ema_val.loss, "ema_val_top1": ema_val.top1} if ema_val else {}),
    }
    progress.history.append(row)
    progress.epoch = epoch
    progress.position.step_in_epoch = 0
    run.totals = Totals.zeros(d.device)
    top1 = max(val.top1, ema_val.top1) if ema_val else val.top1
    improved = top1 > progress.best_top1
    if improved:
        progress.best_top1, progress.epochs_since_best = top1, 0
        run.best_from_ema = bool(ema_val) and ema_val.top1 > val.top1
        run.save("best.pt")
    else:
        progress.epochs_since_best += 1
    run.save("last.pt")
    run.logger.epoch(progress.history, progress.position.global_step, run.model)
    log(
        f"epoch {epoch:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2%}  "
        f"val loss {val.loss:.4f} top-1 {val.top1:.2%} top-5 {val.top5:.2%}  "
        + (f"EMA top-1 {ema_val.top1:.2%}  " if ema_val else "") + f"lr {lr:.3g}  "
        f"{row['img_per_s']:.0f} img/s  {seconds:.1f}s" + (" *" if improved else "")
        + ("  (lr divided by 10: val error stopped improving)" if reduced else "") + run.skips.end_epoch()
    )
    if cfg.early_stop and progress.epochs_since_best >= cfg.early_stop:
        log(f"early stop: val top-1 has not improved for {cfg.early_stop} epochs")
        return True
    return False


def _lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's learning rate: the largest group's (the head's, when fine-tuning)."""
    return max(group["lr"] for group in optimizer.param_groups)


def _check_finite(totals: Totals, epoch: int, step: int, out: Path) -> None:
    if not math.isfinite(totals.loss_sum.item()):
        best, last = out / "checkpoints" / "best.pt", out / "checkpoints" / "last.pt"
        # last.pt may hold weights already on their way out (a finite but huge loss): point to best.pt first
        kept = (f"{best} keeps the best validated weights, {last} those saved last before this step" if best.exists()
                else f"{last} holds the weights saved last before this step" if last.exists()
                else "no checkpoint was written")
        raise DivergedError(f"epoch {epoch}, step {step}: the training loss is not finite; the run diverged "
                            f"(try a lower --lr or --clip-grad-norm); {kept}")
