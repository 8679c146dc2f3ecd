"""Keep dask's shutdown chatter off the user's terminal: only nemo_dask's lines are shown.

Closing a cluster races its parts against each other: a worker's heartbeat can meet a scheduler
that is already closing (``CommClosedError ... heartbeat_worker ... Stream is closed``), a nanny
kills a worker that is still solving after its grace period ("Worker process still alive"),
and cancelling the tasks of a run that stops early logs one warning per running task ("Async
instruction ... ended with CancelledError"). None of it says anything about the run, whose
outcome nemo_dask reports in its own line. So:

* :func:`closing_quietly` -- around the close of a cluster nemo_dask started itself: the
  workers' and this process's ``distributed`` loggers are silenced first (a local cluster's
  scheduler and nannies log in this process), and restored here afterwards;
* :func:`drop_cancellation_noise` -- before a run cancels its own tasks, on any cluster (the
  user's too): only the cancellation warnings that name this run's task keys are dropped on
  the workers; everything else they log is kept.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

#: Above CRITICAL: nothing of the logger gets through.
_SILENT = logging.CRITICAL + 10


def silence_distributed() -> None:
    """Silence every ``distributed`` logger of this process (the worker is about to close)."""
    logging.getLogger("distributed").setLevel(_SILENT)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed."):
            logging.getLogger(name).setLevel(_SILENT)


class _DropKeys(logging.Filter):
    """Drops cancellation records that name a task key of one of the runs (by the keys' common
    prefixes). One filter per process, however many runs a long-lived worker serves."""

    def __init__(self) -> None:
        super().__init__()
        self.prefixes: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot format is not ours to judge
            return True
        return not ("Cancelled" in text and any(p in text for p in self.prefixes))


def install_key_filter(prefix: str) -> None:
    """On a worker: drop the cancellation warnings of tasks whose keys start with ``prefix``."""
    logger = logging.getLogger("distributed.worker.state_machine")
    ours = next((f for f in logger.filters if isinstance(f, _DropKeys)), None)
    if ours is None:
        ours = _DropKeys()
        logger.addFilter(ours)
    ours.prefixes.add(prefix)


def drop_cancellation_noise(client: Any, prefix: str) -> None:
    """Before cancelling a run's own tasks: have the workers drop the warnings about them
    (best effort; a worker that does not answer keeps its warnings)."""
    with contextlib.suppress(Exception):
        client.run(install_key_filter, prefix, on_error="ignore")


@contextlib.contextmanager
def closing_quietly(client: Any | None) -> Iterator[None]:
    """Silence ``distributed`` in the workers of ``client`` and in this process while the
    block runs (the close of a cluster nemo_dask started); this process's levels are put back
    afterwards."""
    if client is not None:
        with contextlib.suppress(Exception):
            client.run(silence_distributed, on_error="ignore")
    names = ["distributed", *(n for n in list(logging.root.manager.loggerDict)
                              if n.startswith("distributed."))]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(_SILENT)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker from printing "leaked semaphore objects" when
    this process ends after a nanny had to kill a busy worker (a run stopped early): the
    tracker frees them itself, and the line means nothing to the user. The tracker process is
    started with this process's -W options (``sys.warnoptions``), so the filter goes there,
    before the fork server (and with it the tracker) starts."""
    import sys

    option = "ignore:resource_tracker:UserWarning"
    if option not in sys.warnoptions:
        sys.warnoptions.append(option)


class QuietMemoryWarnings(WorkerPlugin):
    """Worker plugin of the clusters nemo_dask starts: no "Unmanaged memory use is high" or
    "Pausing worker" lines. A solver's memory is all "unmanaged" to dask (torch and numpy
    arrays, not dask data), so the first warns on every block and the second pauses nothing
    that matters; a worker stopped at its limit is reported by nemo_dask itself
    (:mod:`nemo_dask.calling.deaths`). Applied again to restarted workers."""

    name = "nemo-dask-quiet-memory-warnings"
    idempotent = True

    def setup(self, worker: Any) -> None:
        logging.getLogger("distributed.worker.memory").setLevel(logging.ERROR)


def quiet_memory_warnings(client: Any) -> None:
    """Register :class:`QuietMemoryWarnings` on ``client``'s workers (best effort)."""
    with contextlib.suppress(Exception):
        client.register_plugin(QuietMemoryWarnings())


__all__ = ("QuietMemoryWarnings", "closing_quietly", "quiet_memory_warnings",
           "quiet_resource_tracker", "drop_cancellation_noise", "install_key_filter",
           "silence_distributed")
