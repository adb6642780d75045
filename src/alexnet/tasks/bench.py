"""Model throughput: images/s of a training step and of inference, plain eager vs this project's best.

A *training step* is forward, cross-entropy, backward and an SGD step (momentum 0.9, weight
decay 5e-4) on one synthetic batch already on the device, so only the model and the engine
are timed, not data loading. *Inference* is a forward pass with no autograd.

* baseline: a model in plain eager fp32 (by default this project's own; the benchmark script
  passes torchvision's AlexNet): ``torch.optim.SGD`` with its defaults, ``torch.no_grad()``.
* best: the training step through the engine's own ``train_one_epoch`` and ``build_optimizer``
  with the device's best :class:`~alexnet.engine.loop.Knobs`; inference through
  :func:`alexnet.engine.inference.optimize_for_inference`.

The four are timed interleaved in one process (round r runs A B C D, round r+1 D C B A), after
warm-up calls that are not counted; each figure is the median over rounds, and each ratio the
median of the per-round ratios best/baseline, which cancels load that drifts between rounds.
CUDA work is timed between ``torch.cuda.synchronize()`` calls.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.device import sync_for
from ..engine.inference import optimize_for_inference
from ..engine.loop import Knobs, Position, Totals, train_one_epoch
from ..engine.optim import Schedule, build_optimizer
from ..errors import AlexNetError
from ..models import get_model, model_info

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def best_settings(device: torch.device) -> Knobs:
    """The fastest training settings measured for this kind of device (inference picks its own path).

    CUDA: bf16 autocast, channels_last and torch.compile (with the fused SGD that
    ``build_optimizer`` picks). CPU: channels_last in fp32, the one candidate that was not
    slower there; torch.compile lost to eager after a first step of tens of seconds, and
    bf16 autocast is emulated on CPUs without bf16 units. The figures are in
    docs/performance.md (``benchmarks/model_throughput.py --candidates``).
    """
    if device.type == "cuda":
        return Knobs(amp="bf16", channels_last=True, compile=True)
    if device.type == "cpu":
        return Knobs(channels_last=True)
    return Knobs()


@dataclass
class Timing:
    """Seconds per call of one candidate: the warm-up calls, and one figure per round."""

    warmup_s: list[float] = field(default_factory=list)
    per_round_s: list[float] = field(default_factory=list)


def interleave(
    candidates: dict[str, Callable[[int], None]],
    rounds: int,
    min_seconds: float = 1.0,
    sync: Callable[[], None] = lambda: None,
    warmup: int = 2,
) -> dict[str, Timing]:
    """Time ``fn(n)`` (n calls of a step) for each candidate, interleaved over ``rounds``.

    Each candidate first runs ``warmup`` single calls (compilation, allocator, oneDNN
    primitive caches); the last one sets ``n`` so that one timed sample lasts about
    ``min_seconds``. Odd rounds run the candidates in reverse order.
    """
    timings = {name: Timing() for name in candidates}
    calls = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            timings[name].warmup_s.append(_timed(fn, 1, sync))
        calls[name] = max(1, min(100, math.ceil(min_seconds / max(timings[name].warmup_s[-1], 1e-6))))
    names = list(candidates)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            timings[name].per_round_s.append(_timed(candidates[name], calls[name], sync) / calls[name])
    return timings


def _timed(fn: Callable[[int], None], n: int, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn(n)
    sync()
    return time.perf_counter() - start



def plain_train_step(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> Callable[[int], None]:
    """The textbook eager fp32 loop, with ``torch.optim.SGD``'s defaults."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def run(n: int) -> None:
        for _ in range(n):
            loss = F.cross_entropy(model(images), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def engine_train_step(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, settings: Knobs
) -> tuple[Callable[[int], None], str]:
    """Steps through ``train_one_epoch``, set up as ``alexnet train`` sets it up; and what they use."""
    device = images.device
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, LR, MOMENTUM, WEIGHT_DECAY, device=device)
    net = torch.compile(model) if settings.compile else model
    schedule = Schedule("constant", LR, total_steps=1, steps_per_epoch=1)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
    totals, position = Totals.zeros(device), Position()

    def run(n: int) -> None:
        with _cudnn_benchmark(device):
            train_one_epoch(net, [(images, target)] * n, optimizer, schedule, scaler, device, settings, totals, position)

    kind = "fused" if optimizer.defaults.get("fused") else "foreach" if optimizer.defaults.get("foreach") else "for-loop"
    return run, f"{settings.describe()} + {kind} SGD"  # the SGD build_optimizer chose


def plain_infer(model: nn.Module, images: torch.Tensor) -> Callable[[int], None]:
    model.eval()

    def run(n: int) -> None:
        with torch.no_grad():
            for _ in range(n):
                model(images)

    return run


def best_infer(model: nn.Module, images: torch.Tensor, settings: Knobs) -> tuple[Callable[[int], None], str, float]:
    """Inference through ``optimize_for_inference``; also its backend and the seconds it took."""
    start = time.perf_counter()
    fn = optimize_for_inference(model, images.device, tuple(images.shape), amp=settings.amp)
    setup_s = time.perf_counter() - start

    def run(n: int) -> None:
        with _cudnn_benchmark(images.device):
            for _ in range(n):
                fn(images)

    return run, fn.backend, setup_s


class _cudnn_benchmark:
    """cuDNN autotuning for the 'best' side only (plain eager keeps PyTorch's default, off)."""

    def __init__(self, device: torch.device) -> None:
        self.on = device.type == "cuda"

    def __enter__(self) -> None:
        if self.on:
            self.saved, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, True

    def __exit__(self, *exc) -> None:
        if self.on:
            torch.backends.cudnn.benchmark = self.saved


@dataclass
class PassResult:
    baseline_img_per_s: float
    best_img_per_s: float
    ratio: float  # median over rounds of best / baseline in the same round
    best_setup_s: float  # optimize_for_inference: ONNX export or compilation, and its checks (0 for training)
    best_warmup_s: float  # first warm-up call of the best side (training: includes torch.compile)
    per_round_img_per_s: dict[str, list[float]]


@dataclass
class ArchResult:
    arch: str
    device: str
    threads: int
    batch_size: int
    image_size: int
    num_classes: int
    rounds: int
    baseline: str
    train_settings: str
    infer_backend: str
    train: PassResult
    infer: PassResult

    def to_dict(self) -> dict:
        return asdict(self)



def default_batch_size(image_size: int) -> int:
    return 256 if image_size <= 64 else 32


def bench_arch(
    arch: str,
    device: torch.device,
    batch_size: int | None = None,
    image_size: int | None = None,
    rounds: int = 7,
    min_seconds: float = 1.0,
    baseline: Callable[[int], nn.Module] | None = None,
    baseline_name: str = "eager fp32",
    settings: Knobs | None = None,
) -> ArchResult:
    """Throughput of ``arch`` on ``device``: plain eager fp32 vs the best settings.

    ``baseline(num_classes)`` builds the model of the plain side (default: ``arch`` itself).
    """
    image_size = image_size or model_info(arch).image_size
    batch_size = batch_size or default_batch_size(image_size)
    settings = settings or best_settings(device)
    model = get_model(arch)  # with the variant's own number of classes: 10 for alexnet_cifar
    num_classes, smallest = model.config.num_classes, model.min_input_size
    if image_size < smallest:
        raise AlexNetError(f"image size {image_size} is below {arch}'s minimum of {smallest}")
    baseline = baseline or (lambda k: get_model(arch, num_classes=k))
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    target = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)

    def build(factory: Callable[[int], nn.Module]) -> nn.Module:
        torch.manual_seed(0)
        return factory(num_classes).to(device)

    infer_best, backend, infer_setup_s = best_infer(build(lambda k: get_model(arch, num_classes=k)), images, settings)
    train_best, train_settings = engine_train_step(build(lambda k: get_model(arch, num_classes=k)), images, target, settings)
    candidates = {
        "train_baseline": plain_train_step(build(baseline), images, target),
        "train_best": train_best,
        "infer_baseline": plain_infer(build(baseline), images),
        "infer_best": infer_best,
    }
    timings = interleave(candidates, rounds, min_seconds, sync_for(device))

    def result(kind: str, setup_s: float) -> PassResult:
        base, best = timings[f"{kind}_baseline"], timings[f"{kind}_best"]
        base_ips = [batch_size / s for s in base.per_round_s]
        best_ips = [batch_size / s for s in best.per_round_s]
        return PassResult(
            baseline_img_per_s=statistics.median(base_ips),
            best_img_per_s=statistics.median(best_ips),
            ratio=statistics.median(b / a for a, b in zip(base_ips, best_ips)),
            best_setup_s=setup_s,
            best_warmup_s=best.warmup_s[0],
            per_round_img_per_s={"baseline": base_ips, "best": best_ips},
        )

    return ArchResult(
        arch=arch, device=str(device), threads=torch.get_num_threads(), batch_size=batch_size, image_size=image_size,
        num_classes=num_classes, rounds=rounds, baseline=baseline_name, train_settings=train_settings,
        infer_backend=backend, train=result("train", 0.0), infer=result("infer", infer_setup_s),
    )


def format_table(results: list[ArchResult], baseline_label: str = "eager") -> str:
    """One row per architecture and pass: baseline and best img/s, their ratio, and how."""
    header = f"{'arch':<14} {'batch':>5} {'size':>4}  {'pass':<5} {baseline_label + ' img/s':>14} {'best img/s':>11} {'ratio':>6}  best"
    lines = [header, "-" * len(header)]
    for r in results:
        for kind, how in (("train", r.train_settings), ("infer", r.infer_backend)):
            p: PassResult = getattr(r, kind)
            lead = f"{r.arch:<14} {r.batch_size:>5} {r.image_size:>4}" if kind == "train" else " " * 25
            lines.append(
                f"{lead}  {kind:<5} {p.baseline_img_per_s:>14.1f} {p.best_img_per_s:>11.1f} {p.ratio:>5.2f}x  {how}"
            )
    return "\n".join(lines)


def header_line(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return f"{name}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "CPU"


def dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(", ", ": "))
