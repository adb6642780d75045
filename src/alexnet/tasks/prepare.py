"""Write built-in data sources out as image folders."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..data.datasets import DIGITS_FRACTIONS, DataError, digits_images, stratified_split


def digits_to_folders(dst: str | Path) -> dict[str, int]:
    """Save the digits as ``DST/{train,val,test}/<digit>/<index>.png`` (8x8 grayscale).

    The split is the one ``--data digits`` uses, so a model trained on either form
    is evaluated on the same test images. Returns the number of images per split.
    """
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise DataError(f"{dst} is not empty; choose a new folder for --to-folders")
    images, labels, names = digits_images()
    counts = {}
    for split, idx in zip(("train", "val", "test"), stratified_split(labels, DIGITS_FRACTIONS)):
        for name in names:
            (dst / split / name).mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(images[i]).save(dst / split / names[labels[i]] / f"{i:04d}.png")
        counts[split] = len(idx)
    return counts
