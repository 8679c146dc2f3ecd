"""What the driver shows while blocks are solved: one bar over every block of every run (with
runs done / total when there are several), status lines (jobs waiting in a queue), and the
lines a finished run writes to the batch log."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


class _NoBar:
    """No progress bar; status lines (jobs waiting in the queue) go to stderr if ``say``, and
    log lines (a finished run of a sheet) always."""

    def __init__(self, say: bool) -> None:
        self.say = say

    def update(self, n: int) -> None:
        pass

    def runs_done(self, done: int, total: int) -> None:
        pass

    def status(self, text: str) -> None:
        if self.say and text:
            print(f"nemo-dask: {text}", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


class _Bar:
    """tqdm, with the workers' status (e.g. jobs pending in the queue) after the counts."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, n: int) -> None:
        self.bar.update(n)

    def runs_done(self, done: int, total: int) -> None:
        self.bar.set_description_str(f"call-hits ({done}/{total} runs)", refresh=True)

    def status(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=True)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool | None, runs: int = 1) -> Iterator[Any]:
    """A bar over ``total`` regions on a terminal (``enabled`` None) or when asked; without
    one, status changes are printed as lines unless progress was turned off (``enabled``
    False). With several ``runs`` the bar also says how many have finished."""
    if not (sys.stderr.isatty() if enabled is None else enabled):
        yield _NoBar(say=enabled is None)
        return
    from tqdm import tqdm

    desc = "call-hits" if runs == 1 else f"call-hits (0/{runs} runs)"
    with tqdm(total=total, unit="regions", desc=desc, dynamic_ncols=True) as bar:
        yield _Bar(bar)


__all__ = ("progress_bar",)
