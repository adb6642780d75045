"""Opening any image file as 8-bit RGB: the one loader for folders and for predict."""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from ..errors import AlexNetError

# Pillow's own default limit (about 89 megapixels, a 9459x9459 image). Pillow warns above it
# and refuses at twice it; load_rgb refuses at the limit itself, with a message, and the
# limit is an option (--max-image-pixels), so Pillow's own check gives way to it, but only
# inside the project's reads (``pillow_allows``): Pillow's setting is the process's.
DEFAULT_MAX_PIXELS = 89_478_485
_PILLOW_LIMIT = threading.Lock()


@contextmanager
def pillow_allows(max_pixels: int | None) -> Iterator[None]:
    """Pillow's own pixel check (``Image.MAX_IMAGE_PIXELS``: a warning above it, an error
    above twice it, in ``open`` and in some decoders) out of the way of the reads inside,
    where the project checks ``max_pixels`` (None: no limit) on each header itself.

    Pillow is left as it is when it would let every image within ``max_pixels`` through;
    else its limit is lifted under a lock for the reads inside and restored after, so code
    outside the project's reads keeps the process's setting."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or (max_pixels is not None and max_pixels <= 2 * limit):
        yield
        return
    with _PILLOW_LIMIT:
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


# torchvision's IMG_EXTENSIONS plus GIF, which it leaves out.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, keeping what the pixels mean.

    * 16- and 32-bit grey (``I;16``, ``I``): scaled down to 8 bits (``convert`` would clip
      everything above 255 to white);
    * transparency (``RGBA``, ``LA``, palettes with a transparent index): laid on white;
    * CMYK, palette, grey, 1-bit: PIL's own conversions.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        grey = np.clip(np.round(pixels * 255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.round(pixels * (255.0 if pixels.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decoded_rgb(image: Image.Image) -> Image.Image:
    """An opened image (its header checked) decoded to 8-bit RGB, upright as viewers show it.

    Cameras and phones store a photo as the sensor read it and tag how to turn it (the EXIF
    Orientation): without the turn, a portrait photo trains and predicts lying on its side.
    """
    image.load()
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # noqa: BLE001 - an EXIF block Pillow cannot parse: the pixels as stored
        pass
    return to_rgb(image)


def _missing(path: str | Path) -> str:
    if os.path.islink(path):
        return f"broken symbolic link (to {os.readlink(path)})"
    return "no such file"


class ImageReadError(AlexNetError):
    """An image file that cannot be used: empty, not an image, corrupt, truncated or too large."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # raised in DataLoader workers and re-raised in the main process
        return type(self), (self.path, self.reason)


def load_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``path`` and return its (first frame's) pixels as 8-bit RGB.

    Anything wrong with the file is an ``ImageReadError`` naming the path and the reason,
    so one bad file among a million can be reported and skipped rather than end a run.
    """
    try:
        if os.path.getsize(path) == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        with warnings.catch_warnings(), pillow_allows(max_pixels):
            warnings.simplefilter("ignore")  # Pillow's "possibly corrupt EXIF" and the like
            # A file object, not the path: Pillow memory-maps an uncompressed image opened by
            # path, and (11 to 13 at least) maps a TIFF turned by its Orientation tag at the
            # turned size, scrambling the pixels.
            with open(path, "rb") as f, Image.open(f) as image:
                w, h = image.size  # from the header: nothing decoded yet
                if max_pixels and w * h > max_pixels:
                    raise ImageReadError(path, f"{w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                                         "(a decompression bomb?); raise --max-image-pixels if the image is genuine")
                return decoded_rgb(image)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(path, _missing(path)) from None
    except Image.DecompressionBombError:  # Pillow's own check, left on: the image is over ours too
        raise ImageReadError(path, f"over the limit of {max_pixels:,} pixels (a decompression bomb?); "
                             "raise --max-image-pixels if the image is genuine") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not an image file Pillow can read") from None
    except Exception as e:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageReadError(path, f"corrupt or truncated image ({type(e).__name__}: {e})") from None
