"""Workers that die while solving: a block too big for the workers' memory ends the run at the
first death, in one line, instead of after dask's ``allowed-failures`` deaths (``KilledWorker``).

dask retries a task whose worker died on another worker, and counts the deaths against it
(``TaskState.suspicious``). A worker that died of a crash or a lost node should be retried; one
that died because its nanny stopped it at its memory limit will die again on every worker, since
every worker has the same limit and every block the same size. :class:`DeathWatch` asks the
scheduler, every couple of seconds, which workers it has, their memory and limit, and which of
the run's tasks were on a worker that died; a death attributed to memory (the nanny said so, or
the worker last reported at least :data:`NEAR_LIMIT` of its limit) raises
:class:`WorkerMemoryError` naming the block, its size, what it needs, the limit and the options
to change. Other deaths are left to dask's retries. A limit that does not even leave room for
the worker itself shows differently on a cluster whose workers import torch only with their
first task: dask pauses them (at 80 % of the limit) and no block ever starts; every worker
paused for :data:`STUCK_PAUSED_S` with no block finishing raises the same error.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..errors import NemoDaskError
from ..storage.faults import format_size

#: Share of its memory limit at which a worker that then died is taken to have died of memory
#: (dask's nanny stops a worker at 95 %; heartbeats report it every second or so).
NEAR_LIMIT = 0.7
#: Seconds between two looks at the scheduler.
INTERVAL_S = 2.0
#: Seconds every worker may stay paused (dask's memory pause) with no block finishing before
#: the run stops: a worker that is paused before its first block never gets one.
STUCK_PAUSED_S = 60.0
#: Bytes a CPU solve needs per region of a block beyond the stored arrays: the contributions
#: as float32 (4 x L x 4 bytes) and the one-hot as float32 under the windows (4 x L x 4), held
#: while the block is solved; two blocks may be in a worker at once (one solving, one read).
_SOLVE_BYTES_PER_BASE = 32
_STORED_BYTES_PER_BASE = 3  # int8 one-hot + float16 contributions, 4 x L each


class WorkerMemoryError(NemoDaskError):
    """A worker was stopped at its memory limit while solving a block; the message says the
    block's size, what it needs, the limit and which option to change. ``run``: the key prefix
    of the run whose block it was (:meth:`DeathWatch.look`), None when every worker is paused
    (no run can go on)."""

    run: str | None = None


def block_bytes(n_regions: int, width: int, n_motifs: int, motif_width: int,
                batch: int) -> int:
    """About how much memory a worker needs for a block of ``n_regions`` beyond its own.

    Two blocks' arrays (one read and queued while one is solved: stored dtypes plus the
    solver's float32 copies) and the solver's batch, whose slots hold ``4 (16 M P + 20 L)``
    bytes each (:func:`nemo_dask.solver.stream.cuda_batch_size`'s model; P = L - W + 1).
    """
    per_region = 4 * width * (_STORED_BYTES_PER_BASE + _SOLVE_BYTES_PER_BASE)
    n_pos = max(1, width - motif_width + 1)
    per_slot = 4 * (16 * n_motifs * n_pos + 20 * width)
    return 2 * n_regions * per_region + batch * per_slot


def _scheduler_view(prefix: str, dask_scheduler: Any = None) -> dict[str, Any]:
    """Runs on the scheduler: its workers (memory, limit) and the run's tasks that were on a
    worker that died (``suspicious``)."""
    workers = {addr: (int(ws.memory_limit or 0), int(ws.memory.process))
               for addr, ws in dask_scheduler.workers.items()}
    paused = [addr for addr, ws in dask_scheduler.workers.items()
              if getattr(ws.status, "name", str(ws.status)) == "paused"]
    dead = {str(key): int(ts.suspicious) for key, ts in dask_scheduler.tasks.items()
            if ts.suspicious and str(key).startswith(prefix)}
    return {"workers": workers, "suspicious": dead, "paused": paused}


class _NannyMemoryKills(logging.Filter):
    """Counts the memory kills nannies log in this process (a local cluster's nannies run in
    the driver); with ``quiet``, drops those lines and the restarts that follow them, since
    :class:`DeathWatch` says it in its own line."""

    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.quiet, self.kills = quiet, 0

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return True
        if "memory budget" in text:
            self.kills += 1
            return not self.quiet
        return not (self.quiet and text.startswith("Restarting worker"))


_NANNY_LOGGERS = ("distributed.nanny.memory", "distributed.nanny")


class DeathWatch:
    """Watches the run's tasks for deaths of their workers; see the module docstring.

    Parameters
    ----------
    client : distributed.Client
    prefix : str
        The common prefix of the task keys watched (one run's, or every run's of a sheet).
    sizes : dict
        Block id -> number of regions, of the run keyed ``prefix`` (empty: runs are added
        with :meth:`watch`).
    need : callable
        ``need(n_regions)`` -> bytes a block of that size needs (:func:`block_bytes`).
    block_size_flag : str
        How the message names the option that sets the block size.
    quiet : bool
        Drop the nannies' own memory-kill lines in this process (a cluster nemo_dask started:
        its line replaces them).
    """

    def __init__(self, client: Any, prefix: str, sizes: dict[int, int], need: Any,
                 block_size_flag: str = "--block-size", quiet: bool = False) -> None:
        self.client, self.prefix, self.sizes, self.need = client, prefix, sizes, need
        #: Each run's key prefix -> (its block sizes, its ``need``).
        self.runs: dict[str, tuple[dict[int, int], Any]] = {prefix: (sizes, need)} if sizes else {}
        self.flag = block_size_flag
        self.last: dict[str, tuple[int, int]] = {}
        self.seen: dict[str, int] = {}
        self.baseline: int | None = None
        self.next_look = 0.0
        self.enabled = True
        self.paused_since: float | None = None
        self.progress_at = 0.0
        self.nanny = _NannyMemoryKills(quiet)
        for name in _NANNY_LOGGERS:
            logging.getLogger(name).addFilter(self.nanny)

    def close(self) -> None:
        for name in _NANNY_LOGGERS:
            logging.getLogger(name).removeFilter(self.nanny)

    def watch(self, prefix: str, sizes: dict[int, int], need: Any) -> None:
        """Watch one more run: its task keys start with ``prefix`` (below the watch's own)."""
        self.runs[prefix] = (sizes, need)

    def forget(self, prefix: str) -> None:
        """A run ended: deaths of its tasks (cancelled now) are no longer reported."""
        self.runs.pop(prefix, None)

    def check(self) -> None:
        """Look at the scheduler (at most every :data:`INTERVAL_S`); raise
        :class:`WorkerMemoryError` at the first death of memory."""
        for err in self.look():
            raise err

    def look(self) -> list[WorkerMemoryError]:
        """Look at the scheduler (at most every :data:`INTERVAL_S`): one
        :class:`WorkerMemoryError` per run with a block that a worker died of memory solving
        (its ``run``), or one for all (``run`` None) when every worker has stayed paused.

        A worker's death marks every task it held, of whichever run; the run blamed is the one
        whose block needs the most memory (the others are left to dask's retries, and blamed
        if they die again)."""
        now = time.monotonic()
        if not self.enabled or now < self.next_look:
            return []
        self.next_look = now + INTERVAL_S
        try:
            view = self.client.run_on_scheduler(_scheduler_view, self.prefix)
        except Exception:  # a scheduler without nemo_dask, or gone: dask's own limits apply
            self.enabled = False
            return []
        workers: dict[str, tuple[int, int]] = view["workers"]
        paused = bool(workers) and set(view.get("paused", ())) >= set(workers)
        if not paused:
            self.paused_since = None
        elif self.paused_since is None or self.progress_at > self.paused_since:
            self.paused_since = now  # paused from now on (or again after a block finished)
        elif now - self.paused_since >= STUCK_PAUSED_S:
            limit = max(lim for lim, _ in workers.values())
            used = max(m for _, m in workers.values())
            return [WorkerMemoryError(self.paused_message(limit, used))]
        for used in (m for _, m in workers.values() if m):
            self.baseline = used if self.baseline is None else min(self.baseline, used)
        gone = set(self.last) - set(workers)
        new_deaths = {k: n for k, n in view["suspicious"].items() if n > self.seen.get(k, 0)}
        self.seen.update(view["suspicious"])
        last, self.last = self.last, workers
        if not new_deaths:
            return []
        limit, used = max((last[a] for a in gone), default=(0, 0), key=lambda x: x[1])
        if not limit and workers:
            limit = max(lim for lim, _ in workers.values())
        by_memory = self.nanny.kills > 0 or (limit > 0 and used >= NEAR_LIMIT * limit)
        if not by_memory:
            return []
        blamed: tuple[int, str, dict[str, int]] | None = None
        for prefix, (sizes, need) in self.runs.items():
            mine = {k: n for k, n in new_deaths.items() if k.startswith(prefix)}
            if mine:
                most = max(need(sizes.get(_block_of(k), 0)) for k in mine)
                if blamed is None or most > blamed[0]:
                    blamed = (most, prefix, mine)
        if blamed is None:
            return []
        _, prefix, mine = blamed
        sizes, need = self.runs[prefix]
        err = WorkerMemoryError(self.message(mine, limit, sizes, need))
        err.run = prefix
        return [err]

    def progressed(self) -> None:
        """A block finished: paused workers are still getting work done."""
        self.progress_at = time.monotonic()

    def paused_message(self, limit: int, used: int) -> str:
        n, need = max(((max(sizes.values(), default=0), need)
                       for sizes, need in self.runs.values()),
                      default=(0, self.need), key=lambda x: x[0])
        return (f"every worker has been paused by dask for {STUCK_PAUSED_S:.0f} s with no "
                f"block finished: a worker uses {format_size(used)} of its "
                f"{format_size(limit)} memory limit (dask pauses at 80 %) before a block of "
                f"{n} regions, which needs about {format_size(need(n))} more, can run; "
                "give the workers more memory (LocalCluster(memory_limit=...), --memory for "
                f"batch jobs, dask config nemo_dask.cluster.local.memory-limit) or use smaller "
                f"blocks ({self.flag}); the blocks finished so far are kept and a rerun resumes")

    def message(self, deaths: dict[str, int], limit: int, sizes: dict[int, int] | None = None,
                need_of: Any = None) -> str:
        """The line for the deaths of a run's tasks (``sizes`` and ``need_of``: the run's;
        default the watch's own)."""
        sizes = self.sizes if sizes is None else sizes
        need_of = self.need if need_of is None else need_of
        key = sorted(deaths)[0]
        block = _block_of(key)
        n = sizes.get(block, 0)
        base = self.baseline or 0
        need = base + need_of(n)
        fit = max(1, n * max(0, int(0.6 * limit) - base) // max(1, need_of(n))) if limit else 0
        fit = max(16, fit - fit % 16) if fit else 16
        shown_limit = format_size(limit) if limit else "its"
        return (f"a worker was stopped at its memory limit while solving block {block} ({n} "
                f"regions): a block that size needs about {format_size(need)} "
                f"({format_size(base)} for the worker itself) of the {shown_limit} worker "
                f"limit; use smaller blocks ({self.flag} {min(fit, max(16, n // 2))} or less), "
                "more memory per worker (--memory for batch jobs; dask config "
                "nemo_dask.cluster.local.memory-limit or LocalCluster(memory_limit=...) "
                "for local workers) or a smaller solver batch (-b/--batch-size); the blocks "
                "finished so far are kept and a rerun resumes")


def _block_of(key: str) -> int:
    """The block id at the end of a task key (``...-block-17``)."""
    return int(key.rsplit("-", 1)[-1])


__all__ = ("DeathWatch", "WorkerMemoryError", "block_bytes")
