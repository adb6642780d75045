"""Images per second delivered to the training loop: torchvision's ImageFolder + PIL in a
DataLoader (the baseline) against this project's image cache with batched augmentation.

Both produce the same thing: float (B, 3, 224, 224) batches, randomly cropped from the
image's 256 square (the shorter side resized to 256), randomly flipped, normalised, and
labels; both use the same number of worker processes. The cache is built (and timed)
first, so the fast path is measured at steady state, as every epoch after the first runs.
Rounds alternate baseline and fast path; medians are reported. The last line is JSON.

    python benchmarks/data_pipeline.py --data ../shared/data/imagenette_small
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from alexnet.data import open_source
from alexnet.data.cache import cache_split
from alexnet.data.fast import CachedLoader
from alexnet.data.loading import EpochBatchSampler


def rate(batches, limit: int) -> float:
    """Images per second over ``limit`` images, after one warm-up batch (worker start-up)."""
    it = iter(batches)
    next(it)
    seen, start = 0, time.perf_counter()
    for batch in it:
        seen += len(batch[1])
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="an image folder (DIR/train/<class>/ or DIR/<class>/)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=1536, help="images timed per round (default: 1536)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache-dir", default=None, help="default: a temporary folder, removed afterwards")
    args = ap.parse_args()

    root = Path(args.data)
    train_dir = root / "train" if (root / "train").is_dir() else root
    torch.set_num_threads(max(1, torch.get_num_threads()))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    baseline_ds = datasets.ImageFolder(str(train_dir), transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(256), transforms.RandomCrop(224),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(mean, std)]))
    baseline = DataLoader(baseline_ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                          drop_last=True, persistent_workers=False)

    splits = open_source(str(root), 224, 0.1)
    p = splits.preprocess  # 256 -> 224, ImageNet mean/std: the same work as the baseline
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or tmp
        start = time.perf_counter()
        cache = cache_split(splits.train, p.resize, "bench-train", cache_dir, args.workers)
        build_s = time.perf_counter() - start
        sampler = EpochBatchSampler(cache.n, args.batch_size, seed=0)
        ours = CachedLoader(cache, p, sampler, train=True, device=torch.device("cpu"), workers=args.workers)
        limit = min(args.images, (cache.n // args.batch_size - 1) * args.batch_size)
        base_rates, our_rates = [], []
        for r in range(args.rounds):
            sampler.set_epoch(r + 1)
            base_rates.append(rate(baseline, limit))
            our_rates.append(rate(ours, limit))
            print(f"round {r + 1}: baseline {base_rates[-1]:8.1f} img/s   cache {our_rates[-1]:8.1f} img/s")

    b, o = statistics.median(base_rates), statistics.median(our_rates)
    print(f"{train_dir}: {cache.n} images, batch {args.batch_size}, {args.workers} workers, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"baseline (ImageFolder + PIL transforms, DataLoader): {b:8.1f} img/s")
    print(f"cache (uint8 memmap, batched crop/flip/normalise):   {o:8.1f} img/s  (built once in {build_s:.1f}s)")
    print(json.dumps({"data": str(train_dir), "images": cache.n, "batch_size": args.batch_size,
                      "workers": args.workers, "cache_build_s": round(build_s, 2),
                      "baseline_img_per_s": round(b, 1), "ours_img_per_s": round(o, 1), "ratio": round(o / b, 2)}))


if __name__ == "__main__":
    main()
