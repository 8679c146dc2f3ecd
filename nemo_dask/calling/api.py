"""``call_hits``: the public entry point of the call-hits stage.

Data flow: the driver validates everything and loads the motifs (:mod:`.plan`), claims
``OUT`` (its lock, held to the end) and puts the regions store in place, gets a client
(the caller's, or an embedded cluster's) and asks it whether its workers have GPUs, plans the
blocks (ranges of regions aligned to the store's chunks) and prepares ``OUT``; then
:mod:`.execute` maps :func:`.task.process_block` over the blocks, one task per block. Each task
reads its own slice of the store and writes its own partitions; only small summaries come back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ..calibration.params import CalibrationParams
from ..dataset import read_motifs, scan_hits, scan_qc, write_motifs
from ..params import MotifParams, RunOptions, SolverParams
from ..storage.faults import (
    SPACE_FAULTS,
    StorageFaultError,
    fault_error,
    is_fault,
    is_unreachable,
    unreachable_error,
)
from ..storage.urls import is_url

if TYPE_CHECKING:
    from .plan import Checked, Plan

_SP, _MP, _CP = SolverParams, MotifParams, CalibrationParams


@dataclass
class CallHitsResult:
    """What :func:`call_hits` returns: where the dataset is, and lazy views of it.

    ``summaries`` has one dict per block solved by this call (skipped blocks have none): its
    ``block``, ``start``, ``stop``, ``hits``, ``regions``, ``timeouts``, ``failures``, the
    ``device`` and ``worker`` that solved it, seconds spent reading (``read_s``), in the
    solver (``solve_s``) and in all (``total_s``), and wall-clock ``started_at`` and
    ``solved_at`` (``time.time()`` on the worker).
    """

    out: Path
    hits: pl.LazyFrame
    qc: pl.LazyFrame
    motifs: pl.DataFrame
    n_blocks: int
    n_skipped: int
    n_hits: int
    elapsed_s: float
    summaries: list[dict[str, Any]] = field(default_factory=list, repr=False)


def call_hits(
    regions: str | os.PathLike[str],
    motifs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    client: Any = None,
    *,
    peaks: str | os.PathLike[str] | None = None,
    chrom_order: str | os.PathLike[str] | None = None,
    mode: str = _MP.mode,
    lambda_default: float = _MP.lambda_default,
    trim_threshold: float = _MP.trim_threshold,
    motifs_include: str | os.PathLike[str] | Sequence[str] | None = None,
    motif_names: str | os.PathLike[str] | Mapping[str, str] | None = None,
    motif_lambdas: str | os.PathLike[str] | Mapping[str, float] | None = None,
    trim_thresholds: str | os.PathLike[str] | Mapping[str, float] | None = None,
    trim_coords: str | os.PathLike[str] | Mapping[str, tuple[int, int]] | None = None,
    include_rc: bool = _MP.include_rc,
    step_size_max: float = _SP.step_size_max,
    step_size_min: float = _SP.step_size_min,
    sqrt_transform: bool = _SP.sqrt_transform,
    convergence_tol: float = _SP.convergence_tol,
    max_steps: int = _SP.max_steps,
    batch_size: int | None = _SP.batch_size,
    step_adjust: float = _SP.step_adjust,
    post_filter: bool = _SP.post_filter,
    eps: float = _SP.eps,
    compile_optimizer: bool = _SP.compile_optimizer,
    global_scale: float | None = _SP.global_scale,
    exact: bool = _SP.exact,
    check_every: int | None = _SP.check_every,
    block_size: int | None = None,
    device: str | None = None,
    retries: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    worker_wait: float | str | None = None,
    cluster: Any = None,
    annotate: str | os.PathLike[str] | None = None,
    match_options: Any = None,
    null: str | None = None,
    background: str | os.PathLike[str] | None = None,
    qvalue_score: str = _CP.score,
) -> CallHitsResult:
    """Call Fi-NeMo motif hits for every region, block by block, on a Dask cluster.

    Defaults: finemo 0.41's for its options (:class:`~nemo_dask.params.SolverParams`,
    :class:`~nemo_dask.params.MotifParams`); ``nemo_dask.call-hits`` in dask config
    (``nemo_dask.yaml``) for the run options, whose ``None`` means "from there".

    Parameters
    ----------
    regions : path or URL
        A regions store (see ``nemo-dask convert``) or finemo's ``regions.npz`` (converted to
        ``OUT/regions.zarr`` first, then read by the workers from there).
    motifs : path
        A tfmodisco-lite H5 file.
    out : path
        Output directory: ``hits/`` and ``qc/`` Parquet partitions, ``motifs.parquet``,
        ``motif_cwms.npy``, ``parameters.json`` and ``manifest.json``. Rerunning the same run
        into it resumes; a different run there is refused unless ``overwrite``.
    client : distributed.Client, optional
        A client of your cluster (LocalCluster, LocalCUDACluster, a jobqueue cluster, ...),
        left running. When omitted, an embedded cluster is made from ``cluster`` and closed.
    peaks, chrom_order : path, optional
        finemo's call-hits ``-p``/``-C``: a narrowPeak file (plain or compressed) whose rows give
        a regions.npz made without peaks its coordinates, and the chromosome order of
        ``chr_id``. Only with a regions.npz; a store gets coordinates when it is converted.
    mode : {"pp", "ph", "hp", "hh"}
        Motif matrix (p: CWM, h: hypothetical CWM) and contributions (p: projected,
        h: hypothetical), as finemo's ``-M``.
    lambda_default, trim_threshold, include_rc
        L1 penalty of every motif, the CWM trim threshold, and whether reverse complements
        are fitted (finemo's ``-l``, ``-t``).
    motifs_include, motif_names, motif_lambdas, trim_thresholds, trim_coords
        finemo's per-motif options, as objects (names; name -> new name, lambda, threshold,
        (start, end)) or as finemo's text files (``-I``, ``-N``, ``-L``, ``-T``, ``-R``).
    step_size_max, step_size_min, sqrt_transform, convergence_tol, max_steps, batch_size, \
step_adjust, post_filter, eps, compile_optimizer, exact, check_every
        The optimiser (:class:`~nemo_dask.params.SolverParams`); ``batch_size`` None means
        16 regions per torch thread on a CPU, on a GPU what half its free memory holds;
        ``exact`` keeps finemo's dense step on CPU (bit-identical iterates, slower);
        ``check_every`` None means a convergence check every step on CPU, every 10 on a GPU.
    global_scale : float, optional
        Divide every region's contributions by this fixed value instead of by its own RMS
        (finemo's ``global_scale``): for tiled stores, so that quiet background windows are not
        magnified into hits. :func:`nemo_dask.regions.scale.peak_scale` computes a percentile
        of the peak windows' own scales. None (default): finemo's per-region scale.
    block_size : int, optional
        Regions per task (one partition of each table). Default: computed (about 16 blocks of
        16..1024 regions on CPU; on GPU workers 4 solver batches, the batch being what their
        free GPU memory holds (8192 regions while no worker is up), in whole chunks).
    device : str, optional
        ``auto`` (each worker's GPU if it has one, else its CPU), ``cpu``, ``cuda`` or
        ``cuda:N``; resolved on each worker.
    retries : int, optional
        Retries of a failed task (default 2).
    overwrite : bool
        Replace the results of a different run in ``out``.
    progress : bool, optional
        A progress bar on stderr; default: when stderr is a terminal.
    worker_wait : float or str, optional
        Longest time without any connected worker before the run stops: seconds, or a time
        such as ``"2 hours"``. Default: wait as long as the batch system keeps the jobs queued;
        jobs it refuses or can never run stop the run within a minute either way.
    cluster : ClusterOptions, optional
        The embedded cluster, when no ``client`` is given (default: dask config
        ``nemo_dask.cluster``, a local CPU cluster).
    annotate : str or path, optional
        A motif database (``jaspar``, ``jaspar:RELEASE[:COLLECTION[:TAX_GROUP]]`` or a MEME
        file): each motif's best TOMTOM matches and its ``motif_label`` go into the motif table
        (:func:`nemo_dask.annotate` does the same for an existing run). The database is read
        before anything is written and the matches are made before the cluster starts.
    match_options : MatchOptions, optional
        k, q-value threshold, PPM conversion, window and background of the annotation
        (:class:`nemo_dask.MatchOptions`; dask config ``nemo_dask.annotate``).
    null : str, optional
        The null of the per-hit q-values (``hit_qvalue``; README "Calibrated hits"), computed
        beside finemo's fit, which they leave unchanged: ``flank`` (the default: the run's own
        hits in the outer part of the summit-centred windows; nothing is fitted), ``decoy``
        (decoy motifs fitted with the real ones), ``shuffle`` (the motifs on block-shuffled
        contributions), ``background`` (the motifs on ``background`` regions), the flank null
        joined with one of these by ``+`` (the larger FDR estimate of the two), or ``none``.
        Default: ``background`` when ``background`` is given, else ``flank``; on a tiled store
        (no summits) no q-values, with a warning.
    background : path, optional
        A regions store of background regions (e.g. GC-matched non-peak regions, converted
        with ``nemo-dask convert``, as wide as the regions): the background null's regions.
    qvalue_score : str
        What the q-value ranks: ``importance_sq`` (default), ``coefficient_global``,
        ``coefficient``, ``similarity`` or ``importance`` (the stored hit columns).

    Returns
    -------
    CallHitsResult
        The output directory, lazy scans of its hits (with ``hit_qvalue`` and ``motif_label``
        last) and QC, the motif table, block counts, the number of hits and one summary per
        block solved by this call.

    Raises
    ------
    InputError
        A file, array or parameter is unusable (the message names it and the fix); raised
        before anything is written to ``out`` and before a cluster starts.
    OutputExistsError
        ``out`` holds another run, or files that are not nemo_dask's, and ``overwrite`` is
        False.
    OutputLockedError
        Another run (alive) is writing into ``out``; its user, host, pid and start time are
        named.
    CorruptDataError
        A chunk of the regions store is missing or damaged (found by the first task that reads
        it; the run stops there), or ``out``'s dataset does not match its manifest.
    GpuUnavailableError
        ``cluster`` asks for GPUs this machine does not have.
    WorkersUnavailableError
        The batch system refused a worker job or says it can never run (the message quotes its
        reason), or ``worker_wait`` passed without a worker; the run's jobs are cancelled.
    WorkerMemoryError
        A worker was stopped at its memory limit while solving a block: raised at the first
        such death, saying what a block of that size needs and which option to change.
    StorageFaultError
        OUT (or the regions store) is on a full, read-only or unwritable file system: one line
        naming the file, its file system's free space, the blocks kept and the fix. Partitions
        are written whole, so the same call after the fault is fixed resumes.
    """
    from .execute import connected, execute, prepare_cluster, warm_workers
    from .plan import prepared_out

    t0 = time.perf_counter()
    if client is None:
        cluster = prepare_cluster(cluster)
    else:
        warm_workers(client)  # torch imported on your workers while the input is checked
    # A full or unwritable OUT met by the driver (the workers report theirs themselves): one
    # line naming the file, what OUT keeps and the fix (storage/faults.py).
    plan = None
    try:
        call = check_call(
            regions, motifs, out, peaks=peaks, chrom_order=chrom_order, mode=mode,
            lambda_default=lambda_default, trim_threshold=trim_threshold,
            motifs_include=motifs_include, motif_names=motif_names,
            motif_lambdas=motif_lambdas, trim_thresholds=trim_thresholds,
            trim_coords=trim_coords, include_rc=include_rc, step_size_max=step_size_max,
            step_size_min=step_size_min, sqrt_transform=sqrt_transform,
            convergence_tol=convergence_tol, max_steps=max_steps, batch_size=batch_size,
            step_adjust=step_adjust, post_filter=post_filter, eps=eps,
            compile_optimizer=compile_optimizer, global_scale=global_scale, exact=exact,
            check_every=check_every, block_size=block_size, device=device, retries=retries,
            overwrite=overwrite, progress=progress, worker_wait=worker_wait,
            annotate=annotate, match_options=match_options, null=null, background=background,
            qvalue_score=qvalue_score)
        # OUT is this run's (its lock held) from here to the end: no other run writes into it.
        with prepared_out(call.checked), connected(client, cluster) as cl:
            plan = plan_call(cl, call, cluster)
            [outcome] = execute(cl, [plan], embedded=client is None)
            if outcome.error is not None:
                raise outcome.error
            # checked against the manifest
            hits, qc = scan_hits(plan.out, labels=True), scan_qc(plan.out)
    except Exception as err:
        fault = driver_failure(err, out, regions, plan)
        if fault is None:
            raise
        raise fault from None
    return CallHitsResult(out=plan.out, hits=hits, qc=qc,
                          motifs=read_motifs(plan.out), n_blocks=len(plan.blocks),
                          n_skipped=plan.n_skipped, n_hits=outcome.n_hits,
                          elapsed_s=time.perf_counter() - t0, summaries=outcome.summaries)


@dataclass
class CheckedCall:
    """A run checked before anything is written or started (:func:`check_call`)."""

    checked: Checked
    #: The motif table with its TOMTOM matches (``annotate``), written into OUT once planned.
    annotation: Any = None


def check_call(
    regions: Any, motifs: Any, out: Any, *, peaks: Any = None, chrom_order: Any = None,
    mode: str = _MP.mode, lambda_default: float = _MP.lambda_default,
    trim_threshold: float = _MP.trim_threshold, motifs_include: Any = None,
    motif_names: Any = None, motif_lambdas: Any = None, trim_thresholds: Any = None,
    trim_coords: Any = None, include_rc: bool = _MP.include_rc,
    step_size_max: float = _SP.step_size_max, step_size_min: float = _SP.step_size_min,
    sqrt_transform: bool = _SP.sqrt_transform, convergence_tol: float = _SP.convergence_tol,
    max_steps: int = _SP.max_steps, batch_size: int | None = _SP.batch_size,
    step_adjust: float = _SP.step_adjust, post_filter: bool = _SP.post_filter,
    eps: float = _SP.eps, compile_optimizer: bool = _SP.compile_optimizer,
    global_scale: float | None = _SP.global_scale, exact: bool = _SP.exact,
    check_every: int | None = _SP.check_every, block_size: int | None = None,
    device: str | None = None, retries: int | None = None, overwrite: bool = False,
    progress: bool | None = None, worker_wait: float | str | None = None,
    annotate: Any = None, match_options: Any = None, null: str | None = None,
    background: Any = None, qvalue_score: str = _CP.score,
) -> CheckedCall:
    """Everything :func:`call_hits` checks before it writes anything or starts a cluster: the
    parameters, the motif database (``annotate``, read and matched), the inputs
    (:func:`~nemo_dask.calling.plan.validate`). The keywords are :func:`call_hits`'s.

    Raises
    ------
    InputError
        A file, array or parameter is unusable (one line naming it and the fix).
    OutputExistsError
        ``out`` is a file, device or FIFO.
    """
    from .plan import validate

    solver = SolverParams(
        step_size_max=step_size_max, step_size_min=step_size_min, sqrt_transform=sqrt_transform,
        convergence_tol=convergence_tol, max_steps=max_steps, batch_size=batch_size,
        step_adjust=step_adjust, post_filter=post_filter, eps=eps,
        compile_optimizer=compile_optimizer,
        use_hypothetical=MotifParams(mode=mode).use_hypothetical,  # (the mode's one check)
        global_scale=global_scale,
        exact=exact, check_every=check_every)
    run = RunOptions(block_size=block_size, device=device, retries=retries,
                     overwrite=overwrite, progress=progress,
                     worker_wait=worker_wait).resolved()
    database = None
    if annotate is not None:
        from ..matching.annotate import MatchOptions
        from ..matching.database import open_database

        match_options = (match_options or MatchOptions()).resolved()
        database = open_database(annotate)  # unreadable or empty: stop before writing anything
    checked = validate(regions, motifs, out, solver=solver, run=run, peaks=peaks,
                       chrom_order=chrom_order, mode=mode,
                       lambda_default=lambda_default, trim_threshold=trim_threshold,
                       motifs_include=motifs_include, motif_names=motif_names,
                       motif_lambdas=motif_lambdas, trim_thresholds=trim_thresholds,
                       trim_coords=trim_coords, include_rc=include_rc, null=null,
                       background=background, qvalue_score=qvalue_score)
    annotation = None
    if database is not None:
        from ..matching.annotate import annotated_table

        annotation = annotated_table(checked.motifs.table, checked.motifs.cwms,
                                     checked.motifs_path, database, match_options)
    return CheckedCall(checked=checked, annotation=annotation)


def plan_call(client: Any, call: CheckedCall, cluster: Any = None,
              gpus: dict[str, bool] | None = None, queue_regions: int | None = None) -> Plan:
    """Plan a checked run whose OUT is prepared (:func:`~nemo_dask.calling.plan.prepared_out`)
    on ``client``'s cluster: asks the workers whether they have GPUs (once per device setting
    when ``gpus`` caches the answers) and what batch their GPUs hold, lays out the blocks
    (sized for ``queue_regions`` when the run shares its queue) and writes the motif files
    (annotated, with ``annotate``) and ``parameters.json``."""
    from .execute import cluster_has_gpus, workers_gpu_batch
    from .plan import plan_run

    checked, solver, run = call.checked, call.checked.solver, call.checked.run
    cache = {} if gpus is None else gpus
    device = str(run.device)
    if device not in cache:
        cache[device] = cluster_has_gpus(client, run.device, cluster)
    has_gpus = cache[device]
    gpu_batch = (workers_gpu_batch(client, checked.motifs.n_motifs, checked.source.width,
                                   checked.motifs.width)
                 if has_gpus and run.block_size is None and solver.batch_size is None else None)
    plan = plan_run(checked, gpus=has_gpus,
                    gpu_batch=gpu_batch if gpu_batch is not None else solver.batch_size,
                    queue_regions=queue_regions)
    if call.annotation is not None:
        # After plan_run wrote the plain table; tasks read finemo's columns of it only.
        write_motifs(plan.out, *call.annotation)
    return plan


def driver_failure(err: BaseException, out: Any, regions: Any,
                   plan: Plan | None = None) -> StorageFaultError | None:
    """The one line for a storage fault the driver met while checking, preparing or ending a
    run (its workers report theirs themselves), or None when ``err`` is no such fault: a full,
    read-only or unwritable file system, or an object store that stopped answering, with what
    OUT keeps (``plan``: the run's finished blocks) and the fix."""
    from .ending import resume_fix, written_so_far

    if isinstance(err, StorageFaultError):
        if err.written is None and plan is not None:
            # Met by the driver's own writes (the q-value pass): what the run keeps.
            return err.with_written(written_so_far(plan), resume_fix(err, plan.out))
        return None  # already said in its one line
    if is_fault(err):
        return driver_fault(err, out)  # type: ignore[arg-type]
    if is_unreachable(err) and (is_url(out) or is_url(regions)):
        # The lock's heartbeat or the manifest may meet it first: what the run kept is
        # then still the blocks its tasks finished.
        fault = unreachable_error(err, out if is_url(out) else regions)
        if plan is None:
            return fault.with_written(kept_in(out))
        return fault.with_written(written_so_far(plan), resume_fix(fault, plan.out))
    return None


def driver_fault(err: OSError, out: str | os.PathLike[str]) -> StorageFaultError:
    """The one line for a storage fault the driver met: writing OUT, or reading an input."""
    from ..storage.urls import localize

    name = os.fspath(err.filename) if err.filename else os.fspath(localize(out))
    root = os.path.realpath(os.fspath(localize(out))) if not is_url(out) else os.fspath(out)
    in_out = os.path.realpath(name).startswith(root) if not is_url(name) else name.startswith(root)
    if in_out or err.errno in SPACE_FAULTS:
        return fault_error(err, name, kept_in(out))
    return fault_error(err, name, "no block was written", "make it readable for this user, "
                       "then run the same command again")


def kept_in(out: str | os.PathLike[str]) -> str:
    """What OUT keeps after a driver-side storage fault: its complete block partitions."""
    from ..dataset import QC_DIR
    from ..storage.urls import location

    if is_url(out):
        return "the blocks already written are kept; a rerun resumes from them"
    n = len(list((location(out) / QC_DIR).glob("part-*.parquet")))
    return (f"{n} complete block(s) are kept in {out}; a rerun resumes from them" if n else
            "no block was written")


__all__: Sequence[str] = ("CallHitsResult", "CheckedCall", "call_hits", "check_call",
                          "driver_failure", "plan_call")
