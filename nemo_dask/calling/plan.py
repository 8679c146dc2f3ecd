"""Plan a call-hits run: validate everything, convert an npz, prepare OUT, lay out the blocks.

:func:`validate` runs before any cluster starts: it checks every input (writing nothing to
``OUT`` until they all pass; a regions.npz is converted into a temporary store beside it),
then checks ``OUT`` against this run (resume, refuse, or overwrite) and moves the store in.
:func:`plan_run` then, knowing whether the workers have GPUs, sizes the blocks (a resume keeps
``OUT``'s layout) and writes the motif table, ``motif_cwms.npy`` and ``parameters.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import version
from ..calibration.params import CalibrationParams
from ..dataset import (
    CWMS_FILE,
    PARAMS_FILE,
    read_json,
    remove_stale_temporaries,
    write_manifest,
    write_motifs,
)
from ..errors import InputError
from ..motifs import (
    Motifs,
    load_motifs,
    motifs_digest,
    read_mapping,
    read_names_list,
    read_trim_coords,
)
from ..params import MotifParams, RunOptions, SolverParams
from ..regions.npz import NpzRegions
from ..regions.source import open_regions
from ..regions.store import Regions
from ..storage.outputs import (
    make_output_dir,
    open_output,
    output_dir,
    replace_directory,
    write_json,
)
from ..storage.temporary import temporary_name
from ..storage.urls import is_url, location, recorded_path
from .output import fingerprint, finished_blocks, prepare_out
from .seams import check_tiling

#: Store attributes that say where the inputs were or when the store was made, not what it holds.
_VOLATILE_ATTRS = ("created_at", "created_by", "source")


@dataclass
class Checked:
    """A validated run whose ``OUT`` is ready, before the cluster is asked about GPUs (see
    :func:`validate`).

    ``regions_url`` is the regions store the workers read: the caller's, or an npz converted
    into ``OUT/regions.zarr``. ``resuming`` says whether ``OUT`` holds this same run already.
    """

    regions: Any
    motifs_path: Any
    out: Path
    motifs: Motifs
    motif_params: MotifParams
    solver: SolverParams
    run: RunOptions
    files: dict[str, str | None]
    store: Regions
    inputs: dict[str, Any]
    identity: dict[str, Any]
    fingerprint: str
    resuming: bool
    regions_url: str
    calibration: CalibrationParams | None = None
    background: Regions | None = None  # the background null's regions store


@dataclass
class Plan:
    """A planned run: the blocks still to solve and what every task needs besides them."""

    out: Path
    regions_url: str
    motifs: Motifs
    solver: SolverParams
    run: RunOptions
    blocks: list[tuple[int, int, int]]
    fingerprint: str
    finished: dict[int, dict[str, Any]]
    n_skipped: int
    # Calibrated runs (nemo_dask.calibration): the null, and for a background null the
    # background store's blocks (solved for null hits only) and those already finished.
    calibration: CalibrationParams | None = None
    background_url: str | None = None
    background_blocks: list[tuple[int, int, int]] = field(default_factory=list)
    background_finished: set[int] = field(default_factory=set)


def validate(regions: Any, motifs_path: Any, out: Any, *, solver: SolverParams,
             run: RunOptions, peaks: Any = None, chrom_order: Any = None,
             calibration: CalibrationParams | None = None,
             **motif_options: Any) -> Checked:
    """Check every input and parameter, load the motifs, open (or convert) the regions.

    ``peaks`` and ``chrom_order`` (finemo's call-hits ``-p``/``-C``) give a regions.npz
    without coordinates its genomic coordinates, as finemo does.

    Then checks ``out`` against this run (resume, refuse, or with ``run.overwrite`` remove the
    other run's files) and moves a converted store into it: all before any cluster starts.

    Raises
    ------
    InputError
        One clear line; nothing is written to ``out``.
    OutputExistsError
        ``out`` holds a different run (the message says which input changed and how), or
        things that are not nemo_dask's, and ``run.overwrite`` is off.
    """
    inputs = {"peaks": peaks, "chrom_order": chrom_order}
    files = _read_option_files(motif_options)
    motif_params = MotifParams(**motif_options)
    motifs = load_motifs(motifs_path, motif_params)
    # A file, device, FIFO or - at OUT is refused before any work (also before an npz conversion).
    output_dir(out, "call-hits output directory")
    # A local Path, or a UPath for an fsspec URL (s3://...): every OUT file goes through
    # nemo_dask.storage, which writes an object store's objects whole, one request each.
    out = location(out)
    source = open_regions(regions)
    peaks_identity = _check_peaks_option(inputs, isinstance(source, NpzRegions))
    _check_compatible(source, motifs, motif_params, source.url)
    check_tiling(source, motifs.width, source.url)
    background = None
    if calibration is not None and calibration.background is not None:
        from ..regions.store import open_store

        background = open_store(calibration.background)
        _check_compatible(background, motifs, motif_params, background.url)
        check_tiling(background, motifs.width, background.url)
    temporary = None
    if isinstance(source, NpzRegions):
        identity = _npz_identity(source.path)
        has_coordinates = identity["has_coordinates"] or peaks_identity is not None
        # Workers read a store: the npz is converted (once; a rerun reuses OUT/regions.zarr).
        # (Not with overwrite: OUT's files, its store included, may be about to go.)
        store = None if run.overwrite else _reuse_store(out, identity, peaks_identity)
        if store is None and is_url(out):
            # No rename on object stores: convert straight to OUT/regions.zarr (its complete
            # mark is written last, so a killed conversion is redone, never trusted).
            store = _convert_into(source.path, out, _npz_chunk(source.n_regions), inputs)
        elif store is None:
            store = _convert(source.path, out, _npz_chunk(source.n_regions), inputs)
            temporary = Path(store.url)
    else:
        store = source
        identity = _store_identity(store)
        has_coordinates = store.has_peaks
    if not has_coordinates:
        # finemo's call-hits warns the same way (once) for regions without coordinates.
        warnings.warn("No peak region data provided: the regions have no genomic coordinates, "
                      "so hits have chr NA and region-relative positions; pass -p "
                      "peaks.narrowPeak [-C chrom_order.txt] to give them", stacklevel=3)
    # What determines the hits, and nothing else (calling/output.py says why).
    run_identity = _jsonable({
        "regions": identity,
        "peaks": peaks_identity,
        "mode": motif_params.mode,
        "motif_options": _jsonable(vars(motif_params)),
        "motifs": motifs_digest(motifs),
        # The mode is recorded once, above; batch size, compilation and how often convergence
        # is checked change no hit. (global_scale only when set, so that runs made before it
        # existed still resume.)
        "solver": {k: v for k, v in vars(solver).items()
                   if k not in ("batch_size", "compile_optimizer", "mode", "check_every")
                   and not (k == "global_scale" and v is None)},
    })
    if calibration is not None:
        # The q-values' null (only when asked for: uncalibrated runs keep their identity).
        run_identity["calibration"] = _jsonable(
            calibration.identity()
            | ({"background": _store_identity(background)} if background is not None else {}))
    run_fp = fingerprint(run_identity)
    try:
        resuming = prepare_out(out, run_fp, run_identity, run.overwrite)
        make_output_dir(out, "call-hits output directory")
        regions_url = _move_store(store.url, out) if temporary is not None else store.url
    finally:
        if temporary is not None and temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return Checked(regions=regions, motifs_path=motifs_path, out=out, motifs=motifs,
                   motif_params=motif_params, solver=solver, run=run, files=files, store=store,
                   inputs=inputs, identity=run_identity, fingerprint=run_fp, resuming=resuming,
                   regions_url=regions_url, calibration=calibration, background=background)


def plan_run(c: Checked, gpus: bool, gpu_batch: int | None = None) -> Plan:
    """Lay out the blocks (GPU-sized when ``gpus``; a resume keeps OUT's layout), write the
    motif files and ``parameters.json``, and find the finished blocks."""
    store, out, run = c.store, c.out, c.run
    n_regions = store.n_regions
    identity, run_fp, resuming, source = c.identity, c.fingerprint, c.resuming, c.regions_url
    # A resume keeps OUT's block layout (its finished partitions are numbered by it), whatever
    # this node's default (GPU nodes default to larger blocks than CPU nodes).
    block_size = run.block_size
    recorded = _recorded_block_size(out, run_fp)
    if recorded is not None and block_size not in (None, recorded):
        warnings.warn(f"{out} holds a run with --block-size {recorded}; resuming it with that "
                      f"layout (--block-size {block_size} ignored; pass --overwrite to start "
                      "again with the new one)", stacklevel=3)
        block_size = recorded
    if block_size is None:
        block_size = recorded or default_block_size(n_regions, int(store.chunk_size), gpus,
                                                    gpu_batch)
    blocks = [(b, s, min(s + block_size, n_regions))
              for b, s in enumerate(range(0, n_regions, block_size))]
    remove_stale_temporaries(out)
    finemo_params = _finemo_parameters(c, store)
    finemo_params["nemo_dask"] = {
        "fingerprint": run_fp, "identity": identity, "regions_url": source,
        "block_size": block_size, "n_blocks": len(blocks), "eps": c.solver.eps,
        "exact": c.solver.exact, "check_every": c.solver.check_every,
        "batch_size_resolved": {"cpu_per_thread": c.solver.batch_size_for("cpu"),
                                "cuda": c.solver.batch_size_for("cuda")},
        "motif_options": {k: v for k, v in vars(c.motif_params).items()},
        "version": version(),
    }
    background_blocks: list[tuple[int, int, int]] = []
    if c.calibration is not None:
        from ..calibration.assign import calibration_record

        finemo_params["nemo_dask"]["calibration"] = calibration_record(c.motifs, c.calibration)
        if c.background is not None:
            n_bg = c.background.n_regions
            background_blocks = [(b, s, min(s + block_size, n_bg))
                                 for b, s in enumerate(range(0, n_bg, block_size))]
    if not resuming or not (out / PARAMS_FILE).exists():
        write_motifs(out, c.motifs.table)
        _save_npy(out / CWMS_FILE, c.motifs.cwms)
        write_json(finemo_params, out / PARAMS_FILE)
    else:
        _ensure_motifs_in_out(out, c.motifs)
    # Decoy and shuffle nulls: a block is finished only with its null partition too.
    per_block_null = c.calibration is not None and c.calibration.null != "background"
    finished = (finished_blocks(out, blocks, null=per_block_null) if resuming else {})
    bg_finished = set()
    if resuming and background_blocks:
        from ..calibration.assign import finished_background

        bg_finished = finished_background(out, background_blocks)
    write_manifest(out, run_fp, len(blocks), finished, complete=len(finished) == len(blocks))
    return Plan(out=out, regions_url=source, motifs=c.motifs, solver=c.solver, run=run,
                blocks=blocks, fingerprint=run_fp, finished=finished, n_skipped=len(finished),
                calibration=c.calibration,
                background_url=c.background.url if c.background is not None else None,
                background_blocks=background_blocks, background_finished=bg_finished)


#: Solver batches per block on a GPU: the next block's regions fill the slots a block's slow
#: tail leaves free (solver.stream), and a few batches per task keep reads off the GPU's path.
GPU_BATCHES_PER_BLOCK = 4


def default_block_size(n_regions: int, chunk: int, gpu: bool,
                       gpu_batch: int | None = None) -> int:
    """Regions per task when the user does not say.

    On CPU about 16 blocks (at least 16, at most 1024 regions each) so that every worker gets
    several and the last ones finish together. On GPUs :data:`GPU_BATCHES_PER_BLOCK` solver
    batches, ``gpu_batch`` being the batch the workers' free GPU memory holds
    (:func:`nemo_dask.calling.execute.workers_gpu_batch`), or 8192 regions when no worker could
    say (jobs still queued). Rounded to whole chunks when larger than a chunk (smaller blocks
    share a chunk's read, which costs little beside solving).
    """
    if gpu:
        target = GPU_BATCHES_PER_BLOCK * gpu_batch if gpu_batch else 8192
    else:
        target = min(1024, max(16, -(-n_regions // 16)))
    if target >= chunk:
        target = max(chunk, round(target / chunk) * chunk)
    return max(1, min(target, n_regions))


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


def _npz_chunk(n_regions: int) -> int:
    # 256 regions of L=1000 are 2 MB of float16 contributions: zarr's cost per chunk written
    # dominates a conversion of small chunks (3000 regions: 0.73 s in chunks of 64, 0.45 s in
    # chunks of 256), and a block reading part of a chunk decompresses little beside solving.
    return max(1, min(256, n_regions))


def _reuse_store(out: Path, npz_identity: dict[str, Any],
                 peaks_identity: dict[str, Any] | None) -> Regions | None:
    """OUT/regions.zarr when a run in OUT converted this very npz (same content, same -p/-C)."""
    from ..regions.store import open_store

    existing = out / "regions.zarr"
    params_path = out / PARAMS_FILE
    if existing.exists() and params_path.exists():
        with contextlib.suppress(OSError, ValueError, InputError):
            previous = read_json(params_path).get("nemo_dask", {}).get("identity", {})
            if (previous.get("regions") == _jsonable(npz_identity)
                    and previous.get("peaks") == _jsonable(peaks_identity)):
                return open_store(str(existing))
    return None


def _convert(npz: Path, out: Path, chunk: int, inputs: dict[str, Any]) -> Regions:
    """Convert a regions.npz into a temporary store beside OUT, or beside its target when OUT
    is a symlink (moved in by :func:`plan_run`)."""
    from ..regions.convert.npz import convert_npz

    real = output_dir(out, "call-hits output directory")
    real.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, and not ending in .zarr: a glob of the parent never takes it for a store.
    tmp = real.parent / temporary_name(f"{real.name}.regions.zarr")
    try:
        return convert_npz(str(npz), str(tmp), peaks=inputs["peaks"],
                           chrom_order=inputs["chrom_order"], chunk_size=chunk, overwrite=True,
                           progress=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _convert_into(npz: Path, out: Any, chunk: int, inputs: dict[str, Any]) -> Regions:
    """Convert a regions.npz into ``OUT/regions.zarr`` of a URL OUT (see :func:`validate`)."""
    from ..regions.convert.npz import convert_npz

    return convert_npz(str(npz), str(out / "regions.zarr"), peaks=inputs["peaks"],
                       chrom_order=inputs["chrom_order"], chunk_size=chunk, overwrite=True,
                       progress=False)


def _move_store(source: str, out: Path) -> str:
    target = out / "regions.zarr"
    if Path(source) != target:
        # A store of this same run that did not open: ours; a link or device there is refused.
        replace_directory(source, target, None, "regions store")
    return str(target)


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


def _store_identity(store: Regions) -> dict[str, Any]:
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
    from ..regions.convert._peaks import NarrowPeaks

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


def _finemo_parameters(c: Checked, store: Regions) -> dict[str, Any]:
    """finemo's parameters.json keys, in its order and with its meanings."""
    mp, solver, files, motifs = c.motif_params, c.solver, c.files, c.motifs
    # Absolute paths (the run may be read from elsewhere); inputs the CLI fetched from URLs by
    # their URLs, not the temporary copies (storage.urls.recorded_path).
    peaks, order = c.inputs["peaks"], c.inputs["chrom_order"]
    return {
        "regions_path": recorded_path(c.regions),
        "peaks_path": recorded_path(peaks),
        "modisco_h5_path": recorded_path(c.motifs_path),
        "chrom_order_path": recorded_path(order),
        "motifs_include_path": recorded_path(files["motifs_include"]),
        "motif_names_path": recorded_path(files["motif_names"]),
        "motif_lambdas_path": recorded_path(files["motif_lambdas"]), "out_dir": str(c.out),
        "cwm_trim_coords_path": recorded_path(files["trim_coords"]),
        "cwm_trim_thresholds_path": recorded_path(files["trim_thresholds"]),
        "cwm_trim_threshold_default": mp.trim_threshold, "lambda_default": mp.lambda_default,
        "step_size_max": solver.step_size_max, "step_size_min": solver.step_size_min,
        "sqrt_transform": solver.sqrt_transform, "convergence_tol": solver.convergence_tol,
        "max_steps": solver.max_steps, "batch_size": solver.batch_size,
        "step_adjust": solver.step_adjust,
        "device": None if c.run.device == "auto" else c.run.device,
        "mode": mp.mode, "no_post_filter": not solver.post_filter,
        "compile_optimizer": solver.compile_optimizer, "region_width": store.width,
        "num_regions": store.n_regions, "untrimmed_motif_width": motifs.width,
        "num_motifs": motifs.n_motifs, "global_scale": solver.global_scale,
        "tiling": store.attrs.get("tiling") if isinstance(store.attrs, dict) else None,
    }


def _ensure_motifs_in_out(out: Path, motifs: Motifs) -> None:
    """Rewrite the motif files of a resumed run unless they hold exactly ``motifs``: the tasks
    read their motifs from there (:func:`nemo_dask.calling.task.motifs_from_out`)."""
    from .task import motifs_from_out

    try:
        motifs_from_out(str(out), motifs_digest(motifs))
    except (InputError, OSError, ValueError):
        write_motifs(out, motifs.table)
        _save_npy(out / CWMS_FILE, motifs.cwms)


def _save_npy(path: Path, array: Any) -> None:
    with open_output(path, "wb", what="motif CWM array") as f:
        np.save(f, array)


__all__ = ("Checked", "Plan", "default_block_size", "plan_run", "validate")
