"""What one Dask task does: read a block of regions, solve it, write its two partitions.

This runs on workers. It opens the regions store itself (arrays never pass through the
scheduler), runs the solver on the worker's device and writes ``hits/part-<block>`` and
``qc/part-<block>`` atomically, so a task that is run twice (after a worker is lost) rewrites
the same complete files and can never duplicate a hit.

Nothing a task needs lives only in some worker's memory: the motifs are read from the run's
output directory (``motif_cwms.npy`` and ``motifs.parquet``, written by the driver before any
task is submitted) and checked against the digest the driver put in the task, then cached per
worker process. A worker that retires, is cancelled or dies takes nothing with it; its tasks
simply run again elsewhere.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import polars as pl

from ..dataset import CWMS_FILE, read_cwms, read_motifs, write_partitions
from ..errors import InputError, NemoDaskError
from ..motifs import Motifs, motifs_digest
from ..params import SolverParams
from ..schema import MOTIFS_SCHEMA, QC_STATUS
from ..storage.faults import StorageFaultError, reporting_faults
from .seams import keep_owned

if TYPE_CHECKING:  # torch is imported on workers only: the driver never needs it
    import torch

#: Regions stores a worker process keeps open (each keeps its last verified chunks), and runs'
#: motifs it keeps: a few, least recently used dropped first, so that a worker going through
#: a sheet of hundreds of runs does not keep them all.
STORES_KEPT = 4
MOTIFS_KEPT = 16
_REGIONS: OrderedDict[tuple[str, str], Any] = OrderedDict()
_REGIONS_LOCK = threading.Lock()
_MOTIFS: OrderedDict[tuple[str, str], Motifs] = OrderedDict()
_MOTIFS_LOCK = threading.Lock()


@dataclass(frozen=True)
class BlockSpec:
    """Everything a task needs besides the motifs: small and cheap to send."""

    block: int
    start: int
    stop: int
    regions_url: str
    out: str
    solver: SolverParams  # the optimiser and the mode
    device: str  # "auto", "cpu", "cuda", "cuda:1", ...: resolved on the worker
    run_id: str
    motifs_digest: str = ""  # motifs_digest() of the run's motifs, checked when loading them


def motifs_from_out(out: str, digest: str = "") -> Motifs:
    """The run's motifs, rebuilt from ``OUT/motif_cwms.npy`` and ``OUT/motifs.parquet``.

    Trim masks are 1 on ``[motif_start, motif_end)`` of each row and lambdas are the table's
    ``lambda`` column, exactly as :func:`nemo_dask.motifs.load_motifs` made them. Cached per
    process by (``out``, ``digest``).

    Raises
    ------
    InputError
        When the files are missing or hold other motifs than ``digest`` (OUT was overwritten by
        another run while this one was running).
    """
    key = (out, digest)
    with _MOTIFS_LOCK:
        cached = _MOTIFS.get(key)
        if cached is not None:
            _MOTIFS.move_to_end(key)
            return cached
        try:
            cwms = read_cwms(out)  # local or an fsspec URL
            # finemo's columns only: TOMTOM matches an annotation added are no part of the
            # motifs the solver uses (nor of their digest).
            table = read_motifs(out).select(MOTIFS_SCHEMA.names)
        except OSError as err:
            raise InputError(f"{out}: cannot read the run's motifs ({err}); was the output "
                             "directory removed while the run was going on?") from None
        width = cwms.shape[2]
        masks = np.zeros((cwms.shape[0], width), dtype=np.int8)
        for i, (s, e) in enumerate(zip(table["motif_start"], table["motif_end"], strict=True)):
            masks[i, s:e] = 1
        motifs = Motifs(cwms=cwms, trim_masks=masks,
                        lambdas=table.get_column("lambda").to_numpy().astype(np.float64),
                        table=table)
        if digest and motifs_digest(motifs) != digest:
            raise InputError(f"{out}: {CWMS_FILE} and motifs.parquet hold other motifs than "
                             "this run's; another run wrote into the same output directory")
        _MOTIFS[key] = motifs
        while len(_MOTIFS) > MOTIFS_KEPT:
            _MOTIFS.popitem(last=False)
        return motifs


class Placement(NamedTuple):
    """Where this worker solves: resolved once per task, on the worker, and passed down."""

    device: torch.device
    threads: int  # torch threads for a CPU solve: the worker's task threads


def resolve_placement(device: str, worker: Any | None) -> Placement:
    """``auto`` means the GPU this worker was given, if any, else the CPU; threads are the
    worker's (outside a worker: torch's current setting)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = (int(worker.state.nthreads) if worker is not None else torch.get_num_threads())
    return Placement(torch.device(device), max(1, threads))


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Let glibc keep the solver's buffers instead of returning them to the OS at every step.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's
    mmap threshold: every multi-MB tensor the solver allocates per step is then mmapped, page
    faulted and unmapped again, halving CPU throughput. Raising both thresholds (in this
    process only; blocks have bounded memory) restores in-process speed. No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        ok &= libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)
        return bool(ok)
    except (OSError, AttributeError):
        return False


class WorkerClosingError(RuntimeError):
    """A task gave up its queued block because its worker is closing."""


def _worker_closing(worker: Any | None) -> bool:
    """Whether ``worker`` is closing for good (not retiring gracefully, which lets its tasks
    finish)."""
    if worker is None:
        return False
    from distributed.core import Status

    return worker.status in (Status.closing, Status.closed, Status.failed)


def release_memory() -> bool:
    """Hand the memory freed by a finished block back to the OS; returns whether glibc did.

    :func:`tune_malloc` lets glibc keep up to 256 MB of freed heap (so that the solver's
    per-step buffers are not unmapped and faulted in again at every step). Without this, a
    worker's resident memory climbs to the largest heap any block of the run has needed and
    stays there: it grew with the number of regions. Trimmed once per block, it tracks the
    current block instead; pyarrow's pool (the Parquet writer's buffers) is released too.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _current_worker() -> Any | None:
    """The dask worker running this task, or None when called outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _open_store(url: str, run_id: str):
    """The store at ``url`` as run ``run_id`` reads it: kept open per run, since a store
    converted again at the same path (another run on the same cluster) holds other regions
    than the chunks an earlier run's handle keeps."""
    from ..regions.store import open_store

    key = (url, run_id)
    with _REGIONS_LOCK:
        regions = _REGIONS.get(key)
        if regions is not None:
            _REGIONS.move_to_end(key)
            return regions
    regions = open_store(url)
    with _REGIONS_LOCK:
        _REGIONS[key] = regions
        while len(_REGIONS) > STORES_KEPT:
            _REGIONS.popitem(last=False)
    return regions


def process_block(spec: BlockSpec) -> dict[str, Any]:
    """Solve one block and write its partitions; returns a small summary for the driver.

    The block goes to the process's solver thread (:mod:`nemo_dask.solver.service`). Once
    the solver takes it, the task leaves the worker's thread pool (dask's ``secede``) until
    the block is solved: the worker then starts its next task, which reads its block meanwhile
    and queues it for the solver, and this task writes its partitions while the next block is
    solved. A task whose block is still queued keeps its slot, so a worker holds at most one
    queued block per thread, and the rest of its tasks stay free to be stolen by idle workers.

    A fault of the data or the run (a damaged chunk of the store, OUT overwritten under the
    run: any :class:`~nemo_dask.errors.NemoDaskError`) is returned, not raised, as
    ``{"block": ..., "error": message}``: dask would retry a raising task on every worker
    first, and reading the same damaged chunk again gives the same answer. The driver stops
    the run with that message (:func:`nemo_dask.calling.execute.execute`). A full or
    unwritable file system (:class:`~nemo_dask.storage.faults.StorageFaultError`) comes back as
    ``{"block": ..., "fault": error}``; no partition of the block is left half-written.
    """
    try:
        return _process_block(spec)
    except StorageFaultError as fault:
        # A full or unwritable file system (:mod:`nemo_dask.storage.faults`): returned whole,
        # so that the driver can add what the run kept; retrying only fills the disk further.
        return {"block": spec.block, "start": spec.start, "stop": spec.stop, "fault": fault}
    except NemoDaskError as err:
        return {"block": spec.block, "start": spec.start, "stop": spec.stop,
                "error": str(err), "error_type": type(err).__name__}


def _process_block(spec: BlockSpec) -> dict[str, Any]:
    t0, started_at = time.perf_counter(), time.time()
    worker = _current_worker()
    motifs = motifs_from_out(spec.out, spec.motifs_digest)
    with reporting_faults(spec.regions_url, fix="make the regions store readable for the "
                          "user running the workers, then run the same command again"):
        block = _open_store(spec.regions_url, spec.run_id).read_block(spec.start, spec.stop)
    t_read = time.perf_counter() - t0
    place = resolve_placement(spec.device, worker)
    tune_malloc()
    from ..solver.service import solver_service

    solving, started = solver_service().submit(
        spec.run_id, block.sequences, block.contributions, spec.start, motifs=motifs,
        device=place.device, params=spec.solver, threads=place.threads)
    peaks = block.peaks
    del block  # the solver holds the arrays until it is done with them
    while not (started.wait(0.5) or solving.done()):
        if _worker_closing(worker):
            # The worker is shutting down (the run ended or failed): nobody waits for this
            # block, and holding the task would keep the process alive until its nanny kills
            # it. Its block is recomputed elsewhere if the run still needs it.
            raise WorkerClosingError(f"block {spec.block}: the worker closed before solving it")
    if worker is not None:
        from distributed import rejoin, secede

        secede()
    try:
        while True:
            try:
                result, t_solve = solving.result(timeout=0.5)
                break
            except FutureTimeout:
                if _worker_closing(worker):  # as above: do not hold a closing worker
                    raise WorkerClosingError(f"block {spec.block}: the worker closed while "
                                             "solving it") from None
        solved_at = time.time()
    finally:
        if worker is not None and not _worker_closing(worker):
            rejoin()
    hits, qc = annotate(result.hits, result.qc, peaks, motifs, spec.start)
    # Tiled stores: each instance is kept by the one window that owns it (calling/seams.py).
    hits = keep_owned(hits, _open_store(spec.regions_url, spec.run_id), spec.start, spec.stop,
                      motifs.width)
    entry = write_partitions(spec.out, spec.block, hits, qc, run=spec.run_id, start=spec.start,
                             stop=spec.stop)
    statuses = np.bincount(result.qc["status"].to_numpy(), minlength=len(QC_STATUS))
    del hits, qc, peaks, result
    release_memory()
    return {
        **entry, "block": spec.block,
        "timeouts": int(statuses[1]), "failures": int(statuses[2]),
        "device": str(place.device), "batch_size": solving_batch(solving),
        "read_s": round(t_read, 3), "solve_s": round(t_solve, 3),
        "total_s": round(time.perf_counter() - t0, 3), "started_at": started_at,
        "solved_at": solved_at, "worker": str(worker.address) if worker is not None else "in-process",
    }


def solving_batch(solving: Any) -> int | None:
    """The batch size the solver used for a block (set by the solver service), or None."""
    return getattr(solving, "batch_size", None)


def annotate(hits: pl.DataFrame, qc: pl.DataFrame, peaks: pl.DataFrame, motifs: Motifs,
             start: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Turn raw solver columns into the stored hits and QC tables (schema.py).

    Genomic coordinates and global-scale factors are applied as finemo's writer applies them,
    so the stored values are those of finemo's hits.tsv and peaks_qc.tsv. ``peaks`` holds the
    peak-table rows of regions ``start, start + 1, ...``.
    """
    width = motifs.width
    # Region i is row i of the peak table; its peak_id is whatever that row says (finemo joins on
    # peak_id = row number, which is the same thing for every file its extractors write).
    peak_cols = peaks.select("peak_id", "chr", "chr_id", "peak_region_start", "peak_name")
    peak_cols = peak_cols.with_columns(
        region=pl.Series(np.arange(start, start + len(peaks), dtype=np.int64)))
    qc_full = (
        qc.with_columns(pl.col("region").cast(pl.Int64),
                        status=pl.col("status").replace_strict(
                            list(range(len(QC_STATUS))), list(QC_STATUS), return_dtype=pl.String))
        .join(peak_cols, on="region", how="left")
    )
    motif_cols = motifs.table.select("motif_id", "motif_name", "strand", "motif_start", "motif_end")
    start_untrimmed = pl.col("peak_region_start").cast(pl.Int64) + pl.col("hit_start")
    gs = pl.col("global_scale")
    hits_full = (
        hits.with_columns(pl.col("region").cast(pl.Int64))
        .join(qc_full.select("region", "peak_id", "global_scale", "chr", "chr_id",
                             "peak_region_start", "peak_name"), on="region", how="left")
        .join(motif_cols, on="motif_id", how="left")
        .with_columns(
            start=start_untrimmed + pl.col("motif_start"),
            end=start_untrimmed + pl.col("motif_end"),
            start_untrimmed=start_untrimmed,
            end_untrimmed=start_untrimmed + width,
            hit_coefficient_global=pl.col("hit_coefficient") * gs**2,
            hit_importance=pl.col("hit_importance") * gs,
            hit_importance_sq=pl.col("hit_importance_sq") * gs**2,
        )
    )
    return hits_full, qc_full
