"""The summary of a sheet of runs (``RUNS.summary.tsv``) and the batch log's line per run."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any

#: The summary's columns, in order.
COLUMNS = ("name", "status", "hits", "regions", "blocks_solved", "blocks_skipped", "seconds",
           "out", "error")


@dataclass
class RunReport:
    """How one run of a sheet went.

    ``status``: ``pending`` while the sheet runs, then ``done``, ``failed`` (the run stopped
    on an error of its own; ``error`` says which, in one line) or ``stopped`` (the sheet
    stopped before the run ended: interrupted, or no workers). ``n_hits`` is None unless the
    run is done; ``n_blocks_solved`` counts the blocks this call solved, ``n_blocks_skipped``
    those a resume kept; ``seconds`` runs from its first block's submission to its end.
    """

    name: str
    where: str
    out: str
    n_regions: int
    status: str = "pending"
    n_hits: int | None = None
    n_blocks_solved: int = 0
    n_blocks_skipped: int = 0
    seconds: float = 0.0
    error: str = ""

    def record(self, outcome: Any) -> None:
        """Fill in a run's end from its :class:`~nemo_dask.calling.execute.RunOutcome`."""
        plan = outcome.plan
        self.n_blocks_solved = len(outcome.summaries)
        self.n_blocks_skipped = plan.n_skipped
        self.seconds = outcome.seconds
        if outcome.error is None:
            self.status, self.n_hits = "done", outcome.n_hits
        else:
            self.fail(outcome.error)

    def fail(self, error: BaseException) -> None:
        """The run ended on ``error`` (its message, on one line)."""
        from ..storage.urls import with_fetched_urls

        message = " ".join(with_fetched_urls(str(error)).split()) or type(error).__name__
        self.status, self.n_hits, self.error = "failed", None, message

    def log_line(self) -> str:
        """The batch log's line for the run's end."""
        if self.status == "done":
            skipped = f", {self.n_blocks_skipped} skipped" if self.n_blocks_skipped else ""
            return (f"{self.name} ({self.where}) done: {self.n_hits} hits, {self.n_regions} "
                    f"regions, {self.n_blocks_solved} blocks solved{skipped}, "
                    f"{self.seconds:.1f} s -> {self.out}")
        return f"{self.name} ({self.where}) {self.status}: {self.error}"

    def row(self) -> list[str]:
        """The run's cells of the summary, in :data:`COLUMNS` order."""
        return [self.name, self.status, "" if self.n_hits is None else str(self.n_hits),
                str(self.n_regions), str(self.n_blocks_solved), str(self.n_blocks_skipped),
                f"{self.seconds:.2f}", self.out, self.error.replace("\t", " ")]


def default_summary_path(sheet: str) -> str:
    """``RUNS.summary.tsv`` beside ``RUNS.tsv`` (the sheet's last suffix replaced)."""
    head, tail = posixpath.split(sheet) if "://" in sheet else os.path.split(sheet)
    stem = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
    name = f"{stem}.summary.tsv"
    return posixpath.join(head, name) if "://" in sheet else os.path.join(head, name)


def write_summary(path: Any, reports: list[RunReport]) -> None:
    """Write the summary (whole, atomically: a reader never sees half of it)."""
    from ..storage.outputs import write_text

    lines = ["\t".join(COLUMNS), *("\t".join(r.row()) for r in reports)]
    write_text(path, "\n".join(lines) + "\n", what="summary of the runs")


__all__ = ("COLUMNS", "RunReport", "default_summary_path", "write_summary")
