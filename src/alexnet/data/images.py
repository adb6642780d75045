"""Opening any image file as 8-bit RGB: the one loader for folders and for predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


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


def load_rgb(path: str | Path) -> Image.Image:
    """Open ``path`` and return its (first frame's) pixels as 8-bit RGB."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)
