"""Wall time of one training epoch: `alexnet train` (image cache, best CPU/GPU settings)
against a plain PyTorch loop written here (torchvision ImageFolder + PIL transforms in a
DataLoader, eager fp32 model, torch.optim.SGD), with the same model, data, batch and workers.

Only the training pass is timed in both (no validation, no checkpoint writing); the cache is
built before the timed epoch, as every epoch after a run's first finds it. `--images N`
times an epoch over a fixed subset of N images (linked into a temporary folder) when a full
epoch takes too long on the machine. A profile follows: each side's data path alone, and
the training step alone on a batch already on the device, whose rate bounds the ratio any
data path can reach. The last line is JSON.

    python benchmarks/train_epoch.py --data ../shared/data/flowers_128
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from alexnet.data import open_source
from alexnet.data.cache import cache_split
from alexnet.data.fast import CachedLoader
from alexnet.data.images import is_image_file
from alexnet.data.loading import EpochBatchSampler
from alexnet.engine.config import TrainConfig
from alexnet.engine.train import fit
from alexnet.models import get_model
from alexnet.engine.loop import Knobs
from alexnet.tasks.bench import engine_train_step


def subset(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` images (by name, spread over the classes) of ``src``, symlinked into ``dst``."""
    classes = sorted(p for p in src.iterdir() if p.is_dir())
    per_class = max(1, n // len(classes))
    for c in classes:
        (dst / c.name).mkdir(parents=True)
        for f in sorted(f for f in c.iterdir() if is_image_file(f.name))[:per_class]:
            os.symlink(f.resolve(), dst / c.name / f.name)
    return dst


def baseline_loader(data: Path, size: int, batch: int, workers: int, device: torch.device) -> DataLoader:
    resize = round(size * 256 / 224)
    ds = datasets.ImageFolder(str(data), transforms.Compose([
        transforms.Resize(resize), transforms.CenterCrop(resize), transforms.RandomCrop(size),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]))
    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                      pin_memory=device.type == "cuda")


def baseline_epoch(data: Path, size: int, batch: int, workers: int, device: torch.device) -> tuple[float, int]:
    """The plain loop: what a PyTorch tutorial would write."""
    loader = baseline_loader(data, size, batch, workers, device)
    ds = loader.dataset
    model = get_model("alexnet_cifar", num_classes=len(ds.classes)).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, seen


def ours_epoch(data: Path, size: int, batch: int, workers: int, device: str, out: Path, cache: Path,
               fast: dict) -> tuple[float, int]:
    """`alexnet train` for one epoch; its own measurement of the training pass (metrics.csv)."""
    cfg = TrainConfig(data=str(data), arch="alexnet_cifar", image_size=size, epochs=1, batch_size=batch,
                      workers=workers, val_split=0.02, stats_images=256, cache=True, cache_dir=str(cache),
                      out=str(out), device=device, log_every=10_000, **fast)
    fit(cfg)  # quiet: nothing shows the alexnet loggers here
    with open(out / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    return float(row["seconds"]), round(float(row["img_per_s"]) * float(row["seconds"]))


def data_rate(batches, device: torch.device, limit: int = 20) -> float:
    """Images per second of a loader alone (batches moved to the device, no model step)."""
    it = iter(batches)
    next(it)  # worker start-up
    seen, start = 0, time.perf_counter()
    for k, batch in enumerate(it):
        seen += len(batch[1])
        batch[0].to(device)
        if k + 1 == limit:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def profile(data: Path, size: int, batch: int, workers: int, device: torch.device, cache: Path, fast: dict) -> dict:
    """Where an epoch's time goes: each side's data path alone, and the engine's training
    step alone on a batch already on the device. The step's rate bounds what any data path
    can give: an epoch cannot run faster than its steps."""
    splits = open_source(str(data), size, 0.02)
    p = splits.preprocess
    built = cache_split(splits.train, p.resize, "profile", str(cache), workers)
    sampler = EpochBatchSampler(built.n, batch, seed=0)
    sampler.set_epoch(1)
    ours = CachedLoader(built, p, sampler, train=True, device=device, workers=workers, channels_last=fast["channels_last"])
    model = get_model("alexnet_cifar", num_classes=len(splits.class_names)).to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, len(splits.class_names), (batch,), device=device)
    step, _ = engine_train_step(model, images, target, Knobs(**fast))
    step(1)  # warm-up (and compilation)
    n = 5
    start = time.perf_counter()
    step(n)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"baseline_data_img_per_s": round(data_rate(baseline_loader(data, size, batch, workers, device), device), 1),
            "ours_data_img_per_s": round(data_rate(ours, device), 1),
            "train_step_img_per_s": round(n * batch / (time.perf_counter() - start), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a folder of class folders (e.g. ../shared/data/flowers_128)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=0, help="time an epoch over this many images (default: all)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    device = torch.device(args.device)
    # The engine's best settings for the device (see benchmarks/model_throughput.py).
    fast = {"amp": "bf16", "channels_last": True, "compile": True} if device.type == "cuda" else {"channels_last": True}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = subset(Path(args.data), tmp / "data", args.images) if args.images else Path(args.data)
        # The cache is built by a first (untimed) run, as any later epoch would find it.
        ours_epoch(data, args.image_size, args.batch_size, args.workers, args.device, tmp / "warm", tmp / "cache", fast)
        ours, base = [], []
        for r in range(args.rounds):  # alternating, medians: the machine's load drifts
            ours.append(ours_epoch(data, args.image_size, args.batch_size, args.workers, args.device,
                                   tmp / f"run{r}", tmp / "cache", fast))
            base.append(baseline_epoch(data, args.image_size, args.batch_size, args.workers, device))
            print(f"round {r + 1}: baseline {base[-1][0]:7.1f} s   alexnet train {ours[-1][0]:7.1f} s")
        where = profile(data, args.image_size, args.batch_size, args.workers, device, tmp / "cache", fast)
    # The median round of each, by images per second (the two epochs differ by the few
    # images train holds out for its validation split).
    ours_s, ours_n = sorted(ours, key=lambda r: r[1] / r[0])[len(ours) // 2]
    base_s, base_n = sorted(base, key=lambda r: r[1] / r[0])[len(base) // 2]
    b, o = base_n / base_s, ours_n / ours_s
    print(f"{data}: alexnet_cifar at {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"{args.workers} workers, {torch.get_num_threads()} threads, device {device}")
    print(f"baseline (ImageFolder + PIL, DataLoader, eager fp32): {base_s:7.1f} s for {base_n} images, {b:7.1f} img/s")
    print(f"alexnet train (cache, {', '.join(k for k, v in fast.items() if v)}): "
          f"{ours_s:7.1f} s for {ours_n} images, {o:7.1f} img/s")
    bound = where["train_step_img_per_s"] / b
    print(f"profile: data alone, baseline {where['baseline_data_img_per_s']:.0f} img/s, cache "
          f"{where['ours_data_img_per_s']:.0f} img/s; the training step alone {where['train_step_img_per_s']:.1f} img/s, "
          f"so no data path can take an epoch past {bound:.2f}x the baseline")
    print(json.dumps({"data": str(args.data), "images": ours_n, "device": str(device), "settings": fast,
                      "baseline_epoch_s": round(base_s * ours_n / base_n, 2), "ours_epoch_s": round(ours_s, 2),
                      "baseline_img_per_s": round(b, 1), "ours_img_per_s": round(o, 1), "ratio": round(o / b, 2),
                      "profile": where, "step_bound_ratio": round(bound, 2)}))


if __name__ == "__main__":
    main()
