"""Whether an input size fits in memory, answered from the architecture before anything of
that size is allocated (``--image-size 100000`` would otherwise take every byte of the
machine before failing, and other jobs with it)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import AlexNetError
from ..models.alexnet import AlexNetConfig, spatial_sizes

FLOAT_BYTES = 4
# A training step keeps every activation for the backward pass and a gradient of the same
# size; the input also passes through a decoded uint8 image and a float copy on the way.
TRAIN_FACTOR = 2


class SizeError(AlexNetError):
    """An input size that cannot fit in the memory of the machine."""


def activation_floats(config: AlexNetConfig, size: int) -> int:
    """Floats one ``size`` x ``size`` image produces in the network: the input, each conv
    output (twice where a norm layer follows: its output is a new tensor), each pooling
    output, and the fc layers."""
    s = spatial_sizes(config, size)
    w = config.widths
    floats = 3 * size * size
    for i, conv in enumerate(("conv1", "conv2", "conv3", "conv4", "conv5")):
        floats += w[i] * s[conv] ** 2 * (2 if conv in config.norm_after and config.norm != "none" else 1)
    floats += w[0] * s["pool1"] ** 2 + w[1] * s["pool2"] ** 2 + w[4] * s["pool5"] ** 2
    return floats + 2 * config.hidden + config.num_classes


def image_bytes(config: AlexNetConfig, size: int, training: bool) -> int:
    """Bytes one image needs on its way through the network at ``size`` (a lower bound)."""
    resize = round(size * 256 / 224)  # the largest square the data pipeline decodes to
    decoded = resize * resize * 3 * (1 + FLOAT_BYTES)  # uint8 pixels, then floats
    return activation_floats(config, size) * FLOAT_BYTES * (TRAIN_FACTOR if training else 1) + decoded


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: the GPU's free memory, else the host's available memory
    within this process's cgroup limit, if any."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = _meminfo_available()
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap = int(Path(limit).read_text().strip()) - int(Path(used).read_text().strip())
        except (OSError, ValueError):  # no such cgroup, or "max": no limit
            continue
        free = min(free, max(cap, 0))
    return free


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on Linux or macOS: no way to know; do not refuse
        return 1 << 62


def check_image_size(config: AlexNetConfig, size: int, batch: int, device: torch.device, training: bool,
                     flag: str = "--image-size") -> None:
    """Refuse ``size`` when one batch of it cannot fit in the free memory of ``device``."""
    need = batch * image_bytes(config, size, training)
    free = available_bytes(device)
    if need > free:
        per_image = image_bytes(config, size, training)
        fits = "" if per_image > free else f"; a batch of at most {free // per_image} fits, or use a smaller size"
        raise SizeError(f"{flag} {size}: a batch of {batch} needs at least {_gib(need)} of memory "
                        f"({'training' if training else 'inference'}), and {device.type} has {_gib(free)} free{fits}")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_arch_size(arch: str, size: int, batch: int, device: torch.device, training: bool,
                    flag: str = "--image-size") -> None:
    """:func:`check_image_size` for a registered variant, built on the meta device (no memory)."""
    from ..models import get_model

    with torch.device("meta"):
        config = get_model(arch).config
    check_image_size(config, size, batch, device, training, flag)
