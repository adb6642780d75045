"""The run folder: chosen, checked, made, and held by one training process at a time."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import IO

from . import distributed
from .config import TrainConfig
from .resume import RunDirError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded against each other there
    fcntl = None

LOCK_NAME = ".lock"
_held: dict[Path, IO[str]] = {}  # open lock files: the lock lasts as long as the file is open


def prepare_run_dir(cfg: TrainConfig, d: distributed.Dist, in_place: bool = False) -> Path:
    """The run folder, checked, made and locked. ``in_place``: a resume continuing the run
    there; anything else (a new run, or one continuing from another's checkpoint) needs a
    folder that holds no run yet."""
    # Every rank must use the same folder, so rank 0's choice of default name wins.
    name = cfg.out or (str(_new_default(cfg.arch)) if d.main else "")
    out = Path(distributed.gather_objects(d, name)[0])
    if not d.main:
        return out
    _check_outside_data(cfg, out)
    if not in_place:
        earlier = [n for n in ("last.pt", "best.pt") if (out / "checkpoints" / n).exists()]
        if earlier:
            raise RunDirError(f"{out} already holds an earlier run (checkpoints/{earlier[0]}); continue it with --resume, "
                              "or choose another --out")
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        _lock(out)
        if not in_place:
            # No checkpoint: a start that failed or was stopped before its first save. That
            # is not a run; its leftovers are replaced.
            for stale in [out / "metrics.csv", *(out / "tb").glob("events.out.tfevents.*")]:
                stale.unlink(missing_ok=True)
        with tempfile.TemporaryFile(dir=out / "checkpoints"):  # writable, not just present
            pass
    except OSError as e:
        release(out)
        raise RunDirError(f"{out}: cannot write the run folder there ({e.strerror or e}); choose another --out") from None
    return out


def release(out: Path) -> None:
    """Let another run use ``out`` (also happens when the process ends, however it ends)."""
    held = _held.pop(out, None)
    if held is not None:
        held.close()


def _new_default(arch: str) -> Path:
    """runs/<arch>-<time>, made here so that two runs started in the same second differ."""
    stem = Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        candidate = stem if k == 1 else stem.with_name(f"{stem.name}-{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RunDirError(f"{stem}: a thousand runs started this second; give --out")


def _lock(out: Path) -> None:
    """Hold ``out`` for this process, or say which process holds it."""
    if fcntl is None or out in _held:
        return
    f = open(out / LOCK_NAME, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunDirError(f"{out} is in use by another training run ({holder}); wait for it to end or choose another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    _held[out] = f


def _check_outside_data(cfg: TrainConfig, out: Path) -> None:
    """A run folder (or cache) inside a data folder would become one of its classes."""
    data = Path(cfg.data or "").expanduser()
    if not cfg.data or not data.is_dir():
        return
    root = data.resolve()
    for flag, path in (("--out", out), ("--cache-dir", Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None)):
        if path is not None and path.resolve().is_relative_to(root):
            raise RunDirError(f"{flag} {path} is inside --data {cfg.data}; it would be read as data (a class folder) "
                              f"by the next run; put it outside")
