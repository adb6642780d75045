"""Fine-tuning: which layers train when, and at what learning rate.

Layers are named as in the paper: ``conv1`` .. ``conv5`` (each with its norm layer, if
any), ``fc6``, ``fc7``, ``fc8``. ``features`` is conv1-conv5 and ``classifier`` fc6-fc8;
``conv1-conv4`` is a range; lists are comma-separated.

``--unfreeze-schedule fc8:3,fc7:3,fc6:3,conv5:3`` is the layer-wise strategy of the
Keras/Theano document: the first 3 epochs train fc8 alone, the next 3 fc8 and fc7, and so
on, each round unfreezing the next layer down. Which layers train is a function of the
epoch alone, so a resumed run picks up the same round.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import ConfigError

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
GROUPS = {"features": LAYERS[:5], "classifier": LAYERS[5:], "all": LAYERS}
HEAD = "fc8"  # the layer replaced for the data's classes: full learning rate


def parse_layers(spec: str, flag: str = "--freeze") -> list[str]:
    """``features``, ``classifier``, ``conv1-conv4``, ``fc6,fc7``, or a mix -> layer names in network order."""
    chosen: set[str] = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part in GROUPS:
            chosen.update(GROUPS[part])
        elif "-" in part:
            lo, _, hi = part.partition("-")
            if lo not in LAYERS or hi not in LAYERS or LAYERS.index(lo) > LAYERS.index(hi):
                raise ConfigError(f"{flag} {spec}: {part!r} is not a range of layers like conv1-conv4")
            chosen.update(LAYERS[LAYERS.index(lo) : LAYERS.index(hi) + 1])
        elif part in LAYERS:
            chosen.add(part)
        else:
            raise ConfigError(f"{flag} {spec}: unknown layer {part!r}; layers are {', '.join(LAYERS)}, "
                              "or features, classifier, or a range like conv1-conv4")
    return [name for name in LAYERS if name in chosen]


@dataclass(frozen=True)
class Plan:
    """Which layers are trainable in each epoch (1-based)."""

    frozen: tuple[str, ...] = ()  # --freeze: never trained
    rounds: tuple[tuple[tuple[str, ...], int], ...] = ()  # (layers unfrozen by this round, epochs)

    @classmethod
    def from_config(cls, freeze: str | None, schedule: str | None) -> "Plan":
        rounds = []
        for item in (s.strip() for s in (schedule or "").split(",") if s.strip()):
            layers, sep, epochs = item.rpartition(":")
            if not sep or not epochs.isdigit() or int(epochs) < 1:
                raise ConfigError(f"--unfreeze-schedule {schedule}: {item!r} should be LAYERS:EPOCHS, e.g. fc8:3")
            rounds.append((tuple(parse_layers(layers.replace("+", ","), "--unfreeze-schedule")), int(epochs)))
        return cls(tuple(parse_layers(freeze)) if freeze else (), tuple(rounds))

    @property
    def scheduled_epochs(self) -> int:
        return sum(epochs for _, epochs in self.rounds)

    def trainable(self, epoch: int) -> set[str]:
        """The layers that train in ``epoch``; after the last round, the last round's set."""
        if not self.rounds:
            return set(LAYERS) - set(self.frozen)
        unfrozen: set[str] = set()
        end = 0
        for layers, epochs in self.rounds:
            unfrozen.update(layers)
            end += epochs
            if epoch <= end:
                break
        return unfrozen - set(self.frozen)


def layer_of(param_name: str) -> str:
    """``norm3.weight`` -> ``conv3``: a norm layer trains with its convolution."""
    module = param_name.split(".")[0]
    return "conv" + module[4:] if module.startswith("norm") else module


def set_trainable(model: nn.Module, layers: set[str]) -> bool:
    """``requires_grad`` on exactly ``layers``' parameters; True if anything changed."""
    changed = False
    for name, p in model.named_parameters():
        want = layer_of(name) in layers
        changed |= p.requires_grad != want
        p.requires_grad_(want)
    return changed
