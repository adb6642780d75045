"""Unreadable files that a loader left out of its batches, named where they pass."""

from __future__ import annotations

import sys
from typing import Any, Callable


def warn(message: str) -> None:
    """Warnings and skip reports go to stderr, flushed, apart from the progress on stdout."""
    print(message, file=sys.stderr, flush=True)


class NamingSkips:
    """``loader``, with each batch's unreadable files (``loading.Batch.skipped``: path and
    reason each) handed to ``report`` as the batch passes; the batches are unchanged."""

    def __init__(self, loader: Any, report: Callable[[tuple[str, ...]], None]):
        self.loader, self.report = loader, report

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if len(batch) > 2 and batch[2]:
                self.report(tuple(batch[2]))
            yield batch

    def __getattr__(self, name: str) -> Any:  # the wrapped loader's own attributes (resident, ...)
        return getattr(self.loader, name)


class SkipList:
    """Collects skipped files in order, each once; ``report`` for :class:`NamingSkips`."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self.files: list[str] = []
        self.echo = echo

    def __call__(self, problems: tuple[str, ...]) -> None:
        for problem in problems:
            if problem not in self.files:
                self.files.append(problem)
                if self.echo:
                    self.echo(problem)
