"""What one Dask task does: read a block of regions, solve it, write its partitions.

This runs on workers. It opens the regions store itself (arrays never pass through the
scheduler), runs the solver on the worker's device and writes ``hits/part-<block>`` and
``qc/part-<block>`` atomically (with a decoy or shuffle null, its null fit's
``null/part-<block>`` too, before the QC; a block of a background null's store writes only
``null_background/part-<block>``), so a task that is run twice (after a worker is lost)
rewrites the same complete files and can never duplicate a hit.

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

from ..calibration.params import CalibrationParams
from ..dataset import (
    BACKGROUND_DIR,
    CWMS_FILE,
    part_name,
    read_cwms,
    read_motifs,
    write_partitions,
    write_stamped,
)
from ..errors import InputError, NemoDaskError
from ..manifest import partition_stamp
from ..motifs import Motifs, motifs_digest
from ..params import SolverParams
from ..schema import MOTIFS_SCHEMA, NULL_HITS_SCHEMA, conform
from ..storage.faults import StorageFaultError, reporting_faults
from ..storage.urls import location
from .columns import status_counts, stored_tables
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
    # A run whose q-values need a null fit (nemo_dask.calibration: decoy, shuffle or
    # background) fits it beside the real one; a block of the background store
    # (``background``) is fitted for its null hits only.
    calibration: CalibrationParams | None = None
    background: bool = False


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
    memory_limit: int | None = None  # the worker's memory limit (bytes), for the CPU batch


def resolve_placement(device: str, worker: Any | None) -> Placement:
    """``auto`` means the GPU this worker was given, if any, else the CPU; threads are the
    worker's (outside a worker: torch's current setting); the memory limit is the worker's
    (None outside a worker or without a limit)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = (int(worker.state.nthreads) if worker is not None else torch.get_num_threads())
    manager = getattr(worker, "memory_manager", None)
    limit = getattr(manager, "memory_limit", None) or None
    return Placement(torch.device(device), max(1, threads), int(limit) if limit else None)


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


def _result(future: Any, worker: Any | None, block: int) -> Any:
    """The solver service's result of ``future``, polled so that a closing worker is not held
    (:class:`WorkerClosingError`: nobody waits for the block, and the nanny would kill it)."""
    while True:
        try:
            return future.result(timeout=0.5)
        except FutureTimeout:
            if _worker_closing(worker):
                raise WorkerClosingError(f"block {block}: the worker closed while solving "
                                         "it") from None


def _process_block(spec: BlockSpec) -> dict[str, Any]:
    t0, started_at = time.perf_counter(), time.time()
    worker = _current_worker()
    motifs = motifs_from_out(spec.out, spec.motifs_digest)
    calib = spec.calibration
    with reporting_faults(spec.regions_url, fix="make the regions store readable for the "
                          "user running the workers, then run the same command again"):
        block = _open_store(spec.regions_url, spec.run_id).read_block(spec.start, spec.stop)
    t_read = time.perf_counter() - t0
    place = resolve_placement(spec.device, worker)
    tune_malloc()
    from ..solver.service import solver_service

    service = solver_service()
    solving = nulling = None
    if not spec.background:
        solving = service.submit(
            spec.run_id, block.sequences, block.contributions, spec.start, motifs=motifs,
            device=place.device, params=spec.solver, threads=place.threads,
            memory_limit=place.memory_limit)
    if calib is not None:  # a decoy or shuffle null of this block, or a background block
        nulling = _submit_null(service, spec, block, motifs, place)
    first, started = solving or nulling  # type: ignore[misc]
    peaks = block.peaks
    del block  # the solver holds the arrays until it is done with them
    while not (started.wait(0.5) or first.done()):
        if _worker_closing(worker):
            # The worker is shutting down (the run ended or failed): nobody waits for this
            # block, and holding the task would keep the process alive until its nanny kills
            # it. Its block is recomputed elsewhere if the run still needs it.
            raise WorkerClosingError(f"block {spec.block}: the worker closed before solving it")
    if worker is not None:
        from distributed import rejoin, secede

        secede()
    try:
        result, t_solve = _result(first, worker, spec.block)
        null_result = (_result(nulling[0], worker, spec.block)[0] if nulling is not None
                       else None)
        solved_at = time.time()
    finally:
        if worker is not None and not _worker_closing(worker):
            rejoin()
    store = _open_store(spec.regions_url, spec.run_id)
    null = None
    if null_result is not None:
        from ..calibration.nulls import null_hits

        raw = null_hits(null_result.hits, motifs.n_motifs, calib)  # type: ignore[arg-type]
        null, _ = stored_tables(raw, null_result.qc, peaks, motifs, spec.start)
        null = keep_owned(null, store, spec.start, spec.stop, motifs.width)
    timing = {"device": str(place.device), "read_s": round(t_read, 3),
              "solve_s": round(t_solve, 3), "total_s": round(time.perf_counter() - t0, 3),
              "started_at": started_at, "solved_at": solved_at,
              "worker": str(worker.address) if worker is not None else "in-process"}
    if spec.background:
        # (a full or unwritable file system: one line, storage/faults.py)
        rec = write_stamped(location(spec.out) / BACKGROUND_DIR / part_name(spec.block),
                            conform(null, NULL_HITS_SCHEMA),  # type: ignore[arg-type]
                            partition_stamp(spec.run_id, spec.block, spec.start, spec.stop,
                                            BACKGROUND_DIR))
        return {"block": spec.block, "background": True, "start": spec.start,
                "stop": spec.stop, "regions": spec.stop - spec.start,
                "files": {BACKGROUND_DIR: rec}, "timeouts": 0, "failures": 0, **timing}
    hits, qc = stored_tables(result.hits, result.qc, peaks, motifs, spec.start)
    # Tiled stores: each instance is kept by the one window that owns it (calling/seams.py).
    hits = keep_owned(hits, store, spec.start, spec.stop, motifs.width)
    entry = write_partitions(spec.out, spec.block, hits, qc, null=null, run=spec.run_id,
                             start=spec.start, stop=spec.stop)
    timeouts, failures = status_counts(result.qc["status"].to_numpy())
    del hits, qc, peaks, result, null, null_result
    release_memory()
    return {
        **entry, "block": spec.block,
        "timeouts": timeouts, "failures": failures,
        "batch_size": solving_batch(first), **timing,
    }


def solving_batch(solving: Any) -> int | None:
    """The batch size the solver used for a block (set by the solver service), or None."""
    return getattr(solving, "batch_size", None)


def _submit_null(service: Any, spec: BlockSpec, block: Any, motifs: Motifs,
                 place: Placement) -> tuple[Any, threading.Event]:
    """Queue the block's null fit (:mod:`nemo_dask.calibration.nulls`) behind its real fit:
    decoys with the motifs, the motifs on shuffled regions, or (a background block) the
    motifs on the background regions."""
    from ..calibration.nulls import null_motifs, shuffle_regions

    calib = spec.calibration
    assert calib is not None
    sequences, contributions = block.sequences, block.contributions
    if calib.fitted == "shuffle":
        sequences, contributions = shuffle_regions(sequences, contributions, spec.start, calib)
    fitted = null_motifs(motifs, calib)
    return service.submit((spec.run_id, "null"), sequences, contributions, spec.start,
                          motifs=fitted, device=place.device, params=spec.solver,
                          threads=place.threads, memory_limit=place.memory_limit)
