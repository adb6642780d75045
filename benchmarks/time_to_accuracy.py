"""Time to accuracy: train a recipe on a data set, print wall-clock minutes and validation
top-1 after every epoch, then the test top-1 of the best checkpoint. The last line is JSON.

    python benchmarks/time_to_accuracy.py --data ../shared/data/flowers_128 --val-split 0.2
    python benchmarks/time_to_accuracy.py --data ../shared/data/cifar10_partial/cifar-10-batches-py
    python benchmarks/time_to_accuracy.py --data ../shared/data/imagenette_small --target 0.75 --budget 60

The reference is the target: the run's best against ``--target`` and the minutes it took to
reach it against ``--budget`` minutes, as ratios. Minutes are wall clock from the command's
start, including start-up, the statistics pass and validation. Arguments after ``--`` go to
``alexnet train`` unchanged (``-- --epochs 30 --workers 1``).

The JSON line is printed only for a complete measurement: an ``--out`` that already holds a
run is refused before anything starts, and a training that fails or is interrupted, or an
evaluation of the test split that fails, ends with its message on stderr and a non-zero exit.
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
ALEXNET = [sys.executable, "-m", "alexnet"]  # the command line; the tests put a stand-in here
POLL_S = 2.0  # seconds between looks at metrics.csv
# `alexnet train` flags the script sets itself, or that would make the run another than the one it reads back.
OWN_FLAGS = {"--data", "--out", "--recipe", "--resume", "--config"}


class Failed(Exception):
    """A step of the measurement failed: ``args[0]``, the message; ``args[1]``, the exit status."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="what `alexnet train --data` takes")
    ap.add_argument("--recipe", default="scratch", help="(default: scratch)")
    ap.add_argument("--val-split", type=float, default=None, help="for a folder without val/ (flowers: 0.2)")
    ap.add_argument("--target", type=float, default=None, help="val top-1 to reach (default: known per data set)")
    ap.add_argument("--budget", type=float, default=None, help="minutes allowed to reach it (default: known per data set)")
    ap.add_argument("--out", default=None, help="run folder (default: a new temporary folder)")
    ap.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then more `alexnet train` flags")
    args = ap.parse_args(argv)
    owned = sorted({a.split("=")[0] for a in args.train_args} & OWN_FLAGS)
    if owned:
        print(f"time_to_accuracy: {', '.join(owned)} after -- would train something other than what is measured; "
              "give --data, --recipe and --out to this script (a new run; no --resume or --config)", file=sys.stderr)
        return 2
    if args.out is not None and (held := earlier_run(Path(args.out))):
        print(f"time_to_accuracy: --out {args.out} already holds {held}; choose another --out "
              "(the measurement is of a new run)", file=sys.stderr)
        return 1
    try:
        return measure(args)
    except Failed as e:
        print(e.args[0], file=sys.stderr)
        return e.args[1]


def measure(args: argparse.Namespace) -> int:
    name = Path(args.data.rstrip("/")).name
    target, budget, on = TARGETS.get(name, (None, None, "val"))
    target, budget = args.target or target, args.budget or budget
    out = Path(args.out or tempfile.mkdtemp(prefix="tta-")) / "run"
    extra = [a for a in args.train_args if a != "--"]
    cmd = [*ALEXNET, "train", "--data", args.data, "--recipe", args.recipe, "--out", str(out)]
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
    # Only data with a test split is evaluated: there, a failure is an error, not a missing figure.
    test, test_tta = (test_top1(args.data, best_pt), test_top1(args.data, best_pt, tta=True)) \
        if has_test_split(args.data) else (None, None)
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


def earlier_run(out: Path) -> str | None:
    """What in ``out`` says it already holds a run (``run/metrics.csv``, ...), or None.
    Its epochs and checkpoints would be read as this measurement's."""
    if out.exists() and not out.is_dir():
        return "a file of that name"
    run = out / "run"
    for name in ("metrics.csv", "config.json"):
        if (run / name).exists():
            return f"a run (run/{name})"
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*")) if (run / "checkpoints").is_dir() else []
    return f"a run (run/checkpoints/{checkpoints[0]})" if checkpoints else None


def run_and_watch(cmd: list[str], metrics: Path, start: float) -> list[dict]:
    """Run training; print each epoch as its metrics.csv row appears, with wall-clock minutes.
    The rows of a training that ended well; else :class:`Failed`, with training's status."""
    rows: list[dict] = []
    log = metrics.parent.parent / "train.log"  # beside the run folder, which training must create itself
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    interrupted = False
    try:
        while True:
            done = proc.poll() is not None
            for row in read_rows(metrics)[len(rows):]:
                row["minutes"] = (time.perf_counter() - start) / 60
                rows.append(row)
                ema = f"  EMA {row['ema_val_top1']:.2%}" if row.get("ema_val_top1") is not None else ""
                print(f"epoch {row['epoch']:>3}  {row['minutes']:6.1f} min  val top-1 {row['val_top1']:.2%}{ema}",
                      flush=True)
            if done:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:  # Ctrl-C reaches training too (one process group): it saves and stops
        interrupted = True
        try:
            proc.wait()
        except KeyboardInterrupt:  # a second one stops training at once
            proc.kill()
            proc.wait()
    status = 128 - proc.returncode if proc.returncode < 0 else proc.returncode  # killed by signal N: 128 + N
    if status or interrupted:  # its epochs are no measurement: no result
        status = status or 130
        how = ", interrupted" if interrupted or status in (130, 143) else ""
        raise Failed(f"training failed ({status}{how}): " + log.read_text()[-2000:].rstrip(), status)
    for row in rows:  # the better of the weights and their average, as best.pt keeps
        row["val_top1"] = max(row["val_top1"], row.get("ema_val_top1") or 0.0)
    return rows


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} | {"epoch": int(r["epoch"])}
                for r in csv.DictReader(f)]


def has_test_split(data: str) -> bool:
    """Whether ``data`` has a test split, as ``alexnet.data.open_source`` opens it (without
    reading the images): digits and CIFAR have one; a folder of images has one where it
    holds both train/ and test/ (any case)."""
    from alexnet.data.datasets import NAMED_CIFAR, is_cifar_dir, split_folders

    if data == "digits" or data in NAMED_CIFAR:
        return True
    root = Path(data).expanduser()
    if not root.is_dir():
        return False
    if is_cifar_dir(root):
        return True
    dirs = split_folders(root)
    return "train" in dirs and "test" in dirs


def test_top1(data: str, checkpoint: Path, tta: bool = False) -> float:
    """The test split's top-1 of ``checkpoint`` (``tta``: with each image's mirror); an
    evaluation that fails is :class:`Failed`, with its last line on stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "eval.json"
        cmd = [*ALEXNET, "evaluate", "--checkpoint", str(checkpoint), "--data", data,
               "--split", "test", "--json", str(report)] + (["--tta"] if tta else [])
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        if r.returncode or not report.exists():
            last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}, no report written"])[-1]
            raise Failed(f"evaluation of the test split{' with flip TTA' if tta else ''} failed; no result: {last}",
                         r.returncode or 1)
        return json.loads(report.read_text())["top1_acc"]


if __name__ == "__main__":
    sys.exit(main())
