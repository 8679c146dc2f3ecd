"""Run a planned call-hits on a Dask client: one task per block, progress, the manifest.

Also where the driver meets the cluster: :func:`connected` (the caller's client, or an
embedded cluster's) and :func:`cluster_has_gpus` (asked of the workers themselves).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import dask

from .. import config
from ..clusters.quiet import drop_cancellation_noise
from ..clusters.systems import SYSTEMS
from ..dataset import MANIFEST_FILE
from ..errors import NemoDaskError
from ..motifs import motifs_digest
from ..storage.faults import (
    SPACE_FAULTS,
    StorageFaultError,
    fault_error,
    is_fault,
    is_unreachable,
    unreachable_error,
)
from .deaths import DeathWatch, block_bytes
from .output import record_batch_sizes
from .plan import Plan
from .qvalues import save_manifest
from .task import BlockSpec, process_block


def prepare_cluster(options: Any) -> Any:
    """Resolve and check the embedded cluster's options before any work (a bad flag fails
    before the regions are converted), and start the local fork server early so that it
    imports torch while the driver validates input. Returns the resolved ClusterOptions."""
    from ..clusters.options import ClusterOptions, resolve

    opts = resolve(options or ClusterOptions())
    if opts.cluster == "local" and not opts.scheduler:
        from ..clusters.local import prestart_workers

        prestart_workers()
    return opts


@contextlib.contextmanager
def connected(client: Any, cluster_opts: Any) -> Iterator[Any]:
    """The caller's client, or one of an embedded cluster that is closed afterwards."""
    if client is not None:
        yield client
        return
    from ..clusters.connect import ClusterOptions, connect

    # A killed worker must not fail the run: its blocks are simply recomputed elsewhere.
    failures = config.get("call-hits.allowed-failures")
    levels: dict[str, int] = {}
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": failures}):
            with connect(cluster_opts or ClusterOptions()) as cl:
                try:
                    yield cl
                except NemoDaskError:
                    # The run stops with our one-line error while the workers still solve:
                    # what dask logs as it closes them (tasks cancelled, a busy worker killed)
                    # would bury that line. (Only our own cluster's workers are quieted.)
                    levels = _quiet()
                    with contextlib.suppress(Exception):
                        cl.run(_quiet)
                    raise
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


#: dask's loggers that report a cluster stopped while its workers were busy.
_SHUTDOWN_LOGGERS = ("distributed.nanny", "distributed.worker", "distributed.worker.state_machine",
                     "distributed.core", "distributed.comm")


def _quiet() -> dict[str, int]:
    """Raise the shutdown loggers to ERROR; returns their levels before."""
    levels = {name: logging.getLogger(name).level for name in _SHUTDOWN_LOGGERS}
    for name in _SHUTDOWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    return levels


def _import_solver(_address: str = "") -> bool:
    """On a worker: import what a task needs (torch above all) ahead of the first task."""
    import importlib

    from ..clusters.local import WORKER_MODULES

    for name in WORKER_MODULES:
        importlib.import_module(name)
    return True


def warm_workers(client: Any) -> None:
    """Have the caller's workers import torch and the solver now, while the driver checks and
    converts the input: workers a user started (spawned, as dask starts them) would otherwise
    import them in their first task, about a second or more each. Does not wait: one task per
    worker, fired and forgotten."""
    import uuid

    from distributed import fire_and_forget

    with contextlib.suppress(Exception):
        run = uuid.uuid4().hex[:8]
        for address in client.scheduler_info(n_workers=-1).get("workers", {}):
            # A task on each worker (in its thread pool, not on its event loop), not waited for.
            fire_and_forget(client.submit(_import_solver, address, workers=[address],
                                          allow_other_workers=False, pure=False,
                                          key=f"nemo-dask-warm-{run}-{address}"))


def _worker_has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cluster_has_gpus(client: Any, device: str, cluster_opts: Any = None) -> bool:
    """Whether tasks will solve on GPUs, for the block size.

    ``device`` ``cpu``/``cuda...`` says so; ``auto`` asks the workers (``client.run``: does
    torch see a GPU there). A cluster with no worker up yet (a batch system's jobs still
    queued) cannot answer: then the GPUs it was asked to start say it (``--cluster cuda``, or
    batch jobs with ``gpus_per_job`` > 0).
    """
    device = str(device)
    if device != "auto":
        return device.startswith("cuda")
    answers = client.run(_worker_has_cuda) if client.scheduler_info().get("workers") else {}
    if answers:
        return any(answers.values())
    kind = getattr(cluster_opts, "cluster", None)
    return kind == "cuda" or (kind in SYSTEMS
                              and bool(getattr(cluster_opts, "gpus_per_job", 1)))


def _worker_gpu_batch(n_motifs: int, n_pos: int, length: int) -> int:
    import torch

    from ..solver.stream import cuda_batch_size

    return cuda_batch_size(int(torch.cuda.mem_get_info()[0]), n_motifs, n_pos, length)


def workers_gpu_batch(client: Any, n_motifs: int, width: int, motif_width: int) -> int | None:
    """The default solver batch the workers' GPUs hold (the smallest over the workers), asked
    of the workers themselves: the driver never touches CUDA. None when no worker is up yet."""
    if not client.scheduler_info().get("workers"):
        return None
    answers = client.run(_worker_gpu_batch, n_motifs, width - motif_width + 1, width)
    return min(answers.values()) if answers else None


#: Most blocks submitted to the scheduler at once. More are submitted as blocks finish, so the
#: driver (which hosts the scheduler) holds task state for at most this many blocks however
#: many the run has; enough to keep thousands of worker threads busy.
MAX_BLOCKS_IN_FLIGHT = 4096


def execute(client: Any, plan: Plan, embedded: bool = False) -> list[dict[str, Any]]:
    """Submit the blocks not yet finished; returns their summaries as they complete.

    Tasks read the motifs from ``OUT`` (:func:`.task.motifs_from_out`), never from a worker's
    memory, so workers may retire, be cancelled or die at any time. While no worker is
    connected, the batch system's word on the run's jobs is shown (:class:`WorkerWait`); a job
    it refuses or can never run ends the run with :class:`~nemo_dask.errors.WorkersUnavailableError`.
    The manifest is written when planning and once here at the end, never per block: the
    partition files are the truth (a resume reads them), so a crash loses nothing. A
    background null's blocks (:mod:`.qvalues`) are submitted after the run's own.

    Raises
    ------
    WorkersUnavailableError
        The batch system refused a worker job or says it can never run (the message quotes its
        reason), or ``worker_wait`` passed without a worker. The run's jobs are cancelled.
    WorkerMemoryError
        A worker was stopped at its memory limit while solving a block (:mod:`.deaths`): raised
        at the first such death, naming the block size and the options to change.
    StorageFaultError
        A worker found OUT full or unwritable, or the store unreadable (one line; the blocks
        finished so far are kept). ``embedded`` says the cluster is nemo_dask's own, whose
        nannies' memory-kill lines are then left to :mod:`.deaths`.
    """
    from distributed import as_completed

    from ..clusters.waiting import WorkerWait

    # (block, start, stop, background): a background null's blocks are solved for null hits
    # only (nemo_dask.calibration), after the run's own.
    todo = ([(b, s, e, False) for b, s, e in plan.blocks if b not in plan.finished]
            + [(b, s, e, True) for b, s, e in plan.background_blocks
               if b not in plan.background_finished])
    if not todo:
        return []
    digest = motifs_digest(plan.motifs)
    prefix = f"nemo-dask-{plan.fingerprint[:12]}-block-"

    calib = plan.calibration
    # Only a decoy or shuffle null is fitted beside each block (a background null: beside
    # nothing, on its own blocks; the flank null: never).
    per_block = calib if calib is not None and calib.fitted in ("decoy", "shuffle") else None

    def submit(blocks: list[tuple[int, int, int, bool]]) -> list[Any]:
        specs = [BlockSpec(block=b, start=s, stop=e,
                           regions_url=(plan.background_url or "") if bg else plan.regions_url,
                           out=str(plan.out), solver=plan.solver, device=str(plan.run.device),
                           run_id=plan.fingerprint, motifs_digest=digest,
                           calibration=calib if bg else per_block, background=bg)
                 for b, s, e, bg in blocks]
        return client.map(process_block, specs, retries=plan.run.retries,
                          key=[f"{prefix}{'background-' if bg else ''}{b}"
                               for b, _, _, bg in blocks])

    summaries: list[dict[str, Any]] = []
    n_regions = sum(e - s for _, s, e, _ in todo)
    queued = iter(todo)
    in_flight: set[Any] = set()
    fault: StorageFaultError | None = None
    with _progress_bar(n_regions, plan.run.progress) as bar:
        wait = WorkerWait(client, worker_wait=plan.run.worker_wait, status=bar.status)
        deaths = DeathWatch(client, prefix, {b: e - s for b, s, e, _ in todo},
                            _block_need(plan), quiet=embedded)
        first = submit(list(itertools.islice(queued, MAX_BLOCKS_IN_FLIGHT)))
        in_flight.update(first)
        ac = as_completed(first)
        try:
            while not ac.is_empty() and fault is None:
                done = ac.next_batch(block=False)
                deaths.check()  # a worker killed at its memory limit: stop at the first
                if not done:
                    wait.check()
                    time.sleep(0.05)
                    continue
                for fut in done:
                    try:
                        # A result whose worker died before it was gathered is recomputed;
                        # never block on it here, where lost jobs are noticed and replaced.
                        summary = fut.result(timeout=5)
                    except TimeoutError:
                        ac.add(fut)
                        continue
                    fut.release()
                    in_flight.discard(fut)
                    if "fault" in summary:  # a full or unwritable file system: stop at once
                        fault = fault or summary["fault"]
                        continue
                    if "error" in summary:  # a fault of the data: never retried (task.py)
                        raise _task_error(summary)
                    summaries.append(summary)
                    deaths.progressed()
                    # q-values computed before this block are no longer the run's
                    plan.qvalues = None
                    entry = {k: summary[k] for k in ("start", "stop", "hits", "regions", "files",
                                                     "device", "batch_size") if k in summary}
                    if summary.get("background"):
                        plan.background_finished[summary["block"]] = entry
                    else:
                        plan.finished[summary["block"]] = entry
                    bar.update(summary["regions"])
                more = [] if fault else list(itertools.islice(queued, len(done)))
                if more:
                    new = submit(more)
                    in_flight.update(new)
                    ac.update(new)
            if fault is not None:
                raise fault.with_written(written_so_far(plan), resume_fix(fault, plan.out))
        except BaseException as err:
            if in_flight:
                drop_cancellation_noise(client, prefix)  # our tasks' cancellations only
            client.cancel(list(in_flight))
            wait.cancel_jobs()
            _final_manifest(plan, failing=err)
            raise
        finally:
            deaths.close()
        _final_manifest(plan, failing=None)
    return summaries


def _task_error(summary: dict[str, Any]) -> Exception:
    """The error a task returned, as the exception of its kind (the message is the task's)."""
    from .. import errors

    kind = getattr(errors, str(summary.get("error_type")), None)
    if not (isinstance(kind, type) and issubclass(kind, errors.NemoDaskError)):
        kind = errors.InputError
    return kind(summary["error"])


def _block_need(plan: Plan) -> Any:
    """``need(n)``: bytes a block of n regions needs on a worker (:func:`.deaths.block_bytes`)."""

    def need(n: int) -> int:
        from ..regions.store import open_store

        width = open_store(plan.regions_url).width
        return block_bytes(n, width, plan.motifs.n_motifs, plan.motifs.width,
                           plan.solver.batch_size_for("cpu"))

    return need


def written_so_far(plan: Plan) -> str:
    """What a run that stopped has kept: its complete blocks (partitions are written whole)."""
    done = plan.finished.values()
    n_regions = plan.blocks[-1][2] if plan.blocks else 0
    return (f"{len(plan.finished)} of {len(plan.blocks)} blocks "
            f"({sum(b['regions'] for b in done)} of {n_regions} regions, "
            f"{sum(b['hits'] for b in done)} hits) are complete in {plan.out} and kept; the "
            "blocks that failed left no partition")


def resume_fix(fault: StorageFaultError, out: Any) -> str:
    """What to do: free space or make OUT writable (writes), make an input readable (a worker
    that could not read its block), or wait for the object store; then the same command
    resumes."""
    if fault.what is not None:
        first = "once the object store answers again,"
    elif fault.errno in SPACE_FAULTS:
        first = "free space there (or move OUT elsewhere), then"
    elif fault.path.startswith(str(out)):
        first = "make it writable for this user, then"
    else:
        first = "make it readable for the user running the workers, then"
    return f"{first} run the same command again: it resumes with the blocks not yet written"


def _final_manifest(plan: Plan, failing: BaseException | None) -> None:
    """Record the finished blocks. A run already failing keeps its own error if the manifest
    cannot be written either (a full disk, an object store gone): the partitions, not the
    manifest, are what a resume trusts. A run whose blocks all finished but whose manifest
    cannot be written says so in one line."""
    try:
        save_manifest(plan)  # (with the q-value sections: calling/qvalues.py)
        record_batch_sizes(plan.out, plan.finished)
    except Exception as err:
        if failing is not None:
            return
        if isinstance(err, StorageFaultError):
            raise
        path = plan.out / MANIFEST_FILE
        if is_fault(err):
            fault = fault_error(err, path)  # type: ignore[arg-type]
        elif is_unreachable(err):
            fault = unreachable_error(err, path)
        else:
            raise
        raise fault.with_written(
            f"{len(plan.finished)} of {len(plan.blocks)} blocks are complete in {plan.out}, "
            "only its manifest is not up to date", resume_fix(fault, plan.out)) from None


class _NoBar:
    """No progress bar; status lines (jobs waiting in the queue) go to stderr if ``say``."""

    def __init__(self, say: bool) -> None:
        self.say = say

    def update(self, n: int) -> None:
        pass

    def status(self, text: str) -> None:
        if self.say and text:
            print(f"nemo-dask: {text}", file=sys.stderr, flush=True)


class _Bar:
    """tqdm, with the workers' status (e.g. jobs pending in the queue) after the counts."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, n: int) -> None:
        self.bar.update(n)

    def status(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=True)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool | None) -> Iterator[Any]:
    """A bar on a terminal (``enabled`` None) or when asked; without one, status changes are
    printed as lines unless progress was turned off (``enabled`` False)."""
    if not (sys.stderr.isatty() if enabled is None else enabled):
        yield _NoBar(say=enabled is None)
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="regions", desc="call-hits", dynamic_ncols=True) as bar:
        yield _Bar(bar)


__all__ = ("cluster_has_gpus", "connected", "execute", "prepare_cluster", "warm_workers",
           "workers_gpu_batch")
