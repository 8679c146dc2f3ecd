"""Run planned call-hits runs on a Dask client: one task per block, one scheduler loop for
every run (a sheet's too), progress; each run ends in :mod:`.ending`.

Also where the driver meets the cluster: :func:`connected` (the caller's client, or an
embedded cluster's) and :func:`cluster_has_gpus` (asked of the workers themselves).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask

from .. import config
from ..clusters.quiet import drop_cancellation_noise
from ..clusters.systems import SYSTEMS
from ..errors import NemoDaskError
from ..motifs import motifs_digest
from .deaths import DeathWatch, block_bytes
from .ending import end_of_run, record_progress, resume_fix, written_so_far
from .plan import Plan
from .progress import progress_bar
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
#: many the runs have; enough to keep thousands of worker threads busy.
MAX_BLOCKS_IN_FLIGHT = 4096


@dataclass(eq=False)
class RunOutcome:
    """How one planned run of :func:`execute` went.

    ``summaries`` has one dict per block solved (see
    :class:`~nemo_dask.calling.api.CallHitsResult`); ``error`` is what ended the run early
    (a task's fault of the data, a full or unwritable file system, a worker stopped at its
    memory limit, or a task that raised after its retries), None when it finished.
    ``seconds``: from its first block's start on a worker to its end (0 when it solved none).
    """

    plan: Plan
    summaries: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    ended: bool = False
    seconds: float = 0.0
    #: The common prefix of the run's task keys in this :func:`execute` call.
    prefix: str = ""
    _in_flight: set[Any] = field(default_factory=set, repr=False)

    @property
    def n_hits(self) -> int:
        """Hits of the run's finished blocks (all of them once it finished)."""
        return sum(int(s.get("hits", 0)) for s in self.plan.finished.values())


def execute(client: Any, plans: Sequence[Plan],
            on_run_end: Callable[[RunOutcome, Callable[[str], None]], None] | None = None,
            embedded: bool = False) -> list[RunOutcome]:
    """Solve the blocks of every plan not yet finished, through one scheduler loop.

    The blocks of all runs are submitted in run order, so the workers go from one run's blocks
    to the next one's without waiting for the driver. Each task carries its run's solver
    parameters and reads its run's motifs from the run's ``OUT``
    (:func:`.task.motifs_from_out`), never from a worker's memory, so workers may retire, be
    cancelled or die at any time. A run ends when its last block (and a background
    null's) is in (then :func:`end_of_run`: its q-value pass and complete manifest) or when it fails: one of its tasks met a fault of the data or a full,
    unwritable or unreadable file system (one line, with the blocks it kept), a worker was
    stopped at its memory limit while solving one of its blocks (:mod:`.deaths`), or a task
    raised after its retries. A failed run's other tasks are cancelled, its manifest records
    the blocks it finished, and the other runs go on. ``on_run_end(outcome, write)`` is called
    as each run ends, with a function that prints a line without breaking the progress bar.
    ``embedded`` says the cluster is nemo_dask's own, whose nannies' memory-kill lines are
    then left to :mod:`.deaths`.

    While no worker is connected, the batch system's word on the jobs is shown
    (:class:`WorkerWait`). Each manifest is written when planning and once here when its run
    ends, never per block: the partition files are the truth (a resume reads them), so a crash
    loses nothing.

    Returns
    -------
    list of RunOutcome
        One per plan, in order.

    Raises
    ------
    WorkersUnavailableError
        The batch system refused a worker job or says it can never run (the message quotes its
        reason), or ``worker_wait`` passed without a worker: every run stops (their jobs are
        cancelled, their manifests record what finished).
    WorkerMemoryError
        Every worker has been paused at its memory limit with no block finishing: no run can
        go on (a worker stopped while solving a block ends that block's run only).
    """
    from distributed import as_completed

    from ..clusters.waiting import WorkerWait

    call = uuid.uuid4().hex[:8]
    outcomes = [RunOutcome(plan, prefix=_key_prefix(plan, call)) for plan in plans]
    if not outcomes:
        return outcomes
    # (block, start, stop, background): a background null's blocks are solved for null hits
    # only (nemo_dask.calibration), after the run's own.
    queued = deque((o, block) for o in outcomes for block in _todo(o.plan))
    n_regions = sum(e - s for _, (_, s, e, _) in queued)
    digests = {id(o): motifs_digest(o.plan.motifs) for o in outcomes}
    rank = {id(o): k for k, o in enumerate(outcomes)}
    owners: dict[str, RunOutcome] = {}
    by_prefix = {o.prefix: o for o in outcomes}
    run_options = outcomes[0].plan.run
    with progress_bar(n_regions, run_options.progress, runs=len(outcomes)) as bar:
        wait = WorkerWait(client, worker_wait=run_options.worker_wait, status=bar.status)
        deaths = DeathWatch(client, f"nemo-dask-{call}-", {}, None, quiet=embedded)
        for o in outcomes:
            deaths.watch(o.prefix, {b: e - s for b, s, e, _ in _todo(o.plan)},
                         _block_need(o.plan))
        n_ended = 0

        def end(o: RunOutcome, error: BaseException | None = None) -> None:
            nonlocal n_ended
            if o.ended:
                return
            o.ended, o.error, n_ended = True, error, n_ended + 1
            deaths.forget(o.prefix)
            # From its first block's start on a worker (a sheet submits every run's blocks
            # at once; they start as workers reach them) to now.
            began = min((s["started_at"] for s in o.summaries), default=None)
            o.seconds = max(0.0, time.time() - began) if began is not None else 0.0
            if o._in_flight:
                drop_cancellation_noise(client, o.prefix)  # this run's cancellations only
                client.cancel(list(o._in_flight))
                o._in_flight.clear()
            try:
                if error is None:
                    end_of_run(client, o.plan, computed=bool(o.summaries))
                else:
                    record_progress(o.plan, failing=error)
            except Exception as err:  # (OUT removed under the run, say): this run's failure
                o.error = o.error or err
            if len(outcomes) > 1:
                bar.runs_done(n_ended, len(outcomes))
            if on_run_end is not None:
                on_run_end(o, bar.write)

        def submit() -> list[Any]:
            """Submit queued blocks (of runs still going) up to the in-flight bound."""
            n = sum(len(o._in_flight) for o in outcomes)
            new: list[Any] = []
            while queued and n < MAX_BLOCKS_IN_FLIGHT:
                o = queued[0][0]
                group = []
                while queued and queued[0][0] is o and n + len(group) < MAX_BLOCKS_IN_FLIGHT:
                    group.append(queued.popleft()[1])
                if o.ended:
                    continue
                futures = _submit(client, o.plan, group, digests[id(o)], o.prefix,
                                  priority=len(outcomes) - rank[id(o)])
                for fut in futures:
                    owners[fut.key] = o
                o._in_flight.update(futures)
                new += futures
                n += len(futures)
            return new

        for o in outcomes:  # a resume with nothing left to solve ends at once
            if not _todo(o.plan):
                end(o)
        ac = as_completed(submit())
        try:
            while n_ended < len(outcomes):
                # A worker stopped at its memory limit while solving: that block's run ends.
                for err in deaths.look():
                    if err.run is None:  # every worker paused: no run can go on
                        raise err
                    end(by_prefix[err.run], err)
                done = ac.next_batch(block=False)
                if not done:
                    wait.check()
                    time.sleep(0.05)
                    continue
                for fut in done:
                    o = owners.get(fut.key)
                    if o is None or o.ended:  # cancelled with its failed run
                        owners.pop(fut.key, None)
                        fut.release()
                        continue
                    try:
                        # A result whose worker died before it was gathered is recomputed;
                        # never block on it here, where lost jobs are noticed and replaced.
                        summary = fut.result(timeout=5)
                    except TimeoutError:
                        ac.add(fut)
                        continue
                    except Exception as err:  # the task raised after its retries
                        _forget(fut, o, owners)
                        end(o, err)
                        continue
                    _forget(fut, o, owners)
                    if "fault" in summary:  # a full or unwritable file system: never retried
                        fault = summary["fault"]
                        end(o, fault.with_written(written_so_far(o.plan),
                                                  resume_fix(fault, o.plan.out)))
                        continue
                    if "error" in summary:  # a fault of the data: never retried (task.py)
                        end(o, _task_error(summary))
                        continue
                    o.summaries.append(summary)
                    deaths.progressed()
                    # q-values computed before this block are no longer the run's
                    o.plan.qvalues = None
                    entry = {k: summary[k] for k in ("start", "stop", "hits", "regions", "files",
                                                     "device", "batch_size") if k in summary}
                    if summary.get("background"):
                        o.plan.background_finished[summary["block"]] = entry
                    else:
                        o.plan.finished[summary["block"]] = entry
                    bar.update(summary["regions"])
                    if not _todo(o.plan):
                        end(o)
                ac.update(submit())
        except BaseException as err:
            in_flight = [f for o in outcomes for f in o._in_flight]
            if in_flight:
                drop_cancellation_noise(client, f"nemo-dask-{call}-")  # ours only
            client.cancel(in_flight)
            wait.cancel_jobs()
            for o in outcomes:
                if not o.ended:
                    # The partitions are the truth; a manifest that cannot be written now
                    # must not hide why the runs stopped.
                    record_progress(o.plan, failing=err)
            raise
        finally:
            deaths.close()
        if all(o.error is not None for o in outcomes):
            wait.cancel_jobs()
    return outcomes


def _key_prefix(plan: Plan, call: str) -> str:
    """The common prefix of a run's task keys: this :func:`execute` call (``call``; a rerun
    on the same cluster never gets a result the scheduler still holds from an earlier call, a
    block that failed or read a store since replaced, but solves the block again), the run
    and its OUT (two rows of a sheet that are the same run into two OUTs stay two tasks)."""
    from dask.base import tokenize

    return f"nemo-dask-{call}-{plan.fingerprint[:12]}-{tokenize(str(plan.out))[:8]}-block-"


def _todo(plan: Plan) -> list[tuple[int, int, int, bool]]:
    """The blocks of ``plan`` not yet finished, as (block, start, stop, background): the run's
    own, then a background null's (:mod:`.qvalues`)."""
    return ([(b, s, e, False) for b, s, e in plan.blocks if b not in plan.finished]
            + [(b, s, e, True) for b, s, e in plan.background_blocks
               if b not in plan.background_finished])


def _submit(client: Any, plan: Plan, blocks: list[tuple[int, int, int, bool]], digest: str,
            prefix: str, priority: int = 0) -> list[Any]:
    """One task per block of ``plan``, keyed ``prefix`` + block (:func:`_key_prefix`).

    ``priority``: earlier runs higher, so that workers take one run's blocks after another's
    (dask gives submissions within ``fifo_timeout`` of each other one priority, and then runs
    them in key order: the runs' blocks interleaved, each worker switching runs at every
    block)."""
    calib = plan.calibration
    # Only a decoy or shuffle null is fitted beside each block (a background null: beside
    # nothing, on its own blocks; the flank null: never).
    per_block = calib if calib is not None and calib.fitted in ("decoy", "shuffle") else None
    specs = [BlockSpec(block=b, start=s, stop=e,
                       regions_url=(plan.background_url or "") if bg else plan.regions_url,
                       out=str(plan.out), solver=plan.solver, device=str(plan.run.device),
                       run_id=plan.fingerprint, motifs_digest=digest,
                       calibration=calib if bg else per_block, background=bg)
             for b, s, e, bg in blocks]
    return client.map(process_block, specs, retries=plan.run.retries, priority=priority,
                      key=[f"{prefix}{'background-' if bg else ''}{b}"
                           for b, _, _, bg in blocks])


def _forget(fut: Any, o: RunOutcome, owners: dict[str, RunOutcome]) -> None:
    fut.release()
    o._in_flight.discard(fut)
    owners.pop(fut.key, None)


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


__all__ = ("MAX_BLOCKS_IN_FLIGHT", "RunOutcome", "cluster_has_gpus", "connected",
           "end_of_run", "execute", "prepare_cluster", "record_progress", "resume_fix",
           "warm_workers", "workers_gpu_batch", "written_so_far")
