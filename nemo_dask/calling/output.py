"""The output directory of a run: claiming it, and what ``--overwrite`` may remove.

Whether OUT holds this same run, another, or nothing of ours is decided by
:mod:`.identity`; this module acts on it. A run claims OUT (:func:`claim_out`) before it
writes anything there: it takes OUT's lock (:class:`nemo_dask.storage.lock.OutputLock`),
removes the temporaries a killed run left, checks OUT against the run (:func:`prepare_out`:
resume, refuse, or with ``overwrite`` remove the other run's files), and, for a new run,
writes a first ``manifest.json`` holding its fingerprint and identity, so that a run killed
while it starts leaves an OUT the next run recognises as its own. Then the regions store the
workers read is put in place (:func:`place_regions`: a regions.npz converted into
``OUT/regions.zarr``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dataset import (
    BACKGROUND_DIR,
    CWMS_FILE,
    HITS_DIR,
    MANIFEST_FILE,
    MOTIFS_FILE,
    NULL_DIR,
    PARAMS_FILE,
    QC_DIR,
    QVALUES_DIR,
    read_json,
    remove_stale_temporaries,
)
from ..errors import InputError, OutputExistsError
from ..manifest import write_manifest
from ..storage.faults import StorageFaultError
from ..storage.lock import LOCK_NAME, OutputLock, describe
from ..storage.outputs import (
    check_removable,
    make_output_dir,
    output_dir,
    remove_owned,
    remove_temporaries,
    replace_directory,
    write_json,
)
from ..storage.temporary import is_temporary, temporary_name
from ..storage.urls import is_url, location, recorded_path
from .identity import describe_differences, recorded_run, stray_partitions

if TYPE_CHECKING:
    from .plan import Checked

#: Everything a run may put in its output directory (removed by ``overwrite``).
OWNED = (HITS_DIR, QC_DIR, NULL_DIR, BACKGROUND_DIR, QVALUES_DIR, MOTIFS_FILE, CWMS_FILE,
         PARAMS_FILE, MANIFEST_FILE, "regions.zarr")
_PARTITION_DIRS = (HITS_DIR, QC_DIR, NULL_DIR, BACKGROUND_DIR, QVALUES_DIR)


@contextlib.contextmanager
def claim_out(out: Any) -> Iterator[OutputLock]:
    """Hold OUT's lock for the block (OUT is created if missing, and removed again at the end
    if the run left nothing in it).

    Raises
    ------
    OutputLockedError
        Another live run holds the lock (one line naming it).
    """
    real = output_dir(out, "call-hits output directory")
    created = not real.exists()
    lock = OutputLock(real, "call-hits")
    lock.acquire()
    try:
        if lock.took_over is not None:
            warnings.warn(f"{real}: took over the lock of a run that is no longer alive "
                          f"({describe(lock.took_over)})", stacklevel=3)
        remove_stale_temporaries(real)
        yield lock
    finally:
        lock.release()
        if created and not is_url(real):
            with contextlib.suppress(OSError):
                real.rmdir()  # only if empty: a run refused or failed before writing


def prepare_out(out: Path, run_fingerprint: str, identity: dict[str, Any], overwrite: bool,
                keep: Path | None = None, dry_run: bool = False) -> bool:
    """Check ``out`` against this run; returns True when resuming a run with the same identity.

    Raises OutputExistsError when ``out`` is not a directory (a file, device, FIFO, or a link to
    one), or holds another run (or foreign files) and ``overwrite`` is False. With
    ``overwrite`` only nemo_dask's own entries are removed: those of a directory a run claimed
    (its parameters.json or manifest.json holds a run's fingerprint), or, in a directory that
    is not (yet) a run's, entries whose content shows they are ours (see
    :func:`_looks_owned`). Symlinks, devices, FIFOs and sockets among them are never removed
    (:func:`nemo_dask.storage.outputs.remove_owned`), nor ``keep`` (the run's own input store
    when it lies in ``out``). A refusal suggests ``--overwrite`` only where it would succeed.
    ``out`` itself may be a symlink to a directory: it is followed. ``dry_run``: refuse as
    above, but remove nothing.
    """
    output_dir(out, "call-hits output directory")
    if not out.exists():
        return False
    recorded = recorded_run(out)
    ours = recorded is not None
    owned = None if ours else _looks_owned
    if ours and recorded.fingerprint == run_fingerprint:  # type: ignore[union-attr]
        return True
    entries = [e for e in out.iterdir() if e.name != LOCK_NAME and not is_temporary(e.name)]
    if not entries:
        return False
    if not overwrite:
        blocker = _overwrite_blocker(out, owned, keep)
        advice = ("rerun with --overwrite (overwrite=True) to replace them, or choose another "
                  "output directory" if blocker is None else
                  f"choose another output directory (--overwrite would not replace them: "
                  f"{blocker})")
        if ours:
            changed = describe_differences(recorded.identity, identity)  # type: ignore[union-attr]
            raise OutputExistsError(f"{out} holds the results of a different run ({changed}); "
                                    f"{advice}")
        advice = ("choose another output directory, or pass --overwrite (overwrite=True) to "
                  "write into it anyway (only nemo-dask's own files there are replaced)"
                  if blocker is None else
                  f"choose another output directory (--overwrite would not help: {blocker})")
        raise OutputExistsError(f"{out} exists, is not empty and is not a nemo-dask output "
                                f"directory; {advice}")
    # Check every entry before deleting any: a refusal leaves the directory as it was.
    names = [n for n in OWNED if keep is None or out / n != keep]
    for name in names:
        check_removable(out / name, owned, "output")
    if dry_run:
        return False
    for name in names:
        remove_owned(out / name, owned, "output")
    return False


@contextlib.contextmanager
def prepared_out(c: Checked) -> Iterator[Checked]:
    """Claim ``c.out`` for the run (its lock is held until the block ends), check it against
    the run, and put the regions store in place; yields ``c`` completed.

    Raises
    ------
    OutputLockedError
        Another live run writes into OUT.
    OutputExistsError
        OUT holds another run, or files that are not nemo-dask's, and ``overwrite`` is off.
    InputError
        A regions.npz does not convert (nothing of it is left in OUT).
    """
    with claim_out(c.out):
        settle_out(c)
        yield c


def check_out(c: Checked) -> None:
    """With OUT claimed (:func:`~nemo_dask.calling.output.claim_out`): raise what
    :func:`settle_out` would refuse, removing nothing (a sheet checks every run's OUT before
    it replaces any)."""
    keep = inside(c.store.url, c.out) if c.store is not None else None
    prepare_out(c.out, c.fingerprint, c.identity, c.run.overwrite, keep=keep, dry_run=True)


def settle_out(c: Checked) -> None:
    """With OUT claimed: check it against the run (resume, refuse, or with ``overwrite``
    replace another run's files), record a new run's claim, and put the regions store the
    workers read in place (a regions.npz converted into ``OUT/regions.zarr``)."""
    keep = inside(c.store.url, c.out) if c.store is not None else None
    c.resuming = prepare_out(c.out, c.fingerprint, c.identity, c.run.overwrite, keep=keep)
    claimed = not c.resuming
    if claimed:
        record_claim(c.out, c.fingerprint, c.identity)
    try:
        c.store, c.regions_url = place_regions(c.out, c.source, c.store, c.identity, c.inputs)
    except InputError:
        if claimed:  # a bad input leaves nothing of this run behind
            with contextlib.suppress(OSError):
                (c.out / "manifest.json").unlink()
        raise


def record_claim(out: Any, run_fingerprint: str, identity: dict[str, Any]) -> None:
    """The first record of a new run in OUT (no blocks, layout unknown yet)."""
    write_manifest(out, run_fingerprint, None, {}, complete=False, identity=identity)


def _overwrite_blocker(out: Path, owned: Any, keep: Path | None) -> str | None:
    """Why ``--overwrite`` would refuse ``out`` (None: it would succeed)."""
    for name in OWNED:
        if keep is not None and out / name == keep:
            continue
        try:
            check_removable(out / name, owned, "output")
        except OutputExistsError as err:
            return str(err).split(";")[0]
    return None


def _looks_owned(path: Path) -> bool:
    """Whether an entry of a directory without a run's record is a run's by content.

    The partition directories (hits/, qc/, null/, ...) hold only partitions and temporaries;
    regions.zarr is a regions store; the single files (motifs.parquet, motif_cwms.npy,
    manifest.json, parameters.json) would be replaced by this run's own anyway.
    """
    if path.name in _PARTITION_DIRS:
        return path.is_dir() and all(
            (e.startswith("part-") and e.endswith(".parquet")) or is_temporary(e)
            for e in (c.name for c in path.iterdir()))
    if path.name == "regions.zarr":
        from ..regions.convert._writer import _is_store_dir

        return path.is_dir() and _is_store_dir(path)  # (local or UPath)
    return path.is_file()


def place_regions(out: Any, source: Any, store: Any, identity: dict[str, Any],
                  inputs: dict[str, Any]) -> tuple[Any, str]:
    """The store the workers read, and its URL: ``store`` (the caller's); or the regions.npz
    ``source`` converted into ``OUT/regions.zarr`` (or the store a previous attempt of this
    run converted there, when complete). Call with OUT claimed (:func:`claim_out`)."""
    if store is not None:
        return store, store.url
    npz = source.path
    store = _reuse_store(out, identity)
    if store is not None:
        return store, store.url
    chunk = _npz_chunk(source.n_regions)
    if is_url(out):
        # No rename on object stores: convert straight to OUT/regions.zarr (its complete
        # mark is written last, so a killed conversion is redone, never trusted).
        store = _convert_into(npz, out, chunk, inputs)
        return store, store.url
    temporary = None
    try:
        store = _convert(npz, out, chunk, inputs)
        temporary = Path(store.url)
        url = _move_store(store.url, out)
    finally:
        if temporary is not None and temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    from ..regions.store import open_store

    return open_store(url), url


def inside(url: str, out: Any) -> Path | None:
    """``url`` as an entry of OUT when the store lies directly in it (never to be removed)."""
    entry = location(url)
    return entry if str(entry.parent).rstrip("/") == str(out).rstrip("/") else None


def _npz_chunk(n_regions: int) -> int:
    # 256 regions of L=1000 are 2 MB of float16 contributions: zarr's cost per chunk written
    # dominates a conversion of small chunks (3000 regions: 0.73 s in chunks of 64, 0.45 s in
    # chunks of 256), and a block reading part of a chunk decompresses little beside solving.
    return max(1, min(256, n_regions))


def _reuse_store(out: Any, identity: dict[str, Any]) -> Any:
    """OUT/regions.zarr when a run in OUT converted this very npz (same content, same -p/-C)
    and the store is complete."""
    from ..regions.store import open_store

    existing = out / "regions.zarr"
    recorded = recorded_run(out)
    if recorded is None or not existing.exists():
        return None
    previous = recorded.identity
    if (previous.get("regions") == identity.get("regions")
            and previous.get("peaks") == identity.get("peaks")):
        with contextlib.suppress(OSError, ValueError, InputError):
            return open_store(str(existing))
    return None


def _convert(npz: Path, out: Path, chunk: int, inputs: dict[str, Any]) -> Any:
    """Convert a regions.npz into a temporary store beside OUT, or beside its target when OUT
    is a symlink (then moved in by :func:`_move_store`). What a killed conversion left there
    is removed first (OUT's lock is held: no other run converts for it)."""
    from ..regions.convert.npz import convert_npz

    real = output_dir(out, "call-hits output directory")
    real.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, and not ending in .zarr: a glob of the parent never takes it for a store.
    remove_temporaries(real.parent, (f"{real.name}.regions.zarr",))
    tmp = real.parent / temporary_name(f"{real.name}.regions.zarr")
    try:
        return convert_npz(str(npz), str(tmp), peaks=inputs["peaks"],
                           chrom_order=inputs["chrom_order"], chunk_size=chunk, overwrite=True,
                           progress=False)
    except StorageFaultError as fault:  # named as the user knows it, not by its temporary
        shutil.rmtree(tmp, ignore_errors=True)
        written = (fault.written or "").replace(f" and {tmp} is as it was", "")
        raise StorageFaultError(f"{real}/regions.zarr (converting {npz})", fault.errno,
                                fault.note, written, fault.fix) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _convert_into(npz: Path, out: Any, chunk: int, inputs: dict[str, Any]) -> Any:
    """Convert a regions.npz into ``OUT/regions.zarr`` of a URL OUT (see :func:`place_regions`)."""
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


def record_batch_sizes(out: Any, finished: dict[int, dict[str, Any]]) -> None:
    """Record in parameters.json the solver batch sizes the workers used (by device type), as
    the finished blocks report them; nothing for a device no block ran on."""
    used: dict[str, set[int]] = {}
    for entry in finished.values():
        device, batch = entry.get("device"), entry.get("batch_size")
        if isinstance(device, str) and isinstance(batch, int):
            used.setdefault(device.split(":")[0], set()).add(batch)
    path = location(out) / PARAMS_FILE
    try:
        params = read_json(path)
    except (OSError, ValueError):
        return
    section = params.get("nemo_dask") if isinstance(params, dict) else None
    if not isinstance(section, dict):
        return
    resolved = {k: sorted(v) for k, v in sorted(used.items())}
    if section.get("batch_size_resolved") != resolved:
        section["batch_size_resolved"] = resolved
        write_json(params, path)


def remove_strays(out: Any, n_blocks: int, n_background: int = 0) -> None:
    """Partitions of blocks beyond this layout's (another layout's) are removed, in one line."""
    strays = stray_partitions(out, n_blocks, n_background)
    if strays:
        shown = ", ".join(strays[:4]) + (f" and {len(strays) - 4} more" if len(strays) > 4
                                         else "")
        warnings.warn(f"{out}: removed {len(strays)} partitions of blocks outside this run's "
                      f"layout of {n_blocks} blocks ({shown})", stacklevel=5)
    for rel in strays:
        target = location(out) / rel
        if is_url(target):
            from ..storage.urls import filesystem

            fs, root = filesystem(str(target))
            fs.rm(root)
        else:
            os.unlink(target)


def finemo_parameters(c: Any, store: Any) -> dict[str, Any]:
    """finemo's parameters.json keys (:data:`~nemo_dask.finemo.formats.FINEMO_PARAMETER_KEYS`,
    in its order and with its meanings), then nemo_dask's ``global_scale`` and ``tiling``, for
    the validated run ``c`` (:class:`.plan.Checked`) on ``store``."""
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


def ensure_dir(out: Any) -> Path:
    """Create OUT (a prefix of an object store needs nothing)."""
    return make_output_dir(out, "call-hits output directory")


__all__ = ("OWNED", "check_out", "claim_out", "ensure_dir", "finemo_parameters", "inside",
           "place_regions", "prepare_out", "prepared_out", "record_batch_sizes", "record_claim",
           "remove_strays", "settle_out")
