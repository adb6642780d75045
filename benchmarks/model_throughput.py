"""Model throughput: this project's best settings against torchvision's AlexNet in plain eager fp32.

    .venv/bin/python benchmarks/model_throughput.py [--device auto|cpu|cuda] [--rounds N] [--quick]
    .venv/bin/python benchmarks/model_throughput.py --candidates    # every setting tried, on the CPU
    .venv/bin/python benchmarks/model_throughput.py --int8          # the int8 ONNX export vs torchvision eager

Images/s of a training step (forward, cross-entropy, backward, SGD step) and of inference
(forward without autograd) on synthetic batches already on the device:

* ``alexnet`` at batch 32, 224x224, against ``torchvision.models.alexnet(weights=None)``;
* ``alexnet_cifar`` at batch 256, 32x32, against itself (torchvision has no such net).

"best" is what ``alexnet bench`` measures (alexnet.tasks.bench; one timing loop for both):
the engine's ``train_one_epoch`` with the device's best settings, and
``alexnet.engine.inference.optimize_for_inference``. The baseline and the best side are
timed interleaved in one process (A B A B, warm-up excluded) with the same torch thread
count; figures are medians over rounds, ratios the median of per-round ratios. The last
line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from typing import Callable

import torch

from alexnet import get_model
from alexnet.engine.device import resolve_device
from alexnet.engine.inference import optimize_for_inference
from alexnet.engine.loop import Knobs
from alexnet.errors import first_line
from alexnet.tasks.bench import (
    bench_arch, dumps, engine_train_step, format_table, header_line, interleave, plain_train_step,
)

SHAPES = {"alexnet": (32, 224), "alexnet_cifar": (256, 32)}


def torchvision_alexnet(num_classes: int) -> torch.nn.Module:
    import torchvision

    return torchvision.models.alexnet(weights=None, num_classes=num_classes)


def throughput(device: torch.device, rounds: int, min_seconds: float) -> None:
    results = []
    for arch, (batch, size) in SHAPES.items():
        print(f"measuring {arch}, batch {batch}, {size}x{size} ...", flush=True)
        if arch == "alexnet":
            r = bench_arch(arch, device, batch, size, rounds, min_seconds, torchvision_alexnet, "torchvision eager fp32")
        else:
            r = bench_arch(arch, device, batch, size, rounds, min_seconds)
        results.append(r)
    print(header_line(device))
    print("baseline: torchvision.models.alexnet for alexnet, alexnet_cifar itself; both plain eager fp32")
    print(format_table(results, baseline_label="baseline"))
    tv, cifar = results
    figures = {
        "device": str(device), "host": header_line(device), "threads": torch.get_num_threads(), "rounds": rounds,
        "alexnet_train_img_per_s": tv.train.best_img_per_s, "torchvision_train_img_per_s": tv.train.baseline_img_per_s,
        "train_ratio": tv.train.ratio,
        "alexnet_infer_img_per_s": tv.infer.best_img_per_s, "torchvision_infer_img_per_s": tv.infer.baseline_img_per_s,
        "infer_ratio": tv.infer.ratio,
        "alexnet_cifar_train_img_per_s": cifar.train.best_img_per_s,
        "alexnet_cifar_eager_train_img_per_s": cifar.train.baseline_img_per_s, "alexnet_cifar_train_ratio": cifar.train.ratio,
        "alexnet_cifar_infer_img_per_s": cifar.infer.best_img_per_s,
        "alexnet_cifar_eager_infer_img_per_s": cifar.infer.baseline_img_per_s, "alexnet_cifar_infer_ratio": cifar.infer.ratio,
        "train_settings": tv.train_settings, "infer_backend": {tv.arch: tv.infer_backend, cifar.arch: cifar.infer_backend},
        "best_infer_setup_s": {r.arch: round(r.infer.best_setup_s + r.infer.best_warmup_s, 2) for r in results},
    }
    print(dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


# --- every training setting and inference path, side by side (CPU) ------------------------------


def inference_candidates(model: torch.nn.Module, images: torch.Tensor) -> dict[str, Callable[[], Callable]]:
    """name -> builder of ``fn(batch) -> logits``; each builder gets its own copy of the model."""
    cl = torch.channels_last

    def eager_no_grad():
        m = copy.deepcopy(model)
        return lambda x: _no_grad(m, x)

    def inference_mode():
        m = copy.deepcopy(model)
        return lambda x: _inference_mode(m, x)

    def channels_last():
        m = copy.deepcopy(model).to(memory_format=cl)
        return lambda x: _inference_mode(m, x.contiguous(memory_format=cl))

    def bf16_autocast():
        m = copy.deepcopy(model).to(memory_format=cl)

        def run(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return _inference_mode(m, x.contiguous(memory_format=cl)).float()

        return run

    def compiled(**options):
        def build():
            m = torch.compile(copy.deepcopy(model).to(memory_format=cl), options=options)
            return lambda x: _inference_mode(m, x.contiguous(memory_format=cl))

        return build

    def jit_freeze():
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            m = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(model), images)))
        return lambda x: _inference_mode(m, x)

    def fx_onednn():
        from torch.fx.experimental.optimization import optimize_for_inference as fx_optimize

        m = copy.deepcopy(model)
        if hasattr(m, "check_input"):
            m.check_input = lambda x: None  # shape checks are Python control flow, which fx cannot trace
        fm = fx_optimize(m)
        return lambda x: _inference_mode(fm, x)

    def onnxruntime():
        fn = optimize_for_inference(copy.deepcopy(model), "cpu", tuple(images.shape), backend="onnxruntime")
        if fn.backend != "onnxruntime":
            raise RuntimeError("; ".join(fn.notes))
        return fn

    def onnxruntime_int8():
        return int8_onnxruntime(model, images)

    return {
        "eager, no_grad (baseline)": eager_no_grad,
        "eager, inference_mode": inference_mode,
        "channels_last": channels_last,
        "bf16 autocast + channels_last": bf16_autocast,
        "torch.compile (inductor)": compiled(),
        "torch.compile, frozen weights": compiled(freezing=True),
        "torch.jit trace + freeze + optimize_for_inference": jit_freeze,
        "fx optimize_for_inference (oneDNN)": fx_onednn,
        "onnxruntime (optimize_for_inference)": onnxruntime,
        "onnxruntime int8 (alexnet export --quantize int8)": onnxruntime_int8,
    }


def int8_onnxruntime(model: torch.nn.Module, images: torch.Tensor) -> Callable:
    """What ``alexnet export --format onnx --quantize int8`` writes, run by ONNX Runtime. Calibrated
    on random batches here: the ranges change the accuracy, not the speed (the top-1 change is
    what ``alexnet export`` prints for real calibration images)."""
    from alexnet.engine.inference import export_onnx
    from alexnet.models.onnx_file import make_session
    from alexnet.tasks.quantize import quantize_onnx

    fp32 = export_onnx(copy.deepcopy(model).eval(), images[:1]).SerializeToString()
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(images.shape, generator=generator).numpy() for _ in range(2)]
    session = make_session(quantize_onnx(fp32, calibration))
    return lambda x: torch.from_numpy(session.run(None, {"images": x.contiguous().numpy()})[0])


def int8_against_torchvision(rounds: int, min_seconds: float) -> None:
    """Inference images/s of the int8 export of ``alexnet`` against torchvision's eager fp32, batch 32 at 224."""
    from alexnet.tasks.bench import interleave

    batch, size = SHAPES["alexnet"]
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    baseline = torchvision_alexnet(1000).eval()
    start = time.perf_counter()
    int8 = int8_onnxruntime(get_model("alexnet").eval(), images)
    setup = time.perf_counter() - start
    timings = interleave({"torchvision eager fp32": lambda k: [_no_grad(baseline, images) for _ in range(k)],
                          "int8 onnxruntime": lambda k: [int8(images) for _ in range(k)]}, rounds, min_seconds)
    base = [batch / s for s in timings["torchvision eager fp32"].per_round_s]
    ours = [batch / s for s in timings["int8 onnxruntime"].per_round_s]
    ratio = statistics.median(b / a for a, b in zip(base, ours))
    print(header_line(torch.device("cpu")))
    print(f"alexnet, batch {batch}, {size}x{size}, inference, {rounds} rounds, {torch.get_num_threads()} threads")
    print(f"  torchvision eager fp32 (no_grad) {statistics.median(base):8.1f} img/s")
    print(f"  int8 onnxruntime                 {statistics.median(ours):8.1f} img/s  {ratio:.2f}x  (setup {setup:.1f} s)")
    print(dumps({"int8_img_per_s": round(statistics.median(ours), 2),
                 "torchvision_img_per_s": round(statistics.median(base), 2), "int8_ratio": round(ratio, 3),
                 "rounds": rounds, "threads": torch.get_num_threads()}))


def _no_grad(model, x):
    with torch.no_grad():
        return model(x)


def _inference_mode(model, x):
    with torch.inference_mode():
        return model(x)


def training_candidates(arch: str, images: torch.Tensor, target: torch.Tensor) -> dict[str, Callable[[], Callable]]:
    """name -> builder of ``step(n)``: the plain loop, and the engine under several settings."""

    def model():
        torch.manual_seed(0)
        return get_model(arch)  # the variant's own number of classes: 10 for alexnet_cifar

    def engine(**settings):
        return lambda: engine_train_step(model(), images, target, Knobs(**settings))[0]

    return {
        "plain eager loop (baseline)": lambda: plain_train_step(model(), images, target),
        "engine, fp32": engine(),
        "engine, channels_last": engine(channels_last=True),
        "engine, channels_last + torch.compile": engine(channels_last=True, compile=True),
    }


def candidates(rounds: int, min_seconds: float) -> None:
    print(header_line(torch.device("cpu")))
    for arch, (batch, size) in SHAPES.items():
        torch.manual_seed(0)
        images, target = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        steps = {}
        for name, build in training_candidates(arch, images, target).items():
            steps[name] = build()
        timings = interleave(steps, rounds, min_seconds)
        base = [batch / s for s in timings["plain eager loop (baseline)"].per_round_s]
        print(f"\n{arch}, batch {batch}, {size}x{size}, training step, {rounds} rounds")
        for name, t in timings.items():
            ips = [batch / s for s in t.per_round_s]
            ratio = statistics.median(b / a for a, b in zip(base, ips))
            print(f"  {name:<50} {statistics.median(ips):8.1f} img/s {ratio:5.2f}x  first step {t.warmup_s[0]:5.1f} s")

    for arch, (batch, size) in SHAPES.items():
        torch.manual_seed(0)
        model = get_model(arch, num_classes=10 if arch == "alexnet_cifar" else 1000).eval()
        images = torch.randn(batch, 3, size, size)
        reference = _no_grad(model, images)
        built, notes = {}, {}
        for name, build in inference_candidates(model, images).items():
            start = time.perf_counter()
            try:
                fn = build()
                out = fn(images)  # compiles, where there is compiling to do
            except Exception as e:  # noqa: BLE001 - a candidate that cannot run is reported, not fatal
                notes[name] = f"fails: {first_line(e)[:90]}"
                continue
            setup = time.perf_counter() - start
            error = (out.float() - reference).abs().max().item()
            notes[name] = f"setup {setup:5.1f} s, max |diff| {error:.1e}"
            built[name] = fn
        timings = interleave({n: (lambda k, f=f: [f(images) for _ in range(k)]) for n, f in built.items()},
                             rounds, min_seconds)
        base = [batch / s for s in timings["eager, no_grad (baseline)"].per_round_s]
        print(f"\n{arch}, batch {batch}, {size}x{size}, inference, {rounds} rounds")
        for name, note in notes.items():
            if name in timings:
                ips = [batch / s for s in timings[name].per_round_s]
                ratio = statistics.median(b / a for a, b in zip(base, ips))
                print(f"  {name:<50} {statistics.median(ips):8.1f} img/s {ratio:5.2f}x  {note}")
            else:
                print(f"  {name:<50} {'':>8} {'':>11} {'':>5}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default: 7)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of single steps: checks that it runs")
    parser.add_argument("--candidates", action="store_true",
                        help="instead, time every training setting and inference path tried on the CPU")
    parser.add_argument("--int8", action="store_true",
                        help="instead, time the int8 ONNX export of alexnet against torchvision's eager fp32 (CPU)")
    args = parser.parse_args()
    rounds, min_seconds = (2, 0.0) if args.quick else (args.rounds, 1.0)
    if args.int8:
        int8_against_torchvision(rounds, min_seconds)
    elif args.candidates:
        candidates(rounds, min_seconds)
    else:
        throughput(resolve_device(args.device), rounds, min_seconds)


if __name__ == "__main__":
    main()
