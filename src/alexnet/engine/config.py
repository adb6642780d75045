"""Typed training configuration. The CLI flags are generated from these fields, so
``--help``, the printed config and ``config.json`` always agree."""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from ..errors import AlexNetError
from ..data.augment import AUTO_AUGMENTS
from ..models import list_models
from .scratch import COMMON as SCRATCH_COMMON
from .optim import SCHEDULES


class ConfigError(AlexNetError):
    """A training option with a value that cannot work."""


def _opt(help: str, **kw: Any) -> Any:
    """A config field with its ``--help`` text (and optional argparse ``choices``, ``group``)."""
    default = kw.pop("default", MISSING)
    return field(default=default, metadata={"help": help, **kw})


# Applied to every field the user did not set on the command line.
RECIPES: dict[str, dict[str, Any]] = {
    # The default: settings chosen from the data (engine/scratch.py); these are the fixed part.
    "scratch": dict(SCRATCH_COMMON),
    # Only the flags' own defaults.
    "none": {},
    # Section 5 of the paper.
    "paper": {
        "arch": "alexnet2012",
        "image_size": 224,
        "epochs": 90,
        "batch_size": 128,
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "paper_momentum": True,
        "schedule": "plateau",  # divided by 10 when validation error stops improving, at most 3 times
        "lighting": 0.1,  # fancy PCA, alpha ~ N(0, 0.1)
        "normalize": "paper",  # "subtracting the mean activity over the training set from each pixel", 0-255
    },
    # Small images (e.g. flowers_128) as fast as a GPU allows: the airbench/DAWNBench tricks
    # on AlexNet's shape. BatchNorm after every conv lets a short one-cycle run converge; the
    # uint8 cache lives in GPU memory (no workers, no decoding); bf16 and channels_last on
    # CUDA. No torch.compile: its tens of seconds of compiling would be a large share of
    # such a short run on a GPU.
    "fast": {
        "arch": "alexnet_cifar",
        "model_option": ["norm=bn", "norm_after=conv1,conv2,conv3,conv4,conv5"],
        "image_size": 64,
        "val_split": 0.2,
        "cache": True,
        "epochs": 40,
        "batch_size": 128,
        "lr": 0.02,  # larger rates diverged or spiked in short runs at 32 px (docs/performance.md)
        "weight_decay": 5e-4,
        "decay_bias_norm": False,
        "schedule": "onecycle",
        "label_smoothing": 0.1,
        "amp": "auto",
        "channels_last": True,
    },
    # What `alexnet finetune` starts from: a small learning rate, ten times smaller again for
    # the pretrained layers than for the new fc8.
    "finetune": {
        "lr": 0.001,
        "backbone_lr_scale": 0.1,
    },
}

# What `--resume` may change: where the data lives, how long to go on, how to run.
# Everything that shapes the optimisation itself stays as the run began.
RESUME_OVERRIDES = {"data", "epochs", "workers", "device", "log_every", "save_every_steps", "early_stop", "out", "resume",
                    "cache_dir", "strict", "max_image_pixels", "download"}


@dataclass
class TrainConfig:
    data: str | None = _opt("'digits' (ships with scikit-learn); a CIFAR-10/100 python pickle folder; or a folder: DIR/train/<class>/ [+ DIR/val/<class>/] [+ DIR/test/<class>/], or DIR/<class>/", default=None, group="data")
    recipe: str | None = _opt("scratch (the default when no --arch, --weights or --model-option is given): chosen from the data: network and input size from the images, batch and run length from their number; BatchNorm, scale crops, TrivialAugment, erasing, label smoothing, Nesterov SGD one-cycle, EMA. paper: section 5 of the paper (alexnet2012 at 224, SGD momentum 0.9 in the paper's form, weight decay 0.0005, batch 128, lr 0.01 divided by 10 on plateau at most 3 times, 90 epochs, mean-image normalisation, PCA lighting 0.1). fast: alexnet_cifar with BatchNorm at 64 px, --cache resident on a GPU, one-cycle lr 0.02 over 40 epochs. none: only the flags' defaults. Flags you give override any recipe", default=None, choices=tuple(RECIPES))
    arch: str = _opt("model variant (`alexnet models` lists them)", default="alexnet", choices=list_models)
    model_option: list[str] | None = _opt(
        "KEY=VALUE overriding the variant's config, repeatable: bn_all=true (alexnet_bn with BatchNorm after "
        "every conv, the TensorFlow flowers network), norm=lrn|bn|none, norm_after=conv1,conv2, init=paper|kaiming|default",
        default=None, action="append", metavar="KEY=VALUE",
    )
    dropout: float | None = _opt("dropout probability in the fc layers (default: the variant's, 0.5)", default=None)
    image_size: int | None = _opt("network input side in pixels (default: the variant's: 224, 227 for alexnet_bn, 32 for alexnet_cifar)", default=None, group="data")
    resize: int | None = _opt("side the images' shorter side is resized to before the --image-size crop is cut from their central square (default: --image-size x 256/224, the paper's 256 for 224); equal to --image-size, images are used whole and training shifts them by reflected padding (the scratch recipe does that for images of 40 px or less)", default=None, group="data")
    val_split: float = _opt("fraction of the training images held out for validation when the data has no val/ split (fixed seed)", default=0.1, group="data")
    lighting: float = _opt("std of the paper's PCA lighting noise, from the training set's RGB eigenvectors (0: off; the paper: 0.1)", default=0.0, group="data")
    normalize: str = _opt("channel: subtract the training set's per-channel mean, divide by its std; image: subtract its mean image (the image cut to its central square first, then cropped), divide by its std; paper: subtract the mean image from 0-255 pixels and do not divide, as the paper did (its N(0, 0.01) init needs that input scale)", default="channel", choices=("channel", "image", "paper"), group="data")
    stats_images: int = _opt("training images sampled to compute mean, std and RGB PCA (cached in the run folder); 0: use ImageNet's", default=5000, group="data")
    workers: int = _opt("DataLoader worker processes per training process (0: load in the main process)", default=2, group="data")
    download: bool = _opt("with --data cifar10 or cifar100: fetch the dataset through torchvision into $ALEXNET_DATA (default ~/.cache/alexnet/datasets) if it is not there yet", default=False, group="data")
    cache: bool = _opt("decode every image once into a uint8 memory-mapped cache (built on first use, rebuilt when files change; see `alexnet prepare cache`) and augment whole batches on the training device: no JPEG decoding after the first epoch; on a GPU a cache that fits lives in GPU memory", default=False, group="data")
    decode_on_device: bool = _opt("image folders: the workers only read each JPEG's bytes and the training device decodes a whole batch at once (nvJPEG through torchvision.io.decode_jpeg on a GPU), then crops, flips and normalises there; no cache to build, so the first epoch is fast too. Other formats are decoded by Pillow in the workers. Meant for GPUs: on the CPU the plain path's workers decode in parallel and are faster", default=False, group="data")
    cache_dir: str | None = _opt("where --cache keeps its files (default: $ALEXNET_CACHE, else ~/.cache/alexnet/images)", default=None, group="data")
    strict: bool = _opt("decode every image before training and stop with the list of unreadable files; without it unreadable files are reported and skipped", default=False, group="data")
    crop_scale: float = _opt("smallest fraction of the image's area a training crop covers: random scale (and aspect ratio 3/4 to 4/3) as in torchvision's RandomResizedCrop, resized to the network size; 1: the paper's fixed-size random crop", default=1.0, group="augmentation")
    color_jitter: float = _opt("random brightness, contrast and saturation factors in [1 - x, 1 + x] (0: off)", default=0.0, group="augmentation")
    auto_augment: str = _opt("an automatic augmentation policy from torchvision: trivialaugment (TrivialAugmentWide), randaugment, autoaugment (the ImageNet policy), or none", default="none", choices=AUTO_AUGMENTS, group="augmentation")
    random_erasing: float = _opt("probability of erasing a random rectangle of each training image (RandomErasing, 0: off)", default=0.0, group="augmentation")
    mixup: float = _opt("MixUp: blend pairs of images and their labels with weight ~ Beta(x, x) per batch (0: off; e.g. 0.2)", default=0.0, group="augmentation")
    cutmix: float = _opt("CutMix: paste a box of one image into another, labels by area, box area ~ Beta(x, x) (0: off; e.g. 1.0). With --mixup too, each batch uses one of the two at random", default=0.0, group="augmentation")
    max_image_pixels: int = _opt("refuse images with more pixels than this (decompression bombs; Pillow's default limit)", default=89_478_485, group="data")

    epochs: int = _opt("passes over the training set", default=10, group="optimisation")
    batch_size: int = _opt("images per step per process (the paper: 128); under torchrun the global batch is this x processes", default=128, group="optimisation")
    lr: float = _opt("peak learning rate (the paper: 0.01)", default=0.01, group="optimisation")
    momentum: float = _opt("SGD momentum (the paper: 0.9)", default=0.9, group="optimisation")
    weight_decay: float = _opt("L2 weight decay (the paper: 0.0005)", default=5e-4, group="optimisation")
    paper_momentum: bool = _opt(
        "use the paper's update v <- 0.9 v - 0.0005 lr w - lr grad; w <- w + v. torch.optim.SGD keeps lr outside the "
        "velocity (v <- 0.9 v + grad + wd w; w <- w - lr v): the same while lr is constant, but after an lr drop the "
        "paper's velocity still carries steps taken at the old rate", default=False, group="optimisation")
    decay_bias_norm: bool = _opt("weight decay on biases and norm-layer parameters too, as the paper; --no-decay-bias-norm exempts them", default=True, group="optimisation")
    schedule: str = _opt("learning-rate schedule: constant; step (x gamma every --step-epochs); cosine to 0; onecycle; plateau (the paper: /10 when val error stops improving for --plateau-patience epochs, at most 3 times)", default="cosine", choices=SCHEDULES, group="optimisation")
    warmup_epochs: float = _opt("linear warmup from 0 to --lr over this many epochs", default=0.0, group="optimisation")
    step_epochs: int = _opt("epochs between drops for --schedule step", default=30, group="optimisation")
    gamma: float = _opt("factor per drop for --schedule step", default=0.1, group="optimisation")
    plateau_patience: int = _opt("epochs without a better val error before --schedule plateau divides lr by 10", default=5, group="optimisation")
    optimizer: str = _opt("sgd (momentum --momentum) or adamw (betas 0.9, 0.999; --weight-decay is then decoupled from the gradient, try 0.05)", default="sgd", choices=("sgd", "adamw"), group="optimisation")
    nesterov: bool = _opt("Nesterov momentum for --optimizer sgd", default=False, group="optimisation")
    accumulate: int = _opt("split each batch into this many chunks, forward and backward one at a time, and step once: the same --batch-size in 1/N of the activation memory (BatchNorm then sees chunks)", default=1, group="optimisation")
    ema: float = _opt("keep an exponential moving average of the weights (and BatchNorm statistics) with this decay per step, e.g. 0.999; evaluated every epoch beside the weights, and best.pt holds whichever scored better (0: off)", default=0.0, group="optimisation")
    label_smoothing: float = _opt("label smoothing of the cross-entropy (0: off)", default=0.0, group="optimisation")
    clip_grad_norm: float | None = _opt("clip the gradient's global L2 norm to this", default=None, group="optimisation")
    early_stop: int = _opt("stop when val top-1 has not improved for this many epochs (0: never)", default=0, group="optimisation")
    seed: int = _opt("random seed for initialisation, data order, augmentation and dropout", default=0, group="optimisation")

    out: str | None = _opt("run folder: config.json, metrics.csv, curves.png, tb/, checkpoints/ (default: runs/<arch>-<time>)", default=None, group="run")
    resume: bool | str = _opt(
        "continue a run: weights, optimizer, schedule, random state and data order, so it ends as if never interrupted. "
        "--resume alone: the run in --out, from checkpoints/last.pt; --resume RUN_DIR or RUN_DIR/checkpoints/last.pt: "
        "the same for that run. Any other checkpoint (best.pt: the run as it was at its best epoch) continues in a new "
        "--out, leaving the run it came from as it is", default=False, nargs="?", const=True, metavar="RUN_DIR|CKPT", group="run")
    save_every_steps: int = _opt("also write checkpoints/last.pt every N steps within an epoch (0: at epoch ends only)", default=0, group="run")
    log_every: int = _opt("steps between progress updates (the only host-device synchronisation inside an epoch)", default=20, group="run")
    deterministic: bool = _opt("deterministic algorithms (bitwise-reproducible on the CPU; on GPUs slower, and a few kernels without a deterministic version only warn)", default=False, group="run")

    device: str = _opt("auto picks cuda, then mps, then cpu", default="auto", choices=("auto", "cpu", "cuda", "mps"), group="speed")
    amp: str = _opt("autocast precision: off, bf16 (no loss scaling needed), fp16 (with a grad scaler), auto (bf16 on CUDA GPUs, off elsewhere: CPUs without bf16 units emulate it, several times slower)", default="off", choices=("off", "bf16", "fp16", "auto"), group="speed")
    channels_last: bool = _opt("NHWC memory layout for the model and its inputs (faster convolutions on GPUs)", default=False, group="speed")
    compile: bool = _opt("torch.compile the model", default=False, group="speed")
    sync_bn: bool = _opt("SyncBatchNorm across processes under torchrun (alexnet_bn)", default=False, group="speed")

    weights: str | None = _opt("start from these weights: 'torchvision' (ImageNet), a checkpoint of this project, a .pth state dict or a .safetensors file; fc8 is replaced when the data's classes differ, and the weights' own preprocessing (mean/std) is kept", default=None, group="fine-tuning")
    freeze: str | None = _opt("layers that never train: conv1..conv5, fc6, fc7, fc8, 'features' (conv1-conv5), 'classifier' (fc6-fc8), ranges like conv1-conv4, comma-separated", default=None, group="fine-tuning")
    unfreeze_schedule: str | None = _opt("layer-wise fine-tuning, LAYERS:EPOCHS,...: e.g. fc8:3,fc7:3,fc6:3,conv5:3 trains fc8 alone for 3 epochs, then fc8 and fc7 for 3, and so on; --epochs defaults to the sum, and the last round goes on past it", default=None, group="fine-tuning")
    backbone_lr_scale: float = _opt("learning rate of every layer but fc8, as a fraction of --lr (finetune: 0.1)", default=1.0, group="fine-tuning")

    def __post_init__(self) -> None:
        for f in fields(self):  # nan passes no comparison and inf passes some: refuse both first
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        if not 0 < self.val_split < 1 or (self.dropout is not None and not 0 <= self.dropout < 1):
            raise ConfigError(f"need 0 < --val-split < 1 and 0 <= --dropout < 1, got {self.val_split} and {self.dropout}")
        if (self.image_size is not None and self.image_size < 1) or self.gamma <= 0:
            raise ConfigError(f"need --image-size >= 1 and --gamma > 0, got {self.image_size} and {self.gamma}")
        if self.resize is not None and self.resize < 1:
            raise ConfigError(f"--resize must be at least 1, got {self.resize}")
        for name in ("epochs", "batch_size", "log_every", "step_epochs", "plateau_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("need --lr > 0, --weight-decay >= 0 and 0 <= --momentum < 1")
        if not 0 < self.backbone_lr_scale:
            raise ConfigError(f"--backbone-lr-scale must be positive, got {self.backbone_lr_scale}")
        if self.max_image_pixels < 1:
            raise ConfigError(f"--max-image-pixels must be at least 1, got {self.max_image_pixels}")
        for name in ("workers", "save_every_steps", "early_stop", "stats_images", "lighting", "warmup_epochs", "label_smoothing",
                     "color_jitter", "random_erasing", "mixup", "cutmix", "ema"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if not 0 < self.crop_scale <= 1:
            raise ConfigError(f"--crop-scale must be in (0, 1], got {self.crop_scale}")
        if self.random_erasing > 1 or self.ema >= 1 or self.label_smoothing >= 1:
            raise ConfigError("--random-erasing must be at most 1, --ema and --label-smoothing below 1")
        if self.accumulate < 1 or self.batch_size % self.accumulate:
            raise ConfigError(f"--accumulate {self.accumulate} must be at least 1 and divide --batch-size {self.batch_size}")
        if self.nesterov and (self.optimizer != "sgd" or self.paper_momentum or self.momentum == 0):
            raise ConfigError("--nesterov needs --optimizer sgd with momentum, without --paper-momentum")
        if self.optimizer == "adamw" and self.paper_momentum:
            raise ConfigError("--paper-momentum is an SGD update; drop it or use --optimizer sgd")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigError(f"--clip-grad-norm must be positive, got {self.clip_grad_norm}")
        if self.cache and self.decode_on_device:
            raise ConfigError("--cache and --decode-on-device are two ways to skip per-epoch decoding; pick one")
        if self.paper_momentum and not self.decay_bias_norm:
            raise ConfigError("--paper-momentum applies one weight decay to all parameters; drop --no-decay-bias-norm")
        if self.resume == "":
            raise ConfigError("--resume got an empty path; give a run folder or a checkpoint, or --resume alone with --out")

    def to_json(self, provenance: list[dict[str, Any]] | None = None) -> str:
        """config.json: the fields, and where the run came from (recorded, never replayed)."""
        return json.dumps({**asdict(self), **({"provenance": provenance} if provenance else {})}, indent=2)


# Choosing any of these means choosing the network: no recipe is then implied.
_OWN_NETWORK = {"arch", "weights", "model_option", "resume"}


def apply_recipe(cfg: TrainConfig, explicit: set[str]) -> TrainConfig:
    """Fill the recipe's values into every field the user did not set. Without --recipe,
    --arch, --weights or --model-option the recipe is ``scratch``."""
    if cfg.recipe is None and not explicit & _OWN_NETWORK:
        cfg = replace(cfg, recipe="scratch")
    if cfg.recipe is None:
        return cfg
    return replace(cfg, **{k: v for k, v in RECIPES[cfg.recipe].items() if k not in explicit})


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per dataclass field, typed and documented from the field.

    Defaults stay out of the namespace (``SUPPRESS``), so the caller can tell which flags
    were given; the dataclass supplies the rest.
    """
    hints = get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in fields(cls):
        kind = hints[f.name]
        base = next((t for t in getattr(kind, "__args__", (kind,)) if t is not type(None)), kind)
        if getattr(base, "__origin__", None) is list:  # list[str] with action="append": each item is a str
            base = base.__args__[0]
        kw: dict[str, Any] = {"help": f.metadata["help"], "dest": f.name, "default": argparse.SUPPRESS}
        for key in ("action", "metavar", "nargs", "const"):
            if key in f.metadata:
                kw[key] = f.metadata[key]
        if "choices" in f.metadata:
            choices = f.metadata["choices"]  # a callable is asked at parser build time (the model registry)
            kw["choices"] = choices() if callable(choices) else choices
        if "nargs" in f.metadata:  # a flag alone (const) or with a value: --resume [PATH]
            kw["type"] = str
        elif base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = base
        if f.default is not None and f.default is not False and f.default is not MISSING:
            kw["help"] += f" (default: {f.default})"
        group = f.metadata.get("group")
        target = groups.setdefault(group, parser.add_argument_group(group)) if group else parser
        target.add_argument("--" + f.name.replace("_", "-"), **kw)


def from_namespace(cls: type, ns: argparse.Namespace) -> tuple[Any, set[str]]:
    """The config, and the names of the fields that were given explicitly."""
    given = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)}
    return cls(**given), set(given)


def from_args(ns: argparse.Namespace) -> tuple[TrainConfig, set[str]]:
    """The training config the command line asks for, and the fields it sets. With
    ``--config FILE`` the file's fields count as set, and the flags given beside it win."""
    cfg, given = from_namespace(TrainConfig, ns)
    if getattr(ns, "config", None) is None:
        return cfg, given
    if "resume" in given:
        raise ConfigError("--resume takes the run's config from its checkpoint; drop --config")
    values = {**read_config_file(ns.config), **{k: getattr(cfg, k) for k in given}}
    return TrainConfig(**values), set(values)


# Where a run went and whether it continued another: a config file does not replay these.
NOT_REPLAYED = {"out", "resume"}


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The fields of a run's config.json, or of a YAML file with the same keys, to train the
    same way again. Its ``provenance`` is a record, not a setting, and ``out`` and ``resume``
    are the earlier run's place: none of them is replayed."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    values = _parse_config(path, text)
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected option names and values, as in a run's config.json")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}  # flag spellings too, in YAML
    values.pop("provenance", None)
    unknown = sorted(set(values) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"--config {path}: unknown option {', '.join(unknown)} (`alexnet train --help` lists them)")
    hints = get_type_hints(TrainConfig)
    return {k: _typed(k, v, hints[k], path) for k, v in values.items() if k not in NOT_REPLAYED}


def _parse_config(path: Path, text: str) -> Any:
    if path.suffix.lower() in (".yaml", ".yml"):
        from ..extras import require

        yaml = require("yaml", f"--config {path} (a YAML file)")
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--config {path}: not valid YAML ({' '.join(str(e).split())})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError(f"--config {path}: not valid JSON ({e}); a .yaml or .yml file is read as YAML") from None


def _typed(name: str, value: Any, hint: Any, path: Path) -> Any:
    """``value`` checked against the field's type; ints pass as floats, and numbers written
    as text (YAML 1.1 reads ``1e-3`` as a string) are read as numbers."""
    kinds = getattr(hint, "__args__", (hint,))
    for kind in kinds:
        if value is None and kind is type(None):
            return value
        if getattr(kind, "__origin__", None) is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if kind in (bool, str) and isinstance(value, kind):
            return value
        if kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if kind is float or isinstance(value, int):
                return kind(value)
    if isinstance(value, str) and float in kinds:
        try:
            return float(value)
        except ValueError:
            pass
    expected = " or ".join("null" if k is type(None) else getattr(k, "__name__", str(k)) for k in kinds)
    raise ConfigError(f"--config {path}: {name} must be {expected}, got {value!r}")
