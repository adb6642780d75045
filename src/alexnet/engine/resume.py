"""What resuming a run needs: its position, its random state, its config, and a clean Ctrl-C."""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint
from ..errors import AlexNetError
from .config import RESUME_OVERRIDES, ConfigError, TrainConfig
from .loop import Position


class RunDirError(AlexNetError):
    """The run folder cannot be used without losing earlier work, or holds no run to resume."""


@dataclass
class Progress:
    """Everything about where a run is, beyond the model and optimizer; saved in checkpoints."""

    epoch: int = 0  # completed epochs
    position: Position = field(default_factory=Position)
    history: list[dict[str, float]] = field(default_factory=list)
    best_top1: float = -1.0
    epochs_since_best: int = 0


@dataclass
class Resumed:
    """The checkpoint a run continues from, and whether it continues in its own run folder
    (from its last.pt) or in a new one, leaving the run it came from as it is."""

    ckpt: dict[str, Any]
    path: Path
    in_place: bool


def resolve_config(cfg: TrainConfig, explicit: set[str]) -> tuple[TrainConfig, Resumed | None]:
    """With ``--resume``: the run's own config (plus the few allowed overrides), with --out
    and --resume settled to the run folder and checkpoint file, and the checkpoint."""
    if not cfg.resume:
        return cfg, None
    path, home = checkpoint_to_resume(cfg.resume, cfg.out)
    out = Path(cfg.out).expanduser() if cfg.out else home
    if out is None:
        raise ConfigError(f"--resume {path}: not in a run folder's checkpoints/; give --out NEW_DIR to continue it there")
    in_place = home is not None and out.resolve() == home.resolve()
    if in_place and path.name != "last.pt":
        raise RunDirError(f"--resume {path} would take {home} back to that checkpoint and overwrite its later ones; "
                          f"continue it in a new run folder with --out NEW_DIR, or resume {home} from last.pt")
    ckpt = _load_resumable(path)
    cfg = _resumed_config(cfg, explicit, ckpt["train_config"], path)
    return replace(cfg, out=str(out), resume=str(path)), Resumed(ckpt, path, in_place)


def checkpoint_to_resume(resume: bool | str, out: str | None) -> tuple[Path, Path | None]:
    """The checkpoint ``--resume`` names, and the run folder it belongs to (None for a loose file).
    ``--resume`` alone means --out's last.pt; a folder means its last.pt."""
    if resume is True:
        if not out:
            raise ConfigError("--resume alone needs --out RUN_DIR, the folder of the run to continue "
                              "(or give it: --resume RUN_DIR or --resume RUN_DIR/checkpoints/last.pt)")
        resume = out
    given = Path(resume).expanduser()
    path = given / "checkpoints" / "last.pt" if given.is_dir() else given
    if not path.is_file():
        raise RunDirError(f"{path}: no checkpoint to resume from; start the run without --resume")
    home = path.parent.parent if path.parent.name == "checkpoints" else None
    return path, home


def _load_resumable(path: Path) -> dict[str, Any]:
    ckpt = checkpoint.load(path)
    if not isinstance(ckpt.get("train_config"), dict) or "position" not in ckpt:
        raise RunDirError(f"{path}: has no training state to resume from")
    return ckpt


def _resumed_config(cfg: TrainConfig, explicit: set[str], saved: dict[str, Any], path: Path) -> TrainConfig:
    """The run's saved config, with the changes ``--resume`` allows."""
    changed = sorted(k for k in explicit - RESUME_OVERRIDES if getattr(cfg, k) != saved.get(k))
    if changed:
        raise ConfigError(
            f"--resume continues the run as it was configured; cannot change {', '.join('--' + k.replace('_', '-') for k in changed)} "
            f"(only {', '.join(sorted('--' + k.replace('_', '-') for k in RESUME_OVERRIDES - {'out', 'resume'}))} may differ)"
        )
    if "epochs" in explicit and cfg.epochs != saved.get("epochs") and saved.get("schedule") in ("cosine", "onecycle"):
        raise ConfigError(f"this run's {saved['schedule']} schedule is laid out over its {saved['epochs']} epochs; "
                          "--epochs can change on resume only with --schedule constant, step or plateau")
    try:
        resumed = TrainConfig(**saved)
    except TypeError as e:
        raise RunDirError(f"{path}: its training config is not one this version understands ({e})") from None
    return replace(resumed, **{k: getattr(cfg, k) for k in explicit & RESUME_OVERRIDES})


def random_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM (what schedulers, ``kill`` and ``docker stop`` send) asks
    the loop to stop after the current step and save; a second one interrupts at once.
    ``signum`` says which signal came first (for the exit status, 128 + signum)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.set = False
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.set:
                raise KeyboardInterrupt
            self.set, self.signum = True, signum

        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: leave the signals as they are
                pass
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
