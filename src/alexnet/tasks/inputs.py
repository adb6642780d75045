"""Anything a user may hand a classifier, as 8-bit RGB PIL images.

Paths, PIL images, numpy arrays (``HW`` or ``HWC`` uint8), torch tensors (``CHW``, uint8
or float in [0, 1]; ``NCHW`` is several images) and encoded bytes (an upload). Every
problem is an :class:`InputError` with a one-line reason.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.images import DEFAULT_MAX_PIXELS, decoded_rgb, load_rgb, pillow_allows, to_rgb
from ..errors import AlexNetError


class InputError(AlexNetError, ValueError):
    """An input that is not an image this package can use; ``status`` is the HTTP status it maps to."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status


def as_list(inputs: Any) -> tuple[list[Any], bool]:
    """``(items, single)``: one input becomes a list of one; an ``NCHW`` tensor is N images."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs), False
    if isinstance(inputs, torch.Tensor) and inputs.ndim == 4:
        return list(inputs), False
    return [inputs], True


def to_image(item: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """One input -> an RGB ``PIL.Image``."""
    if isinstance(item, (str, os.PathLike)):
        return load_rgb(item, max_pixels)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return decode_image(bytes(item), max_pixels)
    if isinstance(item, Image.Image):
        if min(item.size) < 1:
            raise InputError(f"a PIL image of size {item.size} has no pixels")
        return to_rgb(item)
    if isinstance(item, np.ndarray):
        return _from_array(item)
    if isinstance(item, torch.Tensor):
        return _from_tensor(item)
    raise InputError(f"cannot use a {type(item).__name__} as an image; give a path, a PIL image, an HWC uint8 "
                     "numpy array or a CHW tensor")


def decode_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Encoded image bytes (JPEG, PNG, ...) -> RGB; the size is checked before any decoding."""
    if not data:
        raise InputError("empty upload (0 bytes)")
    try:
        with warnings.catch_warnings(), pillow_allows(max_pixels):
            warnings.simplefilter("ignore")  # Pillow's "possibly corrupt EXIF" and the like
            with Image.open(io.BytesIO(data)) as image:
                w, h = image.size  # from the header: nothing decoded yet
                if max_pixels and w * h > max_pixels:
                    raise InputError(f"{w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                                     "(a decompression bomb?)", status=413)
                return decoded_rgb(image)
    except InputError:
        raise
    except Image.DecompressionBombError:  # Pillow's own check, left on: the image is over ours too
        raise InputError(f"over the limit of {max_pixels:,} pixels (a decompression bomb?)", status=413) from None
    except Image.UnidentifiedImageError:
        raise InputError("not an image file Pillow can read") from None
    except Exception as e:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        raise InputError(f"corrupt or truncated image ({type(e).__name__}: {e})") from None


def _from_array(a: np.ndarray) -> Image.Image:
    if a.dtype != np.uint8:
        raise InputError(f"a numpy image must be uint8 (HWC, 0-255), got {a.dtype}; use (a * 255).astype(np.uint8) "
                         "for [0, 1] floats")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or 0 in a.shape:
        raise InputError(f"a numpy image must be HW or HWC with 1, 3 or 4 channels, got shape {a.shape}")
    return to_rgb(Image.fromarray(np.ascontiguousarray(a)))


def _from_tensor(t: torch.Tensor) -> Image.Image:
    if t.ndim != 3 or t.shape[0] not in (1, 3) or 0 in t.shape:
        raise InputError(f"a tensor image must be CHW with 1 or 3 channels (NCHW for several), got {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.is_floating_point():
        if t.isnan().any() or t.min() < 0 or t.max() > 1:
            raise InputError("a float tensor image must hold values in [0, 1] (or use uint8, 0-255)")
        t = (t * 255).round().to(torch.uint8)
    elif t.dtype != torch.uint8:
        raise InputError(f"a tensor image must be uint8 or float in [0, 1], got {t.dtype}")
    a = t.permute(1, 2, 0).numpy()
    return _from_array(a)
