"""One solver thread per worker process, fed a stream of blocks by the worker's tasks.

Every task of a worker process hands its block to this thread and waits for the result. The
thread solves blocks in the order they come, one stream at a time (:func:`~nemo_dask.solver.stream.
fit_stream`): when the regions of the blocks it holds run out, it takes the next queued block
of the same run into its free slots, so the slow regions that end a block share batches with
the next one instead of running alone.

One thread, not a lock around the solver, for two reasons. torch then uses all of the
worker's threads for one block at a time (no oversubscription on CPU, no two blocks competing
for one GPU's memory) while task threads read and write the neighbouring blocks. And OpenMP
keeps a thread team per calling thread: with solves coming from several task threads, the
idle teams made libgomp stop spin-waiting, and a 2-thread solve was measured 1.34x slower.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..motifs import Motifs
from ..params import SolverParams

if TYPE_CHECKING:
    import torch

    from .kernels import PreparedMotifs
    from .stream import BlockResult, Job


#: Prepared motif sets the solver thread keeps, least recently used dropped first.
PREPARED_KEPT = 4


@dataclass
class _Request:
    key: Hashable
    job: Job | None
    motifs: Motifs
    device: torch.device
    params: SolverParams
    threads: int
    memory_limit: int | None = None
    future: Future = field(default_factory=Future)
    started: threading.Event = field(default_factory=threading.Event)
    t_start: float = 0.0


class SolverService:
    """The solver thread of this process and its queue of blocks."""

    def __init__(self) -> None:
        self._queue: deque[_Request] = deque()
        self._cv = threading.Condition()
        # Used by the solver thread only. A few motif sets: a worker given blocks of several
        # runs in turn (a sheet of runs, work stealing) prepares each once.
        self._prepared: OrderedDict[Hashable, PreparedMotifs] = OrderedDict()
        self._thread = threading.Thread(target=self._loop, name="nemo-dask-solver", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, sequences: np.ndarray, contributions: np.ndarray,
               region_offset: int, *, motifs: Motifs, device: torch.device,
               params: SolverParams, threads: int,
               memory_limit: int | None = None) -> tuple[Future, threading.Event]:
        """Queue a block; returns a future of ``(BlockResult, seconds in the solver)`` and an
        event set when the solver takes the block.

        ``device`` and ``threads`` are what the calling worker resolved for itself (its GPU or
        CPU, its thread count); torch's thread count is set from ``threads`` before a CPU
        stream, and the batch size follows them (on CPU also ``memory_limit``, the worker's).
        Blocks share a stream only when ``key`` (the run: motifs, parameters), device and
        thread count are equal.
        """
        from .stream import Job

        request = _Request((key, device, params, threads), None, motifs, device, params, threads,
                           memory_limit)
        request.job = Job(sequences, contributions, region_offset,
                          lambda result, r=request: self._finish(r, result))
        with self._cv:
            self._queue.append(request)
            self._cv.notify()
        return request.future, request.started

    @staticmethod
    def _finish(request: _Request, result: BlockResult) -> None:
        request.future.set_result((result, time.perf_counter() - request.t_start))

    def _take(self, key: Hashable) -> _Request | None:
        with self._cv:
            if self._queue and self._queue[0].key == key:
                return self._start(self._queue.popleft())
        return None

    @staticmethod
    def _start(request: _Request) -> _Request:
        request.t_start = time.perf_counter()
        request.started.set()
        return request

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                first = self._start(self._queue.popleft())
            self._serve(first)
            del first

    def _serve(self, first: _Request) -> None:
        """Solve ``first`` and the queued blocks of its run that join its stream."""
        taken = [first]

        def more() -> Job | None:
            request = self._take(first.key)
            if request is None:
                return None
            # Only blocks still being solved: a finished one's future holds its result.
            taken[:] = [r for r in taken if not r.future.done()]
            taken.append(request)
            request.future.batch_size = first.future.batch_size  # type: ignore[attr-defined]
            job, request.job = request.job, None
            return job

        try:
            self._stream(first, more)
        except BaseException as err:  # every block of the failed stream gets the error
            for request in taken:
                if not request.future.done():
                    request.future.set_exception(err)

    def _stream(self, first: _Request, more: Any) -> None:
        import torch

        from .kernels import prepare_motifs
        from .stream import fit_stream

        if first.device.type == "cpu":
            # torch's intra-op pool is process-wide; it is set here, on the only thread that
            # solves, and never read back: fit_stream is told the count.
            torch.set_num_threads(first.threads)
        prepared = self._prepared.get(first.key)
        if prepared is None:
            prepared = prepare_motifs(first.motifs, first.device, first.params.sqrt_transform)
            self._prepared[first.key] = prepared
            while len(self._prepared) > PREPARED_KEPT:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(first.key)
        job, first.job = first.job, None
        # The batch fit_stream would pick, fixed here so that the blocks' futures can say what
        # the solver used (parameters.json records it; results never depend on it).
        batch = stream_batch(first.params, first.device, first.threads, prepared,
                             job.sequences.shape[-1], first.memory_limit)
        params = dataclasses.replace(first.params, batch_size=batch)
        first.future.batch_size = max(2, batch)  # type: ignore[attr-defined]
        fit_stream(job, more, prepared, params=params, device=first.device,
                   threads=first.threads, memory_limit=first.memory_limit)


def stream_batch(params: SolverParams, device: torch.device, threads: int,
                 prepared: PreparedMotifs, length: int, memory_limit: int | None = None) -> int:
    """The batch size a stream uses, as :func:`~nemo_dask.solver.stream.fit_stream` picks it:
    the one given, else what half the GPU's free memory holds
    (:func:`~nemo_dask.solver.stream.cuda_batch_size`) for regions of ``length``, else the
    compiled CPU solver's chunk for the worker's ``memory_limit``
    (:func:`~nemo_dask.solver.cpu.default_chunk`), else (``--exact`` or a compiled torch step)
    per torch thread."""
    if params.batch_size is not None:
        return int(params.batch_size)
    from .stream import uses_compiled_cpu

    if device.type == "cpu" and uses_compiled_cpu(params, device):
        from .cpu import default_chunk

        return default_chunk(prepared.cwms.shape[0], length - prepared.width + 1, length,
                             threads, memory_limit)
    if device.type == "cuda":
        import torch

        from .stream import cuda_batch_size

        return cuda_batch_size(int(torch.cuda.mem_get_info(device)[0]), prepared.cwms.shape[0],
                               length - prepared.width + 1, length)
    return params.batch_size_for(device.type, threads)


_SERVICE: SolverService | None = None
_SERVICE_LOCK = threading.Lock()


def solver_service() -> SolverService:
    """This process's solver service (started on first use)."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is None:
            _SERVICE = SolverService()
        return _SERVICE
