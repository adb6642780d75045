"""The AlexNet variants people use, as data, each with a small registered builder."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from .alexnet import CONV_LAYERS, AlexNet, AlexNetConfig
from .registry import ModelOptionError, register_model

PAPER = AlexNetConfig(
    widths=(96, 256, 384, 384, 256),
    groups=(1, 2, 1, 2, 2),  # conv3 and the fc layers connect across the two GPUs
    conv1_padding="ceil",
    norm="lrn",
    norm_after=("conv1", "conv2"),
    dropout_on=("fc6", "fc7"),  # "dropout in the first two fully-connected layers"
    init="paper",
)

# pytorch/vision models/alexnet.py: the single-tower net of "One weird trick" (2014).
TORCHVISION = AlexNetConfig(
    widths=(64, 192, 384, 256, 256),
    conv1_padding=2,
    dropout_on=("pool5", "fc6"),  # torchvision drops the *inputs* of fc6 and fc7
)

# The Keras CIFAR-10 document: the paper's widths without towers or LRN, BatchNorm
# where the paper has LRN, 227x227 input.
KERAS_BN = replace(PAPER, groups=(1, 1, 1, 1, 1), norm="bn", init="default")


def _build(base: AlexNetConfig, num_classes: int, options: dict[str, Any]) -> AlexNet:
    known = {f.name for f in fields(AlexNetConfig)} - {"num_classes"}
    if unknown := sorted(set(options) - known):
        raise ModelOptionError(f"unknown model option(s) {unknown}; options are {sorted(known)}")
    try:
        return AlexNet(replace(base, num_classes=num_classes, **options))
    except (ValueError, TypeError) as e:  # a value of the wrong kind, e.g. hidden=abc
        raise ModelOptionError(f"model options {options}: {e}") from None


@register_model("alexnet2012", image_size=224, summary="the paper's two-tower net: groups=2, LRN, paper init (60,965,224 params)")
def alexnet2012(num_classes: int = 1000, **options: Any) -> AlexNet:
    """The network of Krizhevsky, Sutskever and Hinton (NIPS 2012), section 3.

    96/256/384/384/256 filters; the two GPU towers are ``groups=2`` on conv2, conv4
    and conv5, while conv3 and fc6-fc8 connect across towers. ReLU everywhere; local
    response normalisation after the ReLU of conv1 and conv2 with k=2, n=5,
    alpha=1e-4, beta=0.75, where alpha is divided by n inside the sum exactly as
    Krizhevsky's cuda-convnet and Caffe compute it (``nn.LocalResponseNorm(5, 1e-4,
    0.75, k=2)``). Like Caffe's port, one LRN runs over all 96 (or 256) maps, so the
    two maps on either side of the tower boundary see each other. Overlapping 3x3/2
    max pooling; dropout 0.5 on the outputs of fc6 and fc7; weights N(0, 0.01),
    biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere. conv1 rounds its output
    up as cuda-convnet did, so 224 and 227 inputs both give 55x55. Minimum input 64.
    """
    return _build(PAPER, num_classes, options)


@register_model("alexnet", image_size=224, summary="torchvision's single-tower variant, loads its weights (61,100,840 params)")
def alexnet(num_classes: int = 1000, **options: Any) -> AlexNet:
    """torchvision's AlexNet (64/192/384/256/256 filters, no LRN, no groups).

    Weight-compatible with ``torchvision.models.alexnet``: its state dicts load
    through :func:`alexnet.models.weights.load_weights` and give the same outputs.
    Minimum input 63.
    """
    return _build(TORCHVISION, num_classes, options)


@register_model("alexnet_bn", image_size=227, summary="the paper's widths with BatchNorm for LRN, no towers (Keras CIFAR-10 document)")
def alexnet_bn(num_classes: int = 1000, bn_all: bool = False, **options: Any) -> AlexNet:
    """The BatchNorm variant of the Keras CIFAR-10 document.

    The paper's filter counts without towers or LRN; BatchNorm after the ReLU of
    conv1 and conv2, where the paper had LRN. ``bn_all=True`` puts it after all five
    convs, as the TensorFlow flowers document does. Designed for 227x227; minimum 64.
    """
    base = replace(KERAS_BN, norm_after=CONV_LAYERS) if bn_all else KERAS_BN
    return _build(base, num_classes, options)


CIFAR = AlexNetConfig(
    widths=(64, 192, 384, 256, 256),
    conv1_kernel=5,
    conv1_stride=1,
    conv1_padding=2,
    hidden=1024,
    pool5_size=3,
    dropout_on=("fc6", "fc7"),
    init="kaiming",  # trains from scratch without norm layers; see AlexNetConfig.init
)


@register_model("alexnet_cifar", image_size=32, summary="AlexNet's shape for 32-64 px images (CIFAR, digits)")
def alexnet_cifar(num_classes: int = 10, **options: Any) -> AlexNet:
    """AlexNet's shape (5 conv + 3 fc, three overlapping 3x3/2 pools) for 32-64 px images.

    Derived from torchvision's widths (64/192/384/256/256) with the two changes that
    the CIFAR ports of AlexNet make: conv1 is 5x5 with stride 1 (an 11x11/4 conv1
    would shrink a 32 px image to 8 px at once), and fc6/fc7 have 1024 units instead
    of 4096 (pool5 holds 256x3x3 = 2,304 values at 32 px, not 9,216). Pools give
    32 -> 15 -> 7 -> 3. Minimum input 15; 32 to 64 is the intended range.
    """
    return _build(CIFAR, num_classes, options)
