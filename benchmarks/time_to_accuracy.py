"""Time to accuracy: train a recipe on a data set, print wall-clock minutes and validation
top-1 after every epoch, then the test top-1 of the best checkpoint. The last line is JSON.

    python benchmarks/time_to_accuracy.py --data ../shared/data/flowers_128 --val-split 0.2
    python benchmarks/time_to_accuracy.py --data ../shared/data/cifar10_partial/cifar-10-batches-py
    python benchmarks/time_to_accuracy.py --data ../shared/data/imagenette_small --target 0.75 --budget 60

The reference is the target: the run's best against ``--target`` and the minutes it took to
reach it against ``--budget`` minutes, as ratios. Minutes are wall clock from the command's
start, including start-up, the statistics pass and validation. Arguments after ``--`` go to
``alexnet train`` unchanged (``-- --epochs 30 --workers 1``).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# data folder name -> (top-1 to reach, minutes allowed, the split it is measured on)
TARGETS = {"flowers_128": (0.85, 45, "val"), "imagenette_small": (0.75, 60, "val"),
           "cifar-10-batches-py": (0.70, 45, "test"), "cifar10_partial": (0.70, 45, "test"), "digits": (0.98, 10, "test")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="what `alexnet train --data` takes")
    ap.add_argument("--recipe", default="scratch", help="(default: scratch)")
    ap.add_argument("--val-split", type=float, default=None, help="for a folder without val/ (flowers: 0.2)")
    ap.add_argument("--target", type=float, default=None, help="val top-1 to reach (default: known per data set)")
    ap.add_argument("--budget", type=float, default=None, help="minutes allowed to reach it (default: known per data set)")
    ap.add_argument("--out", default=None, help="run folder (default: a new temporary folder)")
    ap.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then more `alexnet train` flags")
    args = ap.parse_args()
    name = Path(args.data.rstrip("/")).name
    target, budget, on = TARGETS.get(name, (None, None, "val"))
    target, budget = args.target or target, args.budget or budget
    out = Path(args.out or tempfile.mkdtemp(prefix="tta-")) / "run"
    extra = [a for a in args.train_args if a != "--"]
    cmd = [sys.executable, "-m", "alexnet", "train", "--data", args.data, "--recipe", args.recipe, "--out", str(out)]
    if args.val_split is not None:
        cmd += ["--val-split", str(args.val_split)]
    print(" ".join(cmd + extra), flush=True)
    start = time.perf_counter()
    rows = run_and_watch(cmd + extra, out / "metrics.csv", start)
    if not rows:
        print("the run wrote no epoch", file=sys.stderr)
        return 1
    best = max(rows, key=lambda r: r["val_top1"])
    best_pt = out / "checkpoints" / "best.pt"
    test, test_tta = test_top1(args.data, best_pt), test_top1(args.data, best_pt, tta=True)
    if on == "test":  # measured once, on best.pt, when the run has ended
        reached = rows[-1]["minutes"] if target is not None and test is not None and test >= target else None
    else:
        reached = next((r["minutes"] for r in rows if target is not None and r["val_top1"] >= target), None)
    print(f"best val top-1 {best['val_top1']:.2%} at epoch {best['epoch']} ({best['minutes']:.1f} min); "
          f"test top-1 {'-' if test is None else f'{test:.2%}'}"
          + ("" if test_tta is None else f", {test_tta:.2%} with flip TTA"))
    if target is not None:
        print(f"target {target:.0%} {on} top-1 in {budget:g} min: " + (f"reached at {reached:.1f} min ({reached / budget:.2f}x the budget)"
              if reached is not None else f"not reached; best {(best['val_top1'] if on == 'val' else test or 0.0) / target:.3f}x the target"))
    print(json.dumps({
        "data": args.data, "recipe": args.recipe, "minutes": round(rows[-1]["minutes"], 2),
        "best_val_top1": round(best["val_top1"], 4), "test_top1": None if test is None else round(test, 4),
        "test_top1_tta": None if test_tta is None else round(test_tta, 4), "target_split": on,
        "epochs": len(rows), "reached_target_at_minutes": None if reached is None else round(reached, 2),
        "target": target, "budget_minutes": budget, "run": str(out),
    }))
    return 0


def run_and_watch(cmd: list[str], metrics: Path, start: float) -> list[dict]:
    """Run training; print each epoch as its metrics.csv row appears, with wall-clock minutes."""
    rows: list[dict] = []
    log = metrics.parent.parent / "train.log"  # beside the run folder, which training must create itself
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    while True:
        done = proc.poll() is not None
        for row in read_rows(metrics)[len(rows):]:
            row["minutes"] = (time.perf_counter() - start) / 60
            rows.append(row)
            ema = f"  EMA {row['ema_val_top1']:.2%}" if row.get("ema_val_top1") is not None else ""
            print(f"epoch {row['epoch']:>3}  {row['minutes']:6.1f} min  val top-1 {row['val_top1']:.2%}{ema}", flush=True)
        if done:
            break
        time.sleep(2)
    if proc.returncode:
        print(f"training failed ({proc.returncode}): " + log.read_text()[-2000:], file=sys.stderr)
    for row in rows:  # the better of the weights and their average, as best.pt keeps
        row["val_top1"] = max(row["val_top1"], row.get("ema_val_top1") or 0.0)
    return rows


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} | {"epoch": int(r["epoch"])}
                for r in csv.DictReader(f)]


def test_top1(data: str, checkpoint: Path, tta: bool = False) -> float | None:
    """The test split's top-1 of ``checkpoint``, where the data has a test split (``tta``:
    with each image's mirror)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "eval.json"
        cmd = [sys.executable, "-m", "alexnet", "evaluate", "--checkpoint", str(checkpoint), "--data", data,
               "--split", "test", "--json", str(report)] + (["--tta"] if tta else [])
        if subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode or not report.exists():
            return None
        return json.loads(report.read_text())["top1_acc"]


if __name__ == "__main__":
    sys.exit(main())
