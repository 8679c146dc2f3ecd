"""Plan a call-hits run: check the inputs, claim OUT and place the regions, lay out the blocks.

Three steps, each named for what it does:

* :func:`validate` checks every input and parameter and computes the run's identity
  (:mod:`.identity`); it writes nothing anywhere.
* :func:`prepared_out` claims OUT (its lock, held to the end of the run), checks it against the
  run (resume, refuse, or overwrite: :mod:`.output`) and puts the regions store the workers
  read in place (a regions.npz converted into ``OUT/regions.zarr``, or reused from there).
* :func:`plan_run`, knowing whether the workers have GPUs, lays out the blocks (a resume keeps
  OUT's layout), writes the motif files and ``parameters.json``, and finds the blocks a
  resume may keep (:func:`.identity.finished_blocks`), saying which others are redone and why.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import version
from ..calibration.params import CalibrationParams
from ..dataset import (
    CWMS_FILE,
    PARAMS_FILE,
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
from ..params import (
    CPU_BLOCK_SIZE_RANGE,
    CPU_BLOCKS,
    GPU_BATCHES_PER_BLOCK,
    GPU_BLOCK_SIZE_UNKNOWN,
    MotifParams,
    RunOptions,
    SolverParams,
)
from ..regions.npz import NpzRegions
from ..regions.source import open_regions
from ..regions.store import Regions
from ..storage.outputs import (
    open_output,
    output_dir,
    write_json,
)
from ..storage.urls import location
from .identity import (
    fingerprint,
    finished_blocks,
    jsonable,
    npz_identity,
    peaks_identity,
    recorded_run,
    run_identity,
    stamped_block_size,
    store_identity,
)
from .output import (  # noqa: F401  (prepared_out: where callers have always found it)
    check_out,
    finemo_parameters,
    prepared_out,
    remove_strays,
    settle_out,
)
from .seams import check_tiling

#: Lines a resume prints about blocks it computes again, before summing up the rest.
MAX_REDONE_LINES = 10


@dataclass
class Checked:
    """A validated run (see :func:`validate`); :func:`prepared_out` fills in ``store``,
    ``regions_url`` (the store the workers read: the caller's, or an npz converted into
    ``OUT/regions.zarr``) and ``resuming`` (whether ``OUT`` holds this same run already)."""

    regions: Any
    motifs_path: Any
    out: Path
    motifs: Motifs
    motif_params: MotifParams
    solver: SolverParams
    run: RunOptions
    files: dict[str, str | None]
    source: Regions | NpzRegions
    inputs: dict[str, Any]
    identity: dict[str, Any]
    fingerprint: str
    store: Regions | None = None
    resuming: bool = False
    regions_url: str = ""
    calibration: CalibrationParams | None = None  # the q-values (None: none)
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
    block_size: int = 0
    identity: dict[str, Any] = field(default_factory=dict)
    width: int = 0  # region width L
    # q-values (calling/qvalues.py): the calibration, each block's tables, a background null's
    # store, blocks and finished ones, and the manifest's q-values section while it holds.
    calibration: CalibrationParams | None = None
    tables: tuple[str, ...] = ("hits", "qc")
    background_url: str | None = None
    background_blocks: list[tuple[int, int, int]] = field(default_factory=list)
    background_finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    n_background: int = 0
    qvalues: dict[str, Any] | None = None


def validate(regions: Any, motifs_path: Any, out: Any, *, solver: SolverParams,
             run: RunOptions, peaks: Any = None, chrom_order: Any = None,
             null: str | None = None, background: Any = None,
             qvalue_score: str = CalibrationParams.score, **motif_options: Any) -> Checked:
    """Check every input and parameter, load the motifs, open the regions and compute the
    run's identity. Nothing is written anywhere.

    ``peaks`` and ``chrom_order`` (finemo's call-hits ``-p``/``-C``) give a regions.npz
    without coordinates its genomic coordinates, as finemo does. ``null``, ``background`` and
    ``qvalue_score`` say how hits get q-values
    (:func:`nemo_dask.calibration.params.resolve_calibration`).

    Raises
    ------
    InputError
        One clear line naming the input and the fix.
    OutputExistsError
        ``out`` is (or links to) a file, device or FIFO.
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
    is_npz = isinstance(source, NpzRegions)
    peaks_id = _check_peaks_option(inputs, is_npz)
    _check_compatible(source, motifs, motif_params, source.url)
    check_tiling(source, motifs.width, source.url)
    if is_npz:
        regions_id = npz_identity(source.path)
        has_coordinates = regions_id["has_coordinates"] or peaks_id is not None
    else:
        regions_id = store_identity(source)
        has_coordinates = source.has_peaks
        if not source.verified:
            warnings.warn(f"{source.url}: this regions store was converted by an older "
                          "nemo-dask and records no chunk checksums, so a missing or damaged "
                          "chunk cannot be detected (it would read as zeros); convert it again "
                          "to have every read verified", stacklevel=4)
    if not has_coordinates:
        # finemo's call-hits warns the same way (once) for regions without coordinates.
        warnings.warn("No peak region data provided: the regions have no genomic coordinates, "
                      "so hits have chr NA and region-relative positions; pass -p "
                      "peaks.narrowPeak [-C chrom_order.txt] to give them", stacklevel=4)
    identity = run_identity(regions_id, peaks_id, motif_params, motifs, solver)
    from .qvalues import checked_calibration

    calibration, bg_store, fitted = checked_calibration(source, motifs, motif_params, null,
                                                        background, qvalue_score)
    if fitted is not None:  # what the blocks' null partitions depend on
        identity["calibration"] = fitted
    return Checked(regions=regions, motifs_path=motifs_path, out=out, motifs=motifs,
                   motif_params=motif_params, solver=solver, run=run, files=files,
                   source=source, inputs=inputs, identity=identity,
                   fingerprint=fingerprint(identity),
                   store=None if is_npz else source,  # type: ignore[arg-type]
                   calibration=calibration, background=bg_store)


def plan_run(c: Checked, gpus: bool, gpu_batch: int | None = None,
             queue_regions: int | None = None) -> Plan:
    """Lay out the blocks (GPU-sized when ``gpus``; a resume keeps OUT's layout; the default
    size from ``queue_regions`` when the run shares its queue, :func:`default_block_size`),
    write the motif files and ``parameters.json``, and find the finished blocks a resume may
    keep."""
    store, out, run = c.store, c.out, c.run
    assert store is not None, "plan_run needs prepared_out first"
    n_regions = store.n_regions
    run_fp, resuming, source = c.fingerprint, c.resuming, c.regions_url
    recorded = recorded_run(out) if resuming else None
    # A resume keeps OUT's block layout (its finished partitions are numbered by it), whatever
    # this node's default (GPU nodes default to larger blocks than CPU nodes).
    block_size = run.block_size
    kept = None
    if recorded is not None:
        # The manifest's layout; without one, the partitions' own (their stamps); then
        # parameters.json's.
        kept = (recorded.manifest or {}).get("block_size") or stamped_block_size(out, run_fp) \
            or recorded.block_size
    if kept is not None and block_size not in (None, kept):
        warnings.warn(f"{out} holds a run with --block-size {kept}; resuming it with that "
                      f"layout (--block-size {block_size} ignored; pass --overwrite to start "
                      "again with the new one)", stacklevel=4)
    if kept is not None:
        block_size = kept
    if block_size is None:
        block_size = default_block_size(n_regions, int(store.chunk_size), gpus, gpu_batch,
                                        queue_regions)
    blocks = [(b, s, min(s + block_size, n_regions))
              for b, s in enumerate(range(0, n_regions, block_size))]
    finemo_params = finemo_parameters(c, store)
    finemo_params["nemo_dask"] = {
        "fingerprint": run_fp, "identity": c.identity, "regions_url": source,
        "block_size": block_size, "n_blocks": len(blocks), "eps": c.solver.eps,
        "exact": c.solver.exact, "check_every": c.solver.check_every,
        "motif_options": {k: v for k, v in vars(c.motif_params).items()},
        "version": version(),
    }
    rewrite = recorded is None or not recorded.params or not (out / PARAMS_FILE).exists()
    said = None if rewrite else (recorded.params.get("block_size"),  # type: ignore[union-attr]
                                 recorded.params.get("n_blocks"))  # type: ignore[union-attr]
    if said is not None and said != (block_size, len(blocks)):
        warnings.warn(f"{out}/{PARAMS_FILE} records blocks of {said[0]} regions ({said[1]} "
                      f"blocks), but the run is laid out in blocks of {block_size} "
                      f"({len(blocks)} blocks); {PARAMS_FILE} is rewritten to say so",
                      stacklevel=4)
        rewrite = True
    if rewrite:
        write_motifs(out, c.motifs.table)
        _save_npy(out / CWMS_FILE, c.motifs.cwms)
        write_json(finemo_params, out / PARAMS_FILE)
    else:
        _ensure_motifs_in_out(out, c.motifs)
    from .qvalues import block_tables, plan_calibration, save_manifest

    finished: dict[int, dict[str, Any]] = {}
    manifest = recorded.manifest if recorded else None
    if resuming:
        n_bg = -(-c.background.n_regions // block_size) if c.background is not None else 0
        remove_strays(out, len(blocks), n_bg)
        resume = finished_blocks(out, blocks, run_fp, manifest, block_tables(c.calibration))
        finished = resume.finished
        say_redone(resume.redone)
    plan = Plan(out=out, regions_url=source, motifs=c.motifs, solver=c.solver, run=run,
                blocks=blocks, fingerprint=run_fp, finished=finished,
                n_skipped=len(finished), block_size=block_size, identity=c.identity,
                width=store.width, **plan_calibration(c, block_size, manifest, resuming))
    save_manifest(plan)
    return plan


def say_redone(lines: list[str]) -> None:
    """Warn, one line each, about blocks a resume computes again (at most a few lines)."""
    for line in lines[:MAX_REDONE_LINES]:
        warnings.warn(line, stacklevel=5)
    if len(lines) > MAX_REDONE_LINES:
        warnings.warn(f"... and {len(lines) - MAX_REDONE_LINES} more blocks are computed again "
                      "for the same kinds of reasons", stacklevel=5)


def default_block_size(n_regions: int, chunk: int, gpu: bool,
                       gpu_batch: int | None = None, queue_regions: int | None = None) -> int:
    """Regions per task when the user does not say.

    On CPU about :data:`~nemo_dask.params.CPU_BLOCKS` blocks (within
    :data:`~nemo_dask.params.CPU_BLOCK_SIZE_RANGE` regions each) of the queue, so that every
    worker gets several and the last ones finish together: the queue is the run's
    ``n_regions``, or ``queue_regions`` when the run shares one queue with others (a ``--runs``
    sheet: 20 runs of 350 regions are blocked as one run of 7000 would be, not in 320 blocks
    whose reads, writes and hand-overs cost more than their solves). On GPUs
    :data:`~nemo_dask.params.GPU_BATCHES_PER_BLOCK` solver batches, ``gpu_batch`` being the
    batch the workers' free GPU memory holds (:func:`nemo_dask.calling.execute.workers_gpu_batch`),
    or :data:`~nemo_dask.params.GPU_BLOCK_SIZE_UNKNOWN` regions when no worker could say (jobs
    still queued). Rounded to whole chunks when larger than a chunk (smaller blocks share a
    chunk's read, which costs little beside solving).
    """
    if gpu:
        target = GPU_BATCHES_PER_BLOCK * gpu_batch if gpu_batch else GPU_BLOCK_SIZE_UNKNOWN
    else:
        low, high = CPU_BLOCK_SIZE_RANGE
        target = min(high, max(low, -(-(queue_regions or n_regions) // CPU_BLOCKS)))
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
    return jsonable(peaks_identity(peaks, order))


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


__all__ = ("Checked", "Plan", "check_out", "default_block_size", "plan_run", "prepared_out",
           "settle_out", "validate")
