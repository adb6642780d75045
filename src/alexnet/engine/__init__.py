"""Training and evaluation."""

from .config import TrainConfig
from .loop import EvalResult, evaluate, train_one_epoch
from .train import fit

__all__ = ["EvalResult", "TrainConfig", "evaluate", "fit", "train_one_epoch"]
