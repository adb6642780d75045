"""Protocol Buffers' binary wire format, read without generated code or the protobuf package.

A message is a sequence of fields, each a varint key ``(field_number << 3) | wire_type``
and a value: a varint (type 0), 8 little-endian bytes (1), a varint length and that many
bytes (2: strings, sub-messages, packed repeated numbers) or 4 bytes (5). Field numbers
name fields as ``caffe.proto`` declares them; a reader picks the ones it knows and skips
the rest, which is what makes old and new files readable by one reader.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

import numpy as np

from ...errors import AlexNetError

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


class WireError(AlexNetError, ValueError):
    """Bytes that are not a protobuf message (truncated, or not protobuf at all)."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:  # a varint has at most 10 bytes
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field number, wire type, value)`` of each field of one message, in file order.

    Varint values are ints; the others are views of the message's bytes (no copies).
    """
    buf = memoryview(buf)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        else:
            if wire == LEN:
                size, pos = _varint(buf, pos)
            elif wire in (FIXED64, FIXED32):
                size = 8 if wire == FIXED64 else 4
            else:  # 3 and 4 are proto1 groups, which caffe.proto does not use
                raise WireError(f"unsupported wire type {wire} at byte {pos}")
            if pos + size > end:
                raise WireError(f"truncated: field {number} needs {size} bytes at byte {pos}, {end - pos} left")
            value, pos = buf[pos:pos + size], pos + size
        yield number, wire, value


class Message:
    """One decoded message: its fields by number, each a list of ``(wire type, value)``."""

    def __init__(self, buf: bytes | memoryview) -> None:
        self.fields: dict[int, list[tuple[int, int | memoryview]]] = defaultdict(list)
        for number, wire, value in fields(buf):
            self.fields[number].append((wire, value))

    def has(self, number: int) -> bool:
        return number in self.fields

    def messages(self, number: int) -> list["Message"]:
        return [Message(self._bytes(number, wire, v)) for wire, v in self.fields.get(number, ())]

    def string(self, number: int, default: str = "") -> str:
        values = self.fields.get(number)
        if not values:
            return default
        wire, value = values[-1]  # proto2: the last occurrence of a singular field wins
        try:
            return bytes(self._bytes(number, wire, value)).decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(f"field {number} is not a UTF-8 string") from None

    def int(self, number: int, default: int = 0) -> int:
        ints = self.ints(number)
        return int(ints[-1]) if len(ints) else default

    def ints(self, number: int) -> np.ndarray:
        """A repeated integer field, packed or not (int64 as two's complement)."""
        out: list[int] = []
        for wire, value in self.fields.get(number, ()):
            if wire == VARINT:
                out.append(value)
            elif wire == LEN:
                pos, view = 0, memoryview(value)
                while pos < len(view):
                    v, pos = _varint(view, pos)
                    out.append(v)
            else:
                raise WireError(f"field {number}: wire type {wire} where an integer belongs")
        return np.array([v - (1 << 64) if v >= 1 << 63 else v for v in out], dtype=np.int64)

    def numbers(self, number: int, dtype: str) -> np.ndarray:
        """A repeated ``float`` (``"<f4"``) or ``double`` (``"<f8"``) field, packed or not."""
        width, fixed = (4, FIXED32) if dtype == "<f4" else (8, FIXED64)
        parts = []
        for wire, value in self.fields.get(number, ()):
            if wire not in (LEN, fixed) or len(value) % width:
                raise WireError(f"field {number}: wire type {wire} where {dtype} numbers belong")
            parts.append(np.frombuffer(value, dtype=dtype))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    def number(self, number: int, dtype: str, default: float) -> float:
        values = self.numbers(number, dtype)
        return float(values[-1]) if len(values) else default

    @staticmethod
    def _bytes(number: int, wire: int, value) -> memoryview:
        if wire != LEN:
            raise WireError(f"field {number}: wire type {wire} where a string or message belongs")
        return value
