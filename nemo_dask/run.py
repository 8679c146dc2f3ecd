"""call-hits on a Dask cluster: plan blocks, submit them, track progress, resume.

Data flow: the driver validates everything and loads the motifs; it plans blocks (ranges of
regions aligned to the store's chunks) and maps :func:`nemo_dask.blocks.process_block` over
them, one task per block. The motifs go to OUT before any task is submitted and each task reads
them from there (once per worker process): nothing lives only in a worker's memory, so workers
may retire, be cancelled or die at any time. Each task reads its own slice of the store and
writes its own partitions; only small summaries come back.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import polars as pl

from .blocks import BlockSpec, motifs_digest, process_block
from .clusters.waiting import WorkerWait
from .dataset import (
    CWMS_FILE,
    PARAMS_FILE,
    read_json,
    read_motifs,
    remove_stale_temporaries,
    scan_hits,
    scan_qc,
    write_json_atomic,
    write_motifs,
)
from .errors import InputError
from .motifs import Motifs, load_motifs, read_mapping, read_names_list, read_trim_coords
from .params import MotifParams, SolverParams, field_names
from .resume import fingerprint, finished_blocks, prepare_out, write_manifest

_RUN_KEYS = ("block_size", "device", "overwrite", "progress", "retries", "worker_wait")


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
    **params: Any,
) -> CallHitsResult:
    """Call Fi-NeMo motif hits for every region of a store, block by block, on a Dask cluster.

    Parameters
    ----------
    regions
        A regions store (path or URL) or finemo's ``regions.npz`` (converted to
        ``OUT/regions.zarr`` first).
    motifs
        A tfmodisco-lite H5 file.
    out
        Output directory: ``hits/`` and ``qc/`` Parquet partitions, motif table, parameters and
        manifest. Rerunning into it resumes; a different run is refused unless ``overwrite``.
    client
        A ``distributed.Client`` (LocalCluster, LocalCUDACluster, a jobqueue cluster, ...). When
        omitted, an embedded cluster is made from ``cluster`` (a ClusterOptions) and closed.
    **params
        finemo's call-hits options with its names and defaults (``mode``, ``lambda_default``,
        ``trim_threshold``, ``motifs_include``, ``motif_names``, ``motif_lambdas``,
        ``trim_thresholds``, ``trim_coords`` — the last five as objects or as finemo's text
        files — and every :class:`~nemo_dask.params.SolverParams` field), plus ``block_size``
        (regions per task; default the store's chunk size), ``device`` ("auto", "cpu", "cuda"),
        ``overwrite``, ``progress``, ``retries``, ``cluster`` and ``worker_wait`` (seconds,
        or a time such as "2 hours", without any connected worker before the run stops with
        :class:`~nemo_dask.errors.WorkersUnavailableError`; default None: wait as long as the
        batch system keeps the jobs queued).

    Raises
    ------
    WorkersUnavailableError
        The batch system refused a worker job or says it can never run (the message quotes
        its reason), or ``worker_wait`` passed without a worker. The run's jobs are cancelled.
    """
    t0 = time.perf_counter()
    if client is None:
        from .clusters.options import ClusterOptions, resolve

        # Resolve (and validate) the cluster options before any work: a bad flag must fail
        # before the regions are converted.
        params["cluster"] = opts = resolve(params.get("cluster") or ClusterOptions())
        if opts.cluster == "local" and not opts.scheduler:
            from .clusters.local import prestart_workers

            prestart_workers()
    plan = _plan(regions, motifs, out, dict(params))
    with _client(client, params.get("cluster")) as cl:
        summaries = _execute(cl, plan, plan.run_opts)
    out_path = plan.out
    n_hits = sum(s["hits"] for s in plan.finished.values())
    return CallHitsResult(out=out_path, hits=scan_hits(out_path), qc=scan_qc(out_path),
                          motifs=read_motifs(out_path), n_blocks=len(plan.blocks),
                          n_skipped=plan.n_skipped, n_hits=n_hits,
                          elapsed_s=time.perf_counter() - t0, summaries=summaries)


@dataclass
class _Plan:
    out: Path
    regions_url: str
    motifs: Motifs
    motif_params: MotifParams
    solver: SolverParams
    blocks: list[tuple[int, int, int]]
    fingerprint: str
    run_opts: dict[str, Any]
    finished: dict[int, dict[str, Any]]
    n_skipped: int


def _plan(regions: Any, motifs_path: Any, out: Any, params: dict[str, Any]) -> _Plan:
    """Validate everything, prepare ``out`` and work out which blocks remain."""
    from .store import open_regions

    params_cluster = params.pop("cluster", None)
    unknown = set(params) - set(_RUN_KEYS) - set(field_names(SolverParams)) - set(
        field_names(MotifParams))
    if unknown:
        raise InputError(f"unknown call_hits parameter(s) {sorted(unknown)}")
    run_opts = {"block_size": None, "device": "auto", "overwrite": False, "progress": None,
                "retries": 2, "worker_wait": None}
    run_opts.update({k: params.pop(k) for k in _RUN_KEYS if k in params})
    run_opts["worker_wait"] = _worker_wait_seconds(run_opts["worker_wait"])
    files = _read_option_files(params)
    motif_params = MotifParams(**{k: params.pop(k) for k in field_names(MotifParams) if k in params})
    solver = SolverParams(**params)
    block_size = run_opts["block_size"]
    if block_size is not None and not (isinstance(block_size, int) and block_size >= 1):
        raise InputError(f"block_size must be an integer >= 1, got {block_size!r}")
    if not (isinstance(run_opts["retries"], int) and run_opts["retries"] >= 0):
        raise InputError(f"retries must be an integer >= 0, got {run_opts['retries']!r}")

    motifs = load_motifs(motifs_path, motif_params)
    out = Path(out).expanduser().absolute()
    source, npz_identity = _regions_source(regions)
    if npz_identity is None:
        store = open_regions(source)
        _check_compatible(store, motifs, motif_params, source)
        n_regions, chunk = store.n_regions, int(store.chunk_size)
    else:
        n_regions = _npz_n_regions(Path(source))
        chunk = _npz_chunk(n_regions)
    gpu = str(run_opts["device"]).startswith("cuda") or _cluster_has_gpus(params_cluster)
    block_size = block_size or default_block_size(n_regions, chunk, gpu)
    blocks = [(b, s, min(s + block_size, n_regions))
              for b, s in enumerate(range(0, n_regions, block_size))]
    identity = {
        "regions": npz_identity or {"url": source, "n_regions": store.n_regions,
                                    "width": store.width, "attrs": dict(store.attrs)},
        "mode": motif_params.mode,
        "solver": {k: v for k, v in vars(solver).items()
                   if k not in ("batch_size", "compile_optimizer")},
        "block_size": block_size,
    }
    run_fp = fingerprint(identity, motifs)
    if npz_identity is None:
        resuming = prepare_out(out, run_fp, identity, run_opts["overwrite"])
        out.mkdir(parents=True, exist_ok=True)
    else:
        # Convert (and validate) before touching OUT, so that bad input leaves nothing there.
        source, store = _regions_from_npz(source, out, chunk, run_fp)
        try:
            _check_compatible(store, motifs, motif_params, npz_identity["npz"])
            resuming = prepare_out(out, run_fp, identity, run_opts["overwrite"])
            out.mkdir(parents=True, exist_ok=True)
            source = _move_store(source, out)
        except BaseException:
            if Path(source).parent != out:
                shutil.rmtree(source, ignore_errors=True)
            raise
    remove_stale_temporaries(out)
    finemo_params = _finemo_parameters(regions, motifs_path, out, motif_params, solver, files,
                                       run_opts, store, motifs)
    finemo_params["nemo_dask"] = {
        "fingerprint": run_fp, "identity": identity, "regions_url": source,
        "block_size": block_size, "n_blocks": len(blocks), "eps": solver.eps,
        "batch_size_resolved": {"cpu_per_thread": solver.batch_size_for("cpu"),
                                "cuda": solver.batch_size_for("cuda")},
        "motif_options": {k: v for k, v in vars(motif_params).items()},
        "version": _version(),
    }
    if not resuming or not (out / PARAMS_FILE).exists():
        write_motifs(out, motifs.table)
        _save_npy(out / CWMS_FILE, motifs.cwms)
        write_json_atomic(finemo_params, out / PARAMS_FILE)
    else:
        _ensure_motifs_in_out(out, motifs)
    finished = finished_blocks(out, blocks) if resuming else {}
    write_manifest(out, run_fp, len(blocks), finished, complete=len(finished) == len(blocks))
    return _Plan(out=out, regions_url=source, motifs=motifs, motif_params=motif_params,
                 solver=solver, blocks=blocks, fingerprint=run_fp, run_opts=run_opts,
                 finished=finished, n_skipped=len(finished))


#: Most blocks submitted to the scheduler at once. More are submitted as blocks finish, so the
#: driver (which hosts the scheduler) holds task state for at most this many blocks however
#: many the run has; enough to keep thousands of worker threads busy.
MAX_BLOCKS_IN_FLIGHT = 4096


def _execute(client: Any, plan: _Plan, opts: dict[str, Any]) -> list[dict[str, Any]]:
    from distributed import as_completed

    todo = [b for b in plan.blocks if b[0] not in plan.finished]
    if not todo:
        return []
    digest = motifs_digest(plan.motifs)
    prefix = f"nemo-dask-{plan.fingerprint[:12]}-block-"

    def submit(blocks: list[tuple[int, int, int]]) -> list[Any]:
        specs = [BlockSpec(block=b, start=s, stop=e, regions_url=plan.regions_url,
                           out=str(plan.out), use_hypothetical=plan.motif_params.use_hypothetical,
                           solver=plan.solver, device=opts["device"], run_id=plan.fingerprint,
                           motifs_digest=digest) for b, s, e in blocks]
        return client.map(process_block, specs, retries=opts["retries"],
                          key=[f"{prefix}{b}" for b, _, _ in blocks])

    summaries: list[dict[str, Any]] = []
    n_regions = sum(e - s for _, s, e in todo)
    queued = iter(todo)
    in_flight: set[Any] = set()
    with _progress_bar(n_regions, opts["progress"]) as bar:
        wait = WorkerWait(client, worker_wait=opts["worker_wait"], status=bar.status)
        first = submit(list(itertools.islice(queued, MAX_BLOCKS_IN_FLIGHT)))
        in_flight.update(first)
        ac = as_completed(first)
        try:
            while not ac.is_empty():
                done = ac.next_batch(block=False)
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
                    summaries.append(summary)
                    plan.finished[summary["block"]] = {k: summary[k] for k in
                                                       ("start", "stop", "hits", "regions")}
                    bar.update(summary["regions"])
                more = list(itertools.islice(queued, len(done)))
                if more:
                    new = submit(more)
                    in_flight.update(new)
                    ac.update(new)
        except BaseException:
            client.cancel(list(in_flight))
            wait.cancel_jobs()
            raise
        finally:
            # The manifest is written once here and once when planning, never per block: the
            # partition files are the truth (resume reads them), so a crash loses nothing.
            write_manifest(plan.out, plan.fingerprint, len(plan.blocks), plan.finished,
                           complete=len(plan.finished) == len(plan.blocks))
    return summaries


@contextlib.contextmanager
def _client(client: Any, cluster_opts: Any) -> Iterator[Any]:
    """The caller's client, or one of an embedded cluster that is closed afterwards."""
    if client is not None:
        yield client
        return
    from .cluster import ClusterOptions, connect

    # A killed worker must not fail the run: its blocks are simply recomputed elsewhere.
    with dask.config.set({"distributed.scheduler.allowed-failures": 10}):
        with connect(cluster_opts or ClusterOptions()) as cl:
            yield cl


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


def _worker_wait_seconds(value: Any) -> float | None:
    """``worker_wait`` as seconds: a number, a dask time string ("10 minutes"), or None."""
    if value is None:
        return None
    from dask.utils import parse_timedelta

    try:
        seconds = float(parse_timedelta(value, default="seconds"))
    except (ValueError, TypeError, KeyError):
        raise InputError(f"worker_wait (--worker-wait) {value!r}: expected seconds or a time "
                         "such as '30 minutes'") from None
    if seconds <= 0:
        raise InputError(f"worker_wait (--worker-wait) must be positive, got {value!r}")
    return seconds


def _read_option_files(params: dict[str, Any]) -> dict[str, str | None]:
    """Replace finemo's option-file paths by their contents; returns the paths for the record."""
    readers = {"motifs_include": read_names_list, "motif_names": read_mapping,
               "motif_lambdas": lambda p: read_mapping(p, float),
               "trim_thresholds": lambda p: read_mapping(p, float),
               "trim_coords": read_trim_coords}
    files: dict[str, str | None] = {}
    for key, reader in readers.items():
        value = params.get(key)
        if isinstance(value, (str, os.PathLike)):
            files[key] = str(value)
            params[key] = reader(value)
        else:
            files[key] = None
            if key == "motifs_include" and value is not None:
                params[key] = tuple(value)
    return files


def _regions_source(regions: Any) -> tuple[str, dict[str, Any] | None]:
    text = os.fspath(regions)
    if text.endswith(".npz") and "://" not in text:
        path = Path(text).expanduser().absolute()
        if not path.is_file():
            raise InputError(f"regions file {path} does not exist; pass a regions store or "
                             "finemo's regions.npz with -r")
        st = path.stat()
        return str(path), {"npz": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if "://" not in text:
        text = str(Path(text).expanduser().absolute())
    return text, None


def _npz_chunk(n_regions: int) -> int:
    # 64 regions of L=1000 are 0.5 MB of float16 contributions: small enough for load balance
    # on a few hundred regions, large enough that reads stay efficient.
    return max(1, min(64, n_regions))


def default_block_size(n_regions: int, chunk: int, gpu: bool) -> int:
    """Regions per task when the user does not say.

    On CPU about 16 blocks (at least 16, at most 1024 regions each) so that every worker gets
    several and the last ones finish together; on GPUs blocks of ~8192 regions, several solver
    batches, to keep the device busy. Rounded to whole chunks when larger than a chunk (smaller
    blocks share a chunk's read, which costs little beside solving).
    """
    target = 8192 if gpu else min(1024, max(16, -(-n_regions // 16)))
    if target >= chunk:
        target = max(chunk, round(target / chunk) * chunk)
    return max(1, min(target, n_regions))


def _cluster_has_gpus(cluster: Any) -> bool:
    kind = getattr(cluster, "cluster", None)
    if kind == "cuda":
        return True
    return kind in ("slurm", "pbs", "lsf", "sge") and bool(getattr(cluster, "gpus_per_job", 1))


def _npz_n_regions(path: Path) -> int:
    """Number of regions of a regions.npz, read from an array header (no data is loaded)."""
    try:
        with zipfile.ZipFile(path) as z, z.open("sequences.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape = reader(f)[0]
    except KeyError:
        raise InputError(f"{path} has no 'sequences' array: is it finemo's regions.npz "
                         "(from `finemo extract-regions-*`)?") from None
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise InputError(f"{path} is not a readable .npz file ({err}); is it truncated?") from None
    if len(shape) != 3:
        raise InputError(f"{path}: 'sequences' has shape {shape}, expected (N, 4, L)")
    return int(shape[0])


def _regions_from_npz(npz: str, out: Path, chunk: int, run_fp: str) -> tuple[str, Any]:
    """The store for a regions.npz: OUT/regions.zarr of the same run, or a fresh conversion
    into a temporary directory beside OUT (moved in by :func:`_move_store`)."""
    from .convert.npz import convert_npz
    from .store import open_regions

    existing = out / "regions.zarr"
    params_path = out / PARAMS_FILE
    if existing.exists() and params_path.exists():
        with contextlib.suppress(OSError, ValueError, InputError):
            if read_json(params_path).get("nemo_dask", {}).get("fingerprint") == run_fp:
                return str(existing), open_regions(str(existing))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.regions-{uuid.uuid4().hex[:8]}.zarr"
    try:
        store = convert_npz(npz, str(tmp), chunk_size=chunk, overwrite=True, progress=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(tmp), store


def _move_store(source: str, out: Path) -> str:
    target = out / "regions.zarr"
    if Path(source) != target:
        if target.exists():
            shutil.rmtree(target)
        os.replace(source, target)
    return str(target)


def _check_compatible(store: Any, motifs: Motifs, mp: MotifParams, source: str) -> None:
    if store.width % 2:
        raise InputError(f"{source}: region width {store.width} is odd; finemo needs an even "
                         "width (re-extract with an even -w)")
    if store.width < motifs.width:
        raise InputError(f"{source}: regions are {store.width} bp wide, narrower than the "
                         f"untrimmed motifs ({motifs.width} bp); use wider regions")
    if mp.use_hypothetical and store.contrib_kind != "hypothetical":
        raise InputError(f"{source} holds projected contributions only, but mode {mp.mode!r} "
                         "fits hypothetical ones; use mode pp or hp, or convert hypothetical "
                         "contributions")


def _finemo_parameters(regions: Any, motifs_path: Any, out: Path, mp: MotifParams,
                       solver: SolverParams, files: Mapping[str, str | None],
                       run_opts: Mapping[str, Any], store: Any, motifs: Motifs) -> dict[str, Any]:
    """finemo's parameters.json keys, in its order and with its meanings."""
    return {
        "regions_path": os.fspath(regions), "peaks_path": None,
        "modisco_h5_path": os.fspath(motifs_path), "chrom_order_path": None,
        "motifs_include_path": files["motifs_include"], "motif_names_path": files["motif_names"],
        "motif_lambdas_path": files["motif_lambdas"], "out_dir": str(out),
        "cwm_trim_coords_path": files["trim_coords"],
        "cwm_trim_thresholds_path": files["trim_thresholds"],
        "cwm_trim_threshold_default": mp.trim_threshold, "lambda_default": mp.lambda_default,
        "step_size_max": solver.step_size_max, "step_size_min": solver.step_size_min,
        "sqrt_transform": solver.sqrt_transform, "convergence_tol": solver.convergence_tol,
        "max_steps": solver.max_steps, "batch_size": solver.batch_size,
        "step_adjust": solver.step_adjust,
        "device": None if run_opts["device"] == "auto" else run_opts["device"],
        "mode": mp.mode, "no_post_filter": not solver.post_filter,
        "compile_optimizer": solver.compile_optimizer, "region_width": store.width,
        "num_regions": store.n_regions, "untrimmed_motif_width": motifs.width,
        "num_motifs": motifs.n_motifs,
    }


def _ensure_motifs_in_out(out: Path, motifs: Motifs) -> None:
    """Rewrite the motif files of a resumed run unless they hold exactly ``motifs``: the tasks
    read their motifs from there (:func:`nemo_dask.blocks.motifs_from_out`)."""
    from .blocks import motifs_from_out

    try:
        motifs_from_out(str(out), motifs_digest(motifs))
    except (InputError, OSError, ValueError):
        write_motifs(out, motifs.table)
        _save_npy(out / CWMS_FILE, motifs.cwms)


def _save_npy(path: Path, array: Any) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nemo_dask")
    except PackageNotFoundError:
        return "unknown"


__all__: Sequence[str] = ("CallHitsResult", "call_hits")
