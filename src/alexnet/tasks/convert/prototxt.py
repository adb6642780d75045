"""Protocol Buffers' text format (``.prototxt``), parsed into plain dicts.

``name: "conv1"`` and ``convolution_param { num_output: 96 }`` become
``{"name": ["conv1"], "convolution_param": [{"num_output": [96]}]}``: every field a list,
since any field may repeat. Scalars stay as written (numbers as int or float, enum names and
booleans as strings); what a field means is the reader's business (``caffe.py``).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ...errors import AlexNetError

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}<>:\[\],;])
  | (?P<word>[^\s{}<>:\[\],;\#"']+)
""", re.VERBOSE)
_CLOSE = {"{": "}", "<": ">"}

Tree = dict[str, list[Any]]


class PrototxtError(AlexNetError, ValueError):
    """A file that is not protobuf text format."""


def parse(text: str) -> Tree:
    return _message(_tokenize(text), 0, None)[0]


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PrototxtError(f"line {_line(text, pos)}: cannot read {text[pos:pos + 20]!r}")
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group(), _line(text, pos)))
        pos = m.end()
    return tokens


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _message(tokens: list, pos: int, close: str | None) -> tuple[Tree, int]:
    tree: Tree = {}
    while pos < len(tokens):
        kind, text, line = tokens[pos]
        if close is not None and text == close:
            return tree, pos + 1
        if kind != "word":
            raise PrototxtError(f"line {line}: expected a field name, found {text!r}")
        pos += 1
        colon = pos < len(tokens) and tokens[pos][1] == ":"
        pos += colon
        if pos < len(tokens) and tokens[pos][1] in _CLOSE:
            value, pos = _message(tokens, pos + 1, _CLOSE[tokens[pos][1]])
            tree.setdefault(text, []).append(value)
        elif not colon:
            raise PrototxtError(f"line {line}: expected ':' or '{{' after {text!r}")
        else:
            values, pos = _values(tokens, pos, line)
            tree.setdefault(text, []).extend(values)
        if pos < len(tokens) and tokens[pos][1] in ",;":
            pos += 1
    if close is not None:
        raise PrototxtError(f"unexpected end of file: a '{close}' is missing")
    return tree, pos


def _values(tokens: list, pos: int, line: int) -> tuple[list[Any], int]:
    if pos >= len(tokens):
        raise PrototxtError(f"line {line}: a value is missing at the end of the file")
    if tokens[pos][1] != "[":
        return [_scalar(tokens[pos])], pos + 1
    values, pos = [], pos + 1
    while pos < len(tokens) and tokens[pos][1] != "]":
        if tokens[pos][1] != ",":
            values.append(_scalar(tokens[pos]))
        pos += 1
    if pos >= len(tokens):
        raise PrototxtError(f"line {line}: a ']' is missing")
    return values, pos + 1


def _scalar(token: tuple[str, str, int]) -> Any:
    kind, text, line = token
    if kind == "string":
        try:
            return ast.literal_eval(text)
        except (SyntaxError, ValueError):
            raise PrototxtError(f"line {line}: bad string {text}") from None
    if kind != "word":
        raise PrototxtError(f"line {line}: expected a value, found {text!r}")
    for cast in (int, float):
        try:
            return cast(text.rstrip("fF") if cast is float else text)
        except ValueError:
            pass
    return text  # an enum name (MAX, ACROSS_CHANNELS) or a boolean (true)
