"""Run identity, the output directory's state and the manifest of finished blocks.

A run is identified by a fingerprint of everything that changes its hits, and of nothing else:
the regions' content (a store's ``content_sha256``, a regions.npz's member checksums and the
peaks given with ``-p`` -- not how the path is spelled, where the file lies or when it was
touched), the motifs (matrices, trim masks and table), the motif options and the solver
parameters. The block layout does not change any hit (the solver's results do not depend on
it), so it is not part of the identity: a resume takes it from OUT, whatever the resuming node's
device default. Rerunning into the same directory with the same fingerprint resumes (finished
blocks are skipped); a different fingerprint is refused unless the caller asks to overwrite, and
the refusal says which input changed and how, so results of two different runs can never be
mixed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..dataset import (
    CWMS_FILE,
    HITS_DIR,
    MANIFEST_FILE,
    MOTIFS_FILE,
    NULL_DIR,
    PARAMS_FILE,
    QC_DIR,
    part_name,
    partition_rows,
    read_json,
)
from ..errors import OutputExistsError
from ..storage.outputs import check_removable, output_dir, remove_owned
from ..storage.temporary import is_temporary

#: Everything a run may put in its output directory (removed by ``overwrite``).
_OWNED = (HITS_DIR, QC_DIR, NULL_DIR, MOTIFS_FILE, CWMS_FILE, PARAMS_FILE, MANIFEST_FILE,
          "regions.zarr")
_PARTITION_DIRS = (HITS_DIR, QC_DIR, NULL_DIR)


def fingerprint(identity: dict[str, Any]) -> str:
    """SHA-256 over the run's identity (as sorted JSON)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


#: How a refusal names each part of the identity.
_PARTS = {"regions": "regions", "peaks": "peaks (-p/-C)", "mode": "parameters",
          "motif_options": "parameters", "solver": "parameters", "motifs": "motifs"}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a digest
    return text if len(text) <= 40 else text[:37] + "..."


def describe_differences(previous: dict[str, Any], current: dict[str, Any]) -> str:
    """What differs between two run identities, by input, e.g.
    ``parameters differ: lambda_default 0.7 -> 0.8``."""
    groups: dict[str, list[str]] = {}
    for part in sorted(set(previous) | set(current), key=lambda k: list(_PARTS).index(k)
                       if k in _PARTS else len(_PARTS)):
        old, new = previous.get(part), current.get(part)
        if old == new:
            continue
        if part == "motifs" and previous.get("motif_options") != current.get("motif_options"):
            continue  # follows from the changed motif options, named already
        label = _PARTS.get(part, part)
        old_flat, new_flat = _flat(old, part), _flat(new, part)
        items = []
        for key in sorted(set(old_flat) | set(new_flat)):
            if old_flat.get(key, "<absent>") != new_flat.get(key, "<absent>"):
                name = key.split(".", 1)[1] if "." in key else key
                if part == "regions" and name == "content":
                    name = "content checksum"
                items.append(f"{name} {_short(old_flat.get(key, '<absent>'))} -> "
                             f"{_short(new_flat.get(key, '<absent>'))}")
        if part == "motifs":
            items = ["the modisco H5's patterns changed"]
        groups.setdefault(label, []).extend(items)
    if not groups:
        return "motifs or options recorded by another nemo-dask version"
    return "; ".join(f"{label} differ: {', '.join(items)}" for label, items in groups.items())


def prepare_out(out: Path, run_fingerprint: str, identity: dict[str, Any], overwrite: bool) -> bool:
    """Check ``out`` against this run; returns True when resuming a run with the same identity.

    Raises OutputExistsError when ``out`` is not a directory (a file, device, FIFO, or a link to
    one), or holds another run (or foreign files) and ``overwrite`` is False. With
    ``overwrite`` only nemo_dask's own entries are removed: those of a directory whose
    parameters.json a nemo_dask run wrote, or, in a directory that is not (yet) a run's, entries
    whose content shows they are ours (see :func:`_looks_owned`). Symlinks, devices, FIFOs and
    sockets among them are never removed (:func:`nemo_dask.storage.outputs.remove_owned`).
    ``out`` itself may be a symlink to a directory: it is followed.
    """
    params_path = out / PARAMS_FILE
    output_dir(out, "call-hits output directory")
    if not out.exists():
        return False
    ours = False
    if params_path.is_file():  # a FIFO of that name must not be opened for reading
        try:
            previous = read_json(params_path).get("nemo_dask", {})
        except (OSError, ValueError, AttributeError):
            previous = {}
        previous = previous if isinstance(previous, dict) else {}
        ours = bool(previous)
        if previous.get("fingerprint") == run_fingerprint:
            return True
        if not overwrite:
            changed = describe_differences(previous.get("identity", {}), identity)
            raise OutputExistsError(
                f"{out} holds the results of a different run ({changed}); rerun with "
                "--overwrite (overwrite=True) to replace them, or choose another output "
                "directory")
    elif any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{out} exists, is not empty and is not a nemo-dask output directory; choose another "
            "output directory, or pass --overwrite (overwrite=True) to write into it anyway")
    if overwrite:
        owned = None if ours else _looks_owned
        # Check every entry before deleting any: a refusal leaves the directory as it was.
        for name in _OWNED:
            check_removable(out / name, owned, "output")
        for name in _OWNED:
            remove_owned(out / name, owned, "output")
    return False


def _looks_owned(path: Path) -> bool:
    """Whether an entry of a directory without a run's parameters.json is a run's by content.

    hits/ and qc/ hold only partitions and temporaries; regions.zarr is a regions store; the
    single files (motifs.parquet, motif_cwms.npy, manifest.json, parameters.json) would be
    replaced by this run's own anyway.
    """
    if path.name in _PARTITION_DIRS:
        return path.is_dir() and all(
            (e.startswith("part-") and e.endswith(".parquet")) or is_temporary(e)
            for e in (c.name for c in path.iterdir()))
    if path.name == "regions.zarr":
        from .convert._writer import _is_store_dir

        return path.is_dir() and _is_store_dir(path)  # (local or UPath)
    return path.is_file()


def finished_blocks(out: Path, blocks: list[tuple[int, int, int]],
                    null: bool = False) -> dict[int, dict[str, int]]:
    """Blocks whose hits and QC partitions are both complete (and, with ``null``, their null
    partition of a calibrated run), with their row counts.

    The files themselves are the truth (each is written to a temporary name and renamed): a
    driver killed before it recorded a finished block in the manifest loses nothing.
    """
    done: dict[int, dict[str, int]] = {}
    for block, start, stop in blocks:
        n_qc = partition_rows(out / QC_DIR / part_name(block))
        n_hits = partition_rows(out / HITS_DIR / part_name(block))
        if null and partition_rows(out / NULL_DIR / part_name(block)) is None:
            continue
        if n_qc == stop - start and n_hits is not None:
            done[block] = {"start": start, "stop": stop, "hits": n_hits, "regions": n_qc}
    return done
