"""Plan a call-hits run: validate everything, convert an npz, lay out the blocks, prepare OUT.

:func:`validate` runs before any cluster starts and writes nothing to ``OUT`` (a regions.npz is
converted into a temporary store beside it); :func:`plan_run` then, knowing whether the workers
have GPUs, sizes the blocks, checks ``OUT`` against this run (resume or refuse), moves the store
in and writes the motif table, ``motif_cwms.npy`` and ``parameters.json``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import (
    CWMS_FILE,
    PARAMS_FILE,
    read_json,
    remove_stale_temporaries,
    write_json_atomic,
    write_manifest,
    write_motifs,
)
from ..errors import InputError
from ..motifs import Motifs, load_motifs, read_mapping, read_names_list, read_trim_coords
from ..params import MotifParams, RunOptions, SolverParams
from ..regions.npz import NpzRegions
from ..regions.source import open_regions
from ..regions.store import Regions
from .output import fingerprint, finished_blocks, prepare_out


@dataclass
class Checked:
    """A validated run, before the cluster is asked about GPUs (see :func:`validate`).

    ``store`` is the regions store the workers read: the caller's, or an npz converted into
    ``temporary`` (beside OUT; moved into it by :func:`plan_run`, removed by
    :meth:`discard_temporary` if the run stops before).
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
    regions_identity: dict[str, Any]
    temporary: Path | None

    def discard_temporary(self) -> None:
        """Remove a converted store that never made it into OUT."""
        if self.temporary is not None and self.temporary.exists():
            shutil.rmtree(self.temporary, ignore_errors=True)


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


def validate(regions: Any, motifs_path: Any, out: Any, *, solver: SolverParams,
             run: RunOptions, **motif_options: Any) -> Checked:
    """Check every input and parameter, load the motifs, open (or convert) the regions.

    Raises InputError with one clear line; nothing is written to ``out``.
    """
    files = _read_option_files(motif_options)
    motif_params = MotifParams(**motif_options)
    motifs = load_motifs(motifs_path, motif_params)
    out = Path(out).expanduser().absolute()
    source = open_regions(regions)
    _check_compatible(source, motifs, motif_params, source.url)
    temporary = None
    if isinstance(source, NpzRegions):
        # Workers read a store: the npz is converted (once; a rerun reuses OUT/regions.zarr).
        st = source.path.stat()
        identity = {"npz": str(source.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        # (Not with overwrite: OUT's files, its store included, may be about to go.)
        store = None if run.overwrite else _reuse_store(out, identity)
        if store is None:
            store = _convert(source.path, out, _npz_chunk(source.n_regions))
            temporary = Path(store.url)
    else:
        store = source
        identity = {"url": store.url, "n_regions": store.n_regions, "width": store.width,
                    "attrs": dict(store.attrs)}
    return Checked(regions=regions, motifs_path=motifs_path, out=out, motifs=motifs,
                   motif_params=motif_params, solver=solver, run=run, files=files, store=store,
                   regions_identity=identity, temporary=temporary)


def plan_run(c: Checked, gpus: bool) -> Plan:
    """Lay out the blocks (GPU-sized when ``gpus``), prepare ``OUT`` and find finished blocks.

    Raises OutputExistsError when ``OUT`` holds a different run and overwrite is off.
    """
    store, out, run = c.store, c.out, c.run
    n_regions = store.n_regions
    block_size = run.block_size or default_block_size(n_regions, int(store.chunk_size), gpus)
    blocks = [(b, s, min(s + block_size, n_regions))
              for b, s in enumerate(range(0, n_regions, block_size))]
    identity = {
        "regions": c.regions_identity,
        "mode": c.motif_params.mode,
        # The mode is recorded once, above; batch size and compilation change no hit.
        "solver": {k: v for k, v in vars(c.solver).items()
                   if k not in ("batch_size", "compile_optimizer", "mode")},
        "block_size": block_size,
    }
    run_fp = fingerprint(identity, c.motifs)
    try:
        resuming = prepare_out(out, run_fp, identity, run.overwrite)
        out.mkdir(parents=True, exist_ok=True)
        source = _move_store(store.url, out) if c.temporary is not None else store.url
    finally:
        c.discard_temporary()
    remove_stale_temporaries(out)
    finemo_params = _finemo_parameters(c, store)
    finemo_params["nemo_dask"] = {
        "fingerprint": run_fp, "identity": identity, "regions_url": source,
        "block_size": block_size, "n_blocks": len(blocks), "eps": c.solver.eps,
        "batch_size_resolved": {"cpu_per_thread": c.solver.batch_size_for("cpu"),
                                "cuda": c.solver.batch_size_for("cuda")},
        "motif_options": {k: v for k, v in vars(c.motif_params).items()},
        "version": _version(),
    }
    if not resuming or not (out / PARAMS_FILE).exists():
        write_motifs(out, c.motifs.table)
        _save_npy(out / CWMS_FILE, c.motifs.cwms)
        write_json_atomic(finemo_params, out / PARAMS_FILE)
    finished = finished_blocks(out, blocks) if resuming else {}
    write_manifest(out, run_fp, len(blocks), finished, complete=len(finished) == len(blocks))
    return Plan(out=out, regions_url=source, motifs=c.motifs, solver=c.solver, run=run,
                blocks=blocks, fingerprint=run_fp, finished=finished, n_skipped=len(finished))


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
    # 64 regions of L=1000 are 0.5 MB of float16 contributions: small enough for load balance
    # on a few hundred regions, large enough that reads stay efficient.
    return max(1, min(64, n_regions))


def _reuse_store(out: Path, npz_identity: dict[str, Any]) -> Regions | None:
    """OUT/regions.zarr when a run in OUT converted this very npz (same path, size, mtime)."""
    from ..regions.store import open_store

    existing = out / "regions.zarr"
    params_path = out / PARAMS_FILE
    if existing.exists() and params_path.exists():
        with contextlib.suppress(OSError, ValueError, InputError):
            previous = read_json(params_path).get("nemo_dask", {}).get("identity", {})
            if previous.get("regions") == npz_identity:
                return open_store(str(existing))
    return None


def _convert(npz: Path, out: Path, chunk: int) -> Regions:
    """Convert a regions.npz into a temporary store beside OUT (moved in by :func:`plan_run`)."""
    from ..regions.convert.npz import convert_npz

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.regions-{uuid.uuid4().hex[:8]}.zarr"
    try:
        return convert_npz(str(npz), str(tmp), chunk_size=chunk, overwrite=True, progress=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def _finemo_parameters(c: Checked, store: Regions) -> dict[str, Any]:
    """finemo's parameters.json keys, in its order and with its meanings."""
    mp, solver, files, motifs = c.motif_params, c.solver, c.files, c.motifs
    return {
        "regions_path": os.fspath(c.regions), "peaks_path": None,
        "modisco_h5_path": os.fspath(c.motifs_path), "chrom_order_path": None,
        "motifs_include_path": files["motifs_include"], "motif_names_path": files["motif_names"],
        "motif_lambdas_path": files["motif_lambdas"], "out_dir": str(c.out),
        "cwm_trim_coords_path": files["trim_coords"],
        "cwm_trim_thresholds_path": files["trim_thresholds"],
        "cwm_trim_threshold_default": mp.trim_threshold, "lambda_default": mp.lambda_default,
        "step_size_max": solver.step_size_max, "step_size_min": solver.step_size_min,
        "sqrt_transform": solver.sqrt_transform, "convergence_tol": solver.convergence_tol,
        "max_steps": solver.max_steps, "batch_size": solver.batch_size,
        "step_adjust": solver.step_adjust,
        "device": None if c.run.device == "auto" else c.run.device,
        "mode": mp.mode, "no_post_filter": not solver.post_filter,
        "compile_optimizer": solver.compile_optimizer, "region_width": store.width,
        "num_regions": store.n_regions, "untrimmed_motif_width": motifs.width,
        "num_motifs": motifs.n_motifs,
    }


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


__all__ = ("Checked", "Plan", "default_block_size", "plan_run", "validate")
