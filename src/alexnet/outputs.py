"""Files the commands write beside run folders (reports, features): written whole or not at
all, and never over a file that this tool did not write for the same purpose."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Callable

from .checkpoint import atomic_write
from .errors import AlexNetError


class OutputError(AlexNetError):
    """An output path that would replace something it should not."""


def check_output(path: str | os.PathLike, what: str, ours: Callable[[Path], bool], overwrite: bool = False) -> Path:
    """``path``, once it is known that writing there replaces nothing but an earlier ``what``
    (as ``ours`` recognises it), or anything at all with ``overwrite``. Called before the
    work, so a refusal costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for {what}")
    if path.exists() and not overwrite and not ours(path):
        raise OutputError(f"{path} exists and is not {what} written by alexnet; choose another name, "
                          "or add --overwrite to replace it")
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def json_with(*keys: str) -> Callable[[Path], bool]:
    """Recognises a JSON object holding ``keys`` (a report this tool wrote)."""
    def ours(path: Path) -> bool:
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError):  # includes UnicodeDecodeError: a binary file
            return False
        return isinstance(obj, dict) and all(k in obj for k in keys)

    return ours


def npz_with(*arrays: str) -> Callable[[Path], bool]:
    """Recognises an ``.npz`` holding ``arrays`` (a features file this tool wrote)."""
    def ours(path: Path) -> bool:
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except (OSError, zipfile.BadZipFile):
            return False
        return all(f"{a}.npy" in names for a in arrays)

    return ours


def is_png(path: Path) -> bool:
    """A picture this tool may redraw: a PNG file (anything else, a photo or a checkpoint, is kept)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False
