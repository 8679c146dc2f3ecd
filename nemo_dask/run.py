"""call-hits on a Dask cluster: plan blocks, submit them, track progress, resume.

Data flow: the driver validates everything and loads the motifs; it plans blocks (ranges of
regions aligned to the store's chunks) and maps :func:`nemo_dask.blocks.process_block` over
them, one task per block, with the motifs scattered once to every worker. Each task reads its
own slice of the store and writes its own partitions; only small summaries come back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import polars as pl

from ._io import (
    make_output_dir,
    open_output,
    output_dir,
    replace_directory,
    temporary_name,
    version,
    write_json,
)
from .blocks import BlockSpec, process_block
from .dataset import (
    CWMS_FILE,
    PARAMS_FILE,
    read_json,
    read_motifs,
    remove_stale_temporaries,
    scan_hits,
    scan_qc,
    write_motifs,
)
from .errors import InputError
from .motifs import Motifs, load_motifs, read_mapping, read_names_list, read_trim_coords
from .params import MotifParams, SolverParams, field_names
from .resume import fingerprint, finished_blocks, motifs_digest, prepare_out, write_manifest

_RUN_KEYS = ("block_size", "device", "overwrite", "progress", "retries")
#: finemo's call-hits inputs besides regions and motifs (coordinates given at call time).
_INPUT_KEYS = ("peaks", "chrom_order")
#: Store attributes that say where the inputs were or when the store was made, not what it holds.
_VOLATILE_ATTRS = ("created_at", "created_by", "source")


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
        ``overwrite``, ``progress``, ``retries`` and ``cluster``.
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
    inputs = {k: params.pop(k, None) for k in _INPUT_KEYS}
    unknown = set(params) - set(_RUN_KEYS) - set(field_names(SolverParams)) - set(
        field_names(MotifParams))
    if unknown:
        raise InputError(f"unknown call_hits parameter(s) {sorted(unknown)}")
    run_opts = {"block_size": None, "device": "auto", "overwrite": False, "progress": None,
                "retries": 2}
    run_opts.update({k: params.pop(k) for k in _RUN_KEYS if k in params})
    files = _read_option_files(params)
    motif_params = MotifParams(**{k: params.pop(k) for k in field_names(MotifParams) if k in params})
    solver = SolverParams(**params)
    block_size = run_opts["block_size"]
    if block_size is not None and not (isinstance(block_size, int) and block_size >= 1):
        raise InputError(f"block_size must be an integer >= 1, got {block_size!r}")
    if not (isinstance(run_opts["retries"], int) and run_opts["retries"] >= 0):
        raise InputError(f"retries must be an integer >= 0, got {run_opts['retries']!r}")

    motifs = load_motifs(motifs_path, motif_params)
    # A file, device, FIFO or - at OUT is refused before any work (also before an npz conversion).
    output_dir(out, "call-hits output directory")
    out = Path(out).expanduser().absolute()
    source, npz_identity = _regions_source(regions)
    peaks_identity = _check_peaks_option(inputs, npz_identity is not None)
    if npz_identity is None:
        store = open_regions(source)
        _check_compatible(store, motifs, motif_params, source)
        n_regions, chunk = store.n_regions, int(store.chunk_size)
        regions_identity = _store_identity(store)
        has_coordinates = store.has_peaks
    else:
        n_regions = _npz_n_regions(Path(source))
        chunk = _npz_chunk(n_regions)
        regions_identity = npz_identity
        has_coordinates = npz_identity["has_coordinates"] or peaks_identity is not None
    identity = _jsonable({
        "regions": regions_identity,
        "peaks": peaks_identity,
        "mode": motif_params.mode,
        "motif_options": _jsonable(vars(motif_params)),
        "motifs": motifs_digest(motifs),
        "solver": {k: v for k, v in vars(solver).items()
                   if k not in ("batch_size", "compile_optimizer")},
    })
    run_fp = fingerprint(identity)
    # A resume keeps OUT's block layout (its finished partitions are numbered by it), whatever
    # this node's default (GPU nodes default to larger blocks than CPU nodes).
    recorded = _recorded_block_size(out, run_fp)
    if recorded is not None and block_size not in (None, recorded):
        warnings.warn(f"{out} holds a run with --block-size {recorded}; resuming it with that "
                      f"layout (--block-size {block_size} ignored; pass --overwrite to start "
                      "again with the new one)", stacklevel=3)
        block_size = recorded
    if block_size is None:
        gpu = str(run_opts["device"]).startswith("cuda") or _cluster_has_gpus(params_cluster)
        block_size = recorded or default_block_size(n_regions, chunk, gpu)
    blocks = [(b, s, min(s + block_size, n_regions))
              for b, s in enumerate(range(0, n_regions, block_size))]
    if not has_coordinates:
        # finemo's call-hits warns the same way (once) for regions without coordinates.
        warnings.warn("No peak region data provided: the regions have no genomic coordinates, "
                      "so hits have chr NA and region-relative positions; pass -p "
                      "peaks.narrowPeak [-C chrom_order.txt] to give them", stacklevel=3)
    if npz_identity is None:
        resuming = prepare_out(out, run_fp, identity, run_opts["overwrite"])
        make_output_dir(out, "call-hits output directory")
    else:
        # Convert (and validate) before touching OUT, so that bad input leaves nothing there.
        source, store = _regions_from_npz(source, out, chunk, run_fp, inputs)
        try:
            _check_compatible(store, motifs, motif_params, source)
            resuming = prepare_out(out, run_fp, identity, run_opts["overwrite"])
            make_output_dir(out, "call-hits output directory")
            source = _move_store(source, out)
        except BaseException:
            if Path(source).parent != out:
                shutil.rmtree(source, ignore_errors=True)
            raise
    remove_stale_temporaries(out)
    finemo_params = _finemo_parameters(regions, motifs_path, out, motif_params, solver, files,
                                       run_opts, store, motifs, inputs)
    finemo_params["nemo_dask"] = {
        "fingerprint": run_fp, "identity": identity, "regions_url": source,
        "block_size": block_size, "n_blocks": len(blocks), "eps": solver.eps,
        "batch_size_resolved": {"cpu_per_thread": solver.batch_size_for("cpu"),
                                "cuda": solver.batch_size_for("cuda")},
        "motif_options": {k: v for k, v in vars(motif_params).items()},
        "version": version(),
    }
    if not resuming or not (out / PARAMS_FILE).exists():
        write_motifs(out, motifs.table)
        _save_npy(out / CWMS_FILE, motifs.cwms)
        write_json(finemo_params, out / PARAMS_FILE)
    finished = finished_blocks(out, blocks) if resuming else {}
    write_manifest(out, run_fp, len(blocks), finished, complete=len(finished) == len(blocks))
    return _Plan(out=out, regions_url=source, motifs=motifs, motif_params=motif_params,
                 solver=solver, blocks=blocks, fingerprint=run_fp, run_opts=run_opts,
                 finished=finished, n_skipped=len(finished))


def _execute(client: Any, plan: _Plan, opts: dict[str, Any]) -> list[dict[str, Any]]:
    from distributed import as_completed

    todo = [b for b in plan.blocks if b[0] not in plan.finished]
    if not todo:
        return []
    specs = [BlockSpec(block=b, start=s, stop=e, regions_url=plan.regions_url, out=str(plan.out),
                       use_hypothetical=plan.motif_params.use_hypothetical, solver=plan.solver,
                       device=opts["device"], run_id=plan.fingerprint) for b, s, e in todo]
    motifs_future = client.scatter(plan.motifs, broadcast=True, hash=False)
    futures = client.map(process_block, specs, motifs=motifs_future, retries=opts["retries"],
                         key=[f"nemo-dask-{plan.fingerprint[:12]}-block-{s.block}" for s in specs])
    summaries: list[dict[str, Any]] = []
    n_regions = sum(e - s for _, s, e in todo)
    last_write = time.monotonic()
    with _progress_bar(n_regions, opts["progress"]) as bar:
        try:
            for fut in as_completed(futures):
                summary = fut.result()
                fut.release()
                summaries.append(summary)
                plan.finished[summary["block"]] = {k: summary[k] for k in
                                                   ("start", "stop", "hits", "regions")}
                bar.update(summary["regions"])
                if time.monotonic() - last_write > 2.0:
                    write_manifest(plan.out, plan.fingerprint, len(plan.blocks), plan.finished,
                                   complete=False)
                    last_write = time.monotonic()
        finally:
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
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool | None) -> Iterator[Any]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="regions", desc="call-hits", dynamic_ncols=True) as bar:
        yield bar


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
    """Where the regions are, and for a regions.npz its identity (content, not path)."""
    from .store import local_path

    text = os.fspath(regions)
    local = local_path(text)
    if local is not None and local.name.endswith(".npz"):
        if not local.is_file():
            raise InputError(f"regions file {local} does not exist; pass a regions store or "
                             "finemo's regions.npz with -r")
        return str(local), _npz_identity(local)
    if local is not None:
        return str(local), None
    return text, None


def _npz_identity(path: Path) -> dict[str, Any]:
    """A regions.npz's content fingerprint: every member's name, size and CRC-32 (of the
    uncompressed data, kept in the zip directory), so that a copy, a touch or another spelling
    of the path is the same input, and any change of an array is another."""
    try:
        with zipfile.ZipFile(path) as z:
            members = sorted((i.filename, i.file_size, i.CRC) for i in z.infolist())
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{path} is not a readable .npz file ({err}); is it truncated?") from None
    digest = hashlib.sha256(json.dumps(members).encode()).hexdigest()
    return {"content": digest, "has_coordinates": any(m[0] == "chr.npy" for m in members)}


def _store_identity(store: Any) -> dict[str, Any]:
    """A store's content fingerprint: the ``content_sha256`` its conversion recorded (stores
    written before it existed: their attributes, without the paths and times of their making)."""
    attrs = dict(store.attrs)
    if attrs.get("content_sha256"):
        return {"content": attrs["content_sha256"], "n_regions": store.n_regions,
                "width": store.width}
    kept = {k: v for k, v in attrs.items() if k not in _VOLATILE_ATTRS}
    return {"attrs": _jsonable(kept), "n_regions": store.n_regions, "width": store.width}


def _check_peaks_option(inputs: dict[str, Any], is_npz: bool) -> dict[str, Any] | None:
    """Validate -p/-C; the identity of the peaks given, or None."""
    peaks, order = inputs["peaks"], inputs["chrom_order"]
    if peaks is None:
        if order is not None:
            raise InputError(f"{order}: a chromosome order (-C) needs a peaks file (-p)")
        return None
    if not is_npz:
        raise InputError(f"{peaks}: -p gives coordinates to a regions.npz, as finemo's "
                         "call-hits does; a regions store gets them when it is made: convert "
                         "again with `nemo-dask convert <format> ... -p PEAKS [-C ORDER]`")
    from .convert._peaks import NarrowPeaks

    table = NarrowPeaks(peaks, order, 0)
    table.close()
    return {"content": table.content_sha256, "n_rows": table.n_rows}


def _recorded_block_size(out: Path, run_fp: str) -> int | None:
    """The block size of the run in ``out`` when it has this fingerprint (a resume)."""
    try:
        recorded = read_json(out / PARAMS_FILE).get("nemo_dask", {})
    except (OSError, ValueError, AttributeError):
        return None
    size = recorded.get("block_size")
    if recorded.get("fingerprint") == run_fp and isinstance(size, int) and size >= 1:
        return size
    return None


def _jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists), so identities compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


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


def _regions_from_npz(npz: str, out: Path, chunk: int, run_fp: str,
                      inputs: Mapping[str, Any]) -> tuple[str, Any]:
    """The store for a regions.npz: OUT/regions.zarr of the same run, or a fresh conversion
    into a temporary directory beside OUT, or beside its target when OUT is a symlink (moved in
    by :func:`_move_store`)."""
    from .convert.npz import convert_npz
    from .store import open_regions

    existing = out / "regions.zarr"
    params_path = out / PARAMS_FILE
    if existing.exists() and params_path.exists():
        with contextlib.suppress(OSError, ValueError, InputError):
            if read_json(params_path).get("nemo_dask", {}).get("fingerprint") == run_fp:
                return str(existing), open_regions(str(existing))
    real = output_dir(out, "call-hits output directory")
    real.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, and not ending in .zarr: a glob of the parent never takes it for a store.
    tmp = real.parent / temporary_name(f"{real.name}.regions.zarr")
    try:
        store = convert_npz(npz, str(tmp), peaks=inputs["peaks"],
                            chrom_order=inputs["chrom_order"], chunk_size=chunk, overwrite=True,
                            progress=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(tmp), store


def _move_store(source: str, out: Path) -> str:
    target = out / "regions.zarr"
    if Path(source) != target:
        # A store of this same run that did not open: ours; a link or device there is refused.
        replace_directory(source, target, None, "regions store")
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
                       run_opts: Mapping[str, Any], store: Any, motifs: Motifs,
                       inputs: Mapping[str, Any]) -> dict[str, Any]:
    """finemo's parameters.json keys, in its order and with its meanings."""
    peaks, order = inputs["peaks"], inputs["chrom_order"]
    return {
        "regions_path": os.fspath(regions),
        "peaks_path": None if peaks is None else os.fspath(peaks),
        "modisco_h5_path": os.fspath(motifs_path),
        "chrom_order_path": None if order is None else os.fspath(order),
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


def _save_npy(path: Path, array: Any) -> None:
    with open_output(path, "wb", what="motif CWM array") as f:
        np.save(f, array)


__all__: Sequence[str] = ("CallHitsResult", "call_hits")
