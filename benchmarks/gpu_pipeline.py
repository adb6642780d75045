"""The GPU figures of the performance issue in one run: the model alone, and training fed by each data path.

    python benchmarks/gpu_pipeline.py --make-jpegs 20000 --workers 16          # on a GPU machine
    python benchmarks/gpu_pipeline.py --data ../shared/data/imagenette_small  # 2,600 224x224 JPEGs
    python benchmarks/gpu_pipeline.py --quick --device cpu --data DIR         # checks that it runs

1. **Model only.** Images/s of a training step (forward, cross-entropy, backward, SGD step)
   of ``alexnet`` at 224x224, batch 256, on synthetic batches already on the device: the
   engine's own step (``alexnet.tasks.bench.engine_train_step``) with the device's best
   settings (``best_settings``: on CUDA bf16 autocast, channels_last, ``torch.compile`` and
   fused SGD; on the CPU fp32 channels_last and fused SGD) against
   ``torchvision.models.alexnet(weights=None)`` in plain eager fp32 with ``torch.optim.SGD``
   (``plain_train_step``). Both 1000 classes, timed interleaved (A B, B A, ...; warm-up and
   compilation excluded), medians over rounds; the ratio is the median of per-round ratios.
   The issue's target: at least 30,000 img/s on an H100.

2. **End to end.** Images/s of training where every step's batch comes from a data feed and
   goes through the same best-settings step of ``alexnet`` (one model, compiled once, fed
   batches through ``train_one_epoch`` as ``alexnet train`` does):

   a. ``baseline``: torchvision ``ImageFolder`` + PIL transforms (Resize 256, CenterCrop 256,
      RandomCrop 224, flip, ToTensor, Normalize) in a ``DataLoader`` with ``--workers``
      workers, pinned memory on CUDA, non-blocking copies: what a PyTorch tutorial writes;
   b. ``cache``: the uint8 image cache (``cache_split``, built once before timing, as every
      epoch after a run's first finds it) served by ``CachedLoader``; on CUDA it is resident
      in GPU memory when it takes under 40% of the free memory, as ``alexnet train --cache``
      decides (``--resident`` overrides), else workers send uint8 crops and the GPU finishes;
   c. ``decode``: ``DeviceDecodeLoader``: workers read JPEG bytes, the device decodes each
      batch (``torchvision.io.decode_jpeg``, nvJPEG on CUDA) and crops, flips, normalises.

   Each feed's rate, and its ratio to (a) (median of per-round ratios). The issue's targets
   on an H100: (b) at least 15,000 img/s, (c) at least 8,000 img/s. Each feed's data-only
   rate is measured too (the loader iterated, batches copied to the device, no model step)
   so that a reader sees whether the feed or the model sets the pace.

Every feed is endless (epochs follow one another in one DataLoader, so small data sets do
not restart workers every few batches). A timed window starts after the feed's prefetch
buffer (workers x prefetch factor batches, plus two) has been drawn through the step, so
batches prepared while nothing was timed are not counted; each window times ``--steps``
batches, its workers are shut down afterwards, and rounds alternate the feeds' order. CUDA
work is timed between ``torch.cuda.synchronize()`` calls, with ``cudnn.benchmark`` on (for
the eager baseline too).

``--make-jpegs N`` writes N synthetic JPEGs of ImageNet's common sizes (mostly 500x375 and
375x500, some 500x333, 333x500, 500x400 and 640x480; quality 90, ~80 KB each, smooth
multi-scale random content with grain, so they decode like photographs rather than flat
colour) in 10 class folders of a temporary folder on the machine itself. The cache goes to
a temporary folder too unless ``--cache-dir``. A feed that fails is reported (its figures
null) and the others still run. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Sampler, Subset
from torchvision import datasets, models, transforms

from alexnet import get_model
from alexnet.data import open_source
from alexnet.data.cache import cache_split
from alexnet.data.datasets import FolderSubset
from alexnet.data.fast import CachedLoader
from alexnet.data.jpeg import DeviceDecodeLoader
from alexnet.data.loading import EpochBatchSampler
from alexnet.engine.device import resolve_device, sync_for
from alexnet.engine.loop import Knobs, Position, Totals, train_one_epoch
from alexnet.engine.optim import Schedule, build_optimizer
from alexnet.errors import AlexNetError
from alexnet.tasks.bench import (
    LR, MOMENTUM, WEIGHT_DECAY, best_settings, dumps, engine_train_step, header_line, interleave,
    plain_train_step,
)

NUM_CLASSES = 1000  # ImageNet's fc8, on every side (the data's labels are a subset)
QUICK_HIDDEN = 64  # --quick: fc6 and fc7 this wide on both sides, so that a CPU step takes milliseconds
TARGETS = {"model_best_img_per_s": 30_000, "e2e_cache_img_per_s": 15_000, "e2e_decode_img_per_s": 8_000}
FEEDS = ("baseline", "cache", "decode")
# ImageNet's most common sizes, in proportion roughly: landscape 500x375 dominates.
JPEG_SIZES = ((500, 375), (375, 500), (500, 375), (375, 500), (500, 375), (500, 333), (333, 500), (500, 400),
              (640, 480), (500, 375))


# --- synthetic JPEGs ------------------------------------------------------------------------------


def synthetic_jpeg(args: tuple[Path, int]) -> int:
    """Image ``i``: smooth random content at three scales plus grain, saved at quality 90; its bytes."""
    folder, i = args
    w, h = JPEG_SIZES[i % len(JPEG_SIZES)]
    rng = np.random.default_rng(i)
    pixels = np.full((h, w, 3), 128.0, np.float32)
    for cells, amplitude in ((6, 90.0), (24, 40.0), (96, 20.0)):
        small = rng.normal(0, amplitude, (max(2, h * cells // 500), max(2, w * cells // 500), 3)).astype(np.float32)
        pixels += np.stack([np.asarray(Image.fromarray(small[..., c], mode="F").resize((w, h), Image.BICUBIC))
                            for c in range(3)], axis=-1)
    pixels += rng.normal(0, 8.0, (h, w, 1))
    path = folder / f"class{i % 10:02d}" / f"img{i:06d}.jpg"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path.stat().st_size


def make_jpegs(folder: Path, n: int, workers: int) -> float:
    """``n`` synthetic JPEGs in ``folder/class00..class09/``; their mean size in KB."""
    for c in range(10):
        (folder / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    jobs = [(folder, i) for i in range(n)]
    if workers > 1:
        with Pool(workers) as pool:
            sizes = pool.map(synthetic_jpeg, jobs, chunksize=64)
    else:
        sizes = [synthetic_jpeg(job) for job in jobs]
    return sum(sizes) / max(1, n) / 1e3


# --- model only -----------------------------------------------------------------------------------



def our_alexnet(hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("alexnet", num_classes=NUM_CLASSES, hidden=hidden)


def torchvision_alexnet(hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.alexnet(weights=None, num_classes=NUM_CLASSES)
    if hidden != 4096:  # --quick only: the same classifier, narrower
        c = model.classifier
        c[1], c[4] = nn.Linear(c[1].in_features, hidden), nn.Linear(hidden, hidden)
        c[6] = nn.Linear(hidden, NUM_CLASSES)
    return model


def model_only(device: torch.device, batch: int, size: int, settings: Knobs, rounds: int,
               min_seconds: float, hidden: int, warmup: int) -> dict:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=g).to(device)
    target = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
    best, how = engine_train_step(our_alexnet(hidden).to(device), images, target, settings)
    baseline = plain_train_step(torchvision_alexnet(hidden).to(device), images, target)
    timings = interleave({"baseline": baseline, "best": best}, rounds, min_seconds, sync_for(device), warmup)
    base = [batch / s for s in timings["baseline"].per_round_s]
    ours = [batch / s for s in timings["best"].per_round_s]
    return {"settings": how, "baseline": base, "best": ours, "first_step_s": timings["best"].warmup_s[0],
            "ratio": statistics.median(b / a for a, b in zip(base, ours))}


# --- feeds ----------------------------------------------------------------------------------------


class Endless(Sampler):
    """``EpochBatchSampler``'s batches of ``(index, sample seed)``, epoch after epoch without end
    (``pairs=False``: the indices alone, for a plain DataLoader's ``batch_sampler``)."""

    def __init__(self, n: int, batch_size: int, pairs: bool = True):
        self.epochs, self.pairs = EpochBatchSampler(n, batch_size, seed=0), pairs

    def __iter__(self) -> Iterator[list]:
        for epoch in itertools.count(1):
            self.epochs.set_epoch(epoch)
            for batch in self.epochs:
                yield batch if self.pairs else [i for i, _ in batch]


@dataclass
class Feed:
    name: str
    label: str
    open: Callable[[], Iterator]  # a fresh, endless iterator of batches (images, target[, skipped])
    ahead: int  # batches it can have ready before anyone asks: the warm-up drawn before timing


def baseline_feed(train_root: Path, paths: list[str], p, batch: int, workers: int, device: torch.device) -> Feed:
    ds = datasets.ImageFolder(str(train_root), transforms.Compose([
        transforms.Resize(p.resize), transforms.CenterCrop(p.resize), transforms.RandomCrop(p.crop),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(p.mean, p.std)]))
    wanted = set(paths)  # the same training images as the other feeds
    ds = Subset(ds, [i for i, (path, _) in enumerate(ds.samples) if path in wanted])
    if len(ds) != len(paths):
        raise RuntimeError(f"ImageFolder found {len(ds)} of the {len(paths)} training images (file types it skips?)")
    loader = DataLoader(ds, batch_sampler=Endless(len(ds), batch, pairs=False), num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    return Feed("baseline", f"ImageFolder + PIL, DataLoader, {workers} workers",
                lambda: (b for b in loader), workers * 2)  # DataLoader's default prefetch_factor


def cache_feed(cache, p, batch: int, workers: int, device: torch.device, channels_last: bool, resident: bool) -> Feed:
    loader = CachedLoader(cache, p, Endless(cache.n, batch), train=True, device=device, workers=workers,
                          channels_last=channels_last, resident=resident)
    where = f"resident on {device.type.upper()}" if resident else \
        f"{workers} workers, finished {'in workers' if loader.finish_in_workers else 'on ' + device.type.upper()}"
    return Feed("cache", f"uint8 cache, {where}", lambda: iter(loader), 0 if resident else workers * loader.prefetch)


def decode_feed(subset, p, batch: int, workers: int, device: torch.device, channels_last: bool) -> Feed:
    loader = DeviceDecodeLoader(subset, p, Endless(len(subset), batch), train=True, device=device, workers=workers,
                                channels_last=channels_last)
    how = "nvJPEG" if device.type == "cuda" else "libjpeg"
    return Feed("decode", f"JPEG bytes, decoded on {device.type.upper()} ({how}), {workers} workers",
                lambda: iter(loader), workers * 4)  # DeviceDecodeLoader's prefetch_factor


# --- end to end -----------------------------------------------------------------------------------


class FeedStep:
    """``engine_train_step``'s step, set up the same way (``alexnet train``'s), fed a loader's batches."""

    def __init__(self, device: torch.device, settings: Knobs, hidden: int):
        model = our_alexnet(hidden).to(device)
        if settings.channels_last:
            model.to(memory_format=torch.channels_last)
        self.device = device
        self.optimizer = build_optimizer(model, LR, MOMENTUM, WEIGHT_DECAY, device=device)
        self.net = torch.compile(model) if settings.compile else model
        self.schedule = Schedule("constant", LR, total_steps=1, steps_per_epoch=1)
        self.scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
        self.knobs = settings
        self.totals, self.position = Totals.zeros(device), Position()

    def __call__(self, batches: Iterable) -> None:
        train_one_epoch(self.net, batches, self.optimizer, self.schedule, self.scaler, self.device, self.knobs,
                        self.totals, self.position)


def data_only(device: torch.device) -> Callable[[Iterable], None]:
    def consume(batches: Iterable) -> None:
        for batch in batches:
            if batch[0] is not None:  # delivered to the device, as a training step would need it
                batch[0].to(device, non_blocking=True)
                batch[1].to(device, non_blocking=True)

    return consume


def window(feed: Feed, steps: int, consume: Callable[[Iterable], None], sync: Callable[[], None],
           quick: bool = False) -> float:
    """Images/s of ``consume`` over ``steps`` batches of a fresh iterator, after its prefetch
    buffer (``quick``: after one batch)."""
    it = feed.open()
    seen = [0]

    def counted(n: int) -> Iterator:
        for batch in itertools.islice(it, n):
            seen[0] += 0 if batch[1] is None else len(batch[1])
            yield batch

    try:
        consume(counted(1 if quick else feed.ahead + 2))
        sync()
        seen[0], start = 0, time.perf_counter()
        consume(counted(steps))
        sync()
        return seen[0] / (time.perf_counter() - start)
    finally:
        it.close()  # shuts its workers down: an idle feed must not compete with the timed one


# --- the run --------------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(x: float | None, width: int = 10) -> str:
    return f"{x:>{width},.0f}" if x is not None else f"{'-':>{width}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="an image folder: DIR/train/<class>/ or DIR/<class>/")
    src.add_argument("--make-jpegs", type=int, metavar="N",
                     help="write N synthetic ImageNet-sized JPEGs to a temporary folder and use them")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--batch-size", type=int, default=None, help="default 256 (--quick: 8)")
    ap.add_argument("--image-size", type=int, default=None, help="default 224 (--quick: 64)")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers of every feed (default: 16 on CUDA, 2 on the CPU)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3; --quick: 1)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed batches per round, feed and mode (default 50; --quick: 2)")
    ap.add_argument("--feeds", default=",".join(FEEDS),
                    help=f"which feeds, comma-separated (default: {','.join(FEEDS)})")
    ap.add_argument("--resident", default="auto", choices=("auto", "yes", "no"),
                    help="keep the cache in device memory (auto: on CUDA when under 40%% of free memory)")
    ap.add_argument("--no-compile", action="store_true", help="the best settings without torch.compile")
    ap.add_argument("--cache-dir", default=None, help="default: a temporary folder, removed afterwards")
    ap.add_argument("--quick", action="store_true",
                    help=f"tiny settings (64x64, batch 8, fc6/fc7 {QUICK_HIDDEN} wide on both sides, 1 round of "
                         "2 steps, one warm-up batch): checks that it runs")
    args = ap.parse_args()
    feeds = [f.strip() for f in args.feeds.split(",") if f.strip()]
    if not set(feeds) <= set(FEEDS):
        ap.error(f"--feeds: choose from {', '.join(FEEDS)}")
    try:
        device = resolve_device(args.device)
    except AlexNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cuda = device.type == "cuda"
    batch = args.batch_size or (8 if args.quick else 256)
    size = args.image_size or (64 if args.quick else 224)
    workers = args.workers if args.workers is not None else (16 if cuda else 2)
    rounds = args.rounds or (1 if args.quick else 3)
    steps = args.steps or (2 if args.quick else 50)
    hidden = QUICK_HIDDEN if args.quick else 4096
    settings = best_settings(device)
    if args.no_compile:
        settings = dataclasses.replace(settings, compile=False)
    if cuda:
        torch.backends.cudnn.benchmark = True
    sync = sync_for(device)

    with tempfile.TemporaryDirectory(prefix="gpu_pipeline-") as tmp:
        tmp = Path(tmp)
        made_kb, made_s = None, None
        if args.make_jpegs:
            start = time.perf_counter()
            made_kb = make_jpegs(tmp / "jpegs", args.make_jpegs, max(1, workers))
            made_s = time.perf_counter() - start
            print(f"wrote {args.make_jpegs} JPEGs ({made_kb:.0f} KB each on average) in {made_s:.1f} s", flush=True)
        root = tmp / "jpegs" if args.make_jpegs else Path(args.data)
        try:
            splits = open_source(str(root), size, 0.1)
        except AlexNetError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        p, train = splits.preprocess, splits.train
        if not isinstance(train, FolderSubset) or p.resize == p.crop:
            print(f"error: {root}: not a folder of images to crop from", file=sys.stderr)
            return 1
        if len(train) < batch:
            print(f"error: {root}: {len(train)} training images are fewer than one batch of {batch}", file=sys.stderr)
            return 1
        train_root = train.root
        print(header_line(device))
        print(f"data: {splits.description}")
        print(f"alexnet at {size}x{size}, {NUM_CLASSES} classes, batch {batch}, {workers} workers, "
              f"{rounds} rounds, {steps} timed steps per window", flush=True)

        print("model only ...", flush=True)
        m = model_only(device, batch, size, settings, rounds, 0.0 if args.quick else 1.0, hidden,
                       1 if args.quick else 2)
        m_best, m_base = median(m["best"]), median(m["baseline"])
        print(f"  round figures: baseline {', '.join(f'{x:,.0f}' for x in m['baseline'])}; "
              f"best {', '.join(f'{x:,.0f}' for x in m['best'])} img/s (first step {m['first_step_s']:.1f} s)",
              flush=True)
        if cuda:
            torch.cuda.empty_cache()

        step = FeedStep(device, settings, hidden)
        warm = torch.randn(batch, 3, size, size, device=device), torch.randint(0, NUM_CLASSES, (batch,), device=device)
        start = time.perf_counter()
        step([warm] * (1 if args.quick else 2))  # compilation and cuDNN's autotuning, before any feed
        sync()
        e2e_first_s = time.perf_counter() - start
        del warm

        built: dict[str, Feed] = {}
        errors: dict[str, str] = {}
        cache_build_s, cache_gib, resident = None, None, None
        for name in feeds:
            try:
                if name == "baseline":
                    built[name] = baseline_feed(train_root, train.paths, p, batch, workers, device)
                elif name == "cache":
                    start = time.perf_counter()
                    cache = cache_split(train, p.resize, "gpu-pipeline-train", args.cache_dir or tmp / "cache", workers)
                    cache_build_s, cache_gib = time.perf_counter() - start, cache.nbytes / 2**30
                    if args.resident == "auto":  # as alexnet.engine.pipeline.make_loaders decides
                        resident = cuda and cache.nbytes < 0.4 * torch.cuda.mem_get_info(device)[0]
                    else:
                        resident = args.resident == "yes"
                    built[name] = cache_feed(cache, p, batch, workers, device, settings.channels_last, resident)
                    print(f"cache: {cache.n} images, {cache_gib:.2f} GiB, built in {cache_build_s:.1f} s", flush=True)
                else:
                    built[name] = decode_feed(train, p, batch, workers, device, settings.channels_last)
            except Exception as e:  # noqa: BLE001 - one broken path must not lose the other figures
                errors[name] = f"{type(e).__name__}: {e}"
                print(f"{name}: failed to set up: {errors[name]}", flush=True)

        e2e = {name: [] for name in built}
        data = {name: [] for name in built}
        order = list(built)
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                if name in errors:
                    continue
                try:
                    e2e[name].append(window(built[name], steps, step, sync, args.quick))
                    data[name].append(window(built[name], steps, data_only(device), sync, args.quick))
                except Exception as e:  # noqa: BLE001
                    errors[name] = f"{type(e).__name__}: {e}"
                    print(f"{name}: failed: {errors[name]}", flush=True)
                    continue
                print(f"round {r + 1}: {name:<8} train {e2e[name][-1]:10,.1f} img/s   "
                      f"data only {data[name][-1]:10,.1f} img/s", flush=True)

    def ratio(name: str) -> float | None:
        a, b = e2e.get("baseline", []), e2e.get(name, [])
        if name in errors or "baseline" in errors or not a or len(a) != len(b):
            return None
        return statistics.median(y / x for x, y in zip(a, b))

    figures = {
        "device": str(device), "host": header_line(device),
        "data": str(args.data or f"{args.make_jpegs} synthetic JPEGs"),
        "images": len(train), "made_jpeg_kb": made_kb, "made_jpegs_s": made_s,
        "arch": "alexnet", "hidden": hidden, "image_size": size, "num_classes": NUM_CLASSES, "batch_size": batch,
        "workers": workers,
        "rounds": rounds, "steps": steps, "threads": torch.get_num_threads(), "settings": m["settings"],
        "model_best_img_per_s": m_best, "model_baseline_img_per_s": m_base, "model_ratio": m["ratio"],
        "model_best_first_step_s": m["first_step_s"], "e2e_first_steps_s": e2e_first_s,
        "cache_resident": resident, "cache_build_s": cache_build_s, "cache_gib": cache_gib,
    }
    for name in FEEDS:
        figures[f"e2e_{name}_img_per_s"] = median(e2e.get(name, [])) if name not in errors else None
        figures[f"data_{name}_img_per_s"] = median(data.get(name, [])) if name not in errors else None
        figures[f"e2e_{name}_ratio"] = ratio(name)
    figures["per_round"] = {f"{kind}_{name}": [round(x, 1) for x in v]
                            for kind, runs in (("e2e", e2e), ("data", data)) for name, v in runs.items()}
    figures["per_round"].update(model_baseline=[round(x, 1) for x in m["baseline"]],
                                model_best=[round(x, 1) for x in m["best"]])
    figures["targets"] = TARGETS
    figures["targets_met"] = {k: (figures[k] >= v if figures[k] is not None else False) if cuda else None
                              for k, v in TARGETS.items()}
    figures["errors"] = errors

    print()
    print(header_line(device))
    print(f"{figures['data']}: {len(train)} training images; alexnet at {size}x{size}, batch {batch}, "
          f"{workers} workers, {rounds} rounds x {steps} steps; medians")
    print(f"best settings: {m['settings']}" + ("; cudnn.benchmark on" if cuda else ""))
    met = figures["targets_met"]

    def target(key: str) -> str:
        if key not in TARGETS:
            return ""
        return f"{TARGETS[key]:,}: " + ({True: "met", False: "NOT met", None: "(GPU only)"}[met[key]])

    print()
    print(f"{'model only (synthetic batches on the device)':<58} {'img/s':>10} {'ratio':>7}   target")
    print(f"  {'torchvision alexnet, eager fp32':<56} {fmt(m_base)} {1.0:>6.2f}x")
    print(f"  {'alexnet, best settings':<56} {fmt(m_best)} {m['ratio']:>6.2f}x   {target('model_best_img_per_s')}")
    print()
    print(f"{'end to end (feed -> the best training step)':<58} {'img/s':>10} {'ratio':>7} {'data only':>10} "
          f"{'limit':>6}   target")
    for letter, name in zip("abc", FEEDS):
        if name not in feeds:
            continue
        label = built[name].label if name in built else name
        if name in errors:
            print(f"  ({letter}) {label[:52]:<52} failed: {errors[name]}")
            continue
        e, d, q = figures[f"e2e_{name}_img_per_s"], figures[f"data_{name}_img_per_s"], figures[f"e2e_{name}_ratio"]
        limit = "feed" if d is not None and m_best is not None and d < m_best else "model"
        print(f"  ({letter}) {label[:52]:<52} {fmt(e)} {(f'{q:.2f}x' if q is not None else '-'):>7} {fmt(d)} {limit:>6}"
              f"   {target(f'e2e_{name}_img_per_s')}")
    print(dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
