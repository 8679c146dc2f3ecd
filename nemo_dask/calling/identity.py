"""Is this the same run, and what of OUT may a resume keep.

A run is identified by a fingerprint of everything that can change its hits, and of nothing
else: the regions' content (a store's ``content_sha256``, a regions.npz's member checksums and
the peaks given with ``-p`` -- not how the path is spelled, where the file lies or when it was
touched), the motifs (matrices, trim masks and table), the motif options and every solver
parameter that can change a hit. Left out, because the solver's results do not depend on them
bit for bit (tested: ``tests/solver``, ``tests/parity/test_invariants.py``): the batch size,
``check_every``, the block layout and the number of workers. ``exact`` and
``compile_optimizer`` are in: both replace the default sparse step by another computation of
the same step (finemo's dense one; a torch.compile'd one), whose last bits differ, and a region
whose duality gap lands on the tolerance can then stop at another step. (``compile_optimizer``
only when set, so that runs recorded before it was part of the identity still resume.) The
device is not in the identity: it is recorded per block in the manifest.

A rerun with the same fingerprint resumes; another fingerprint is refused (unless the caller
overwrites), naming which input changed and how. A resume keeps OUT's block layout (the
manifest's, else parameters.json's) and trusts a finished block only after checking its files
(:func:`finished_blocks`).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dataset import PARAMS_FILE, read_json
from ..errors import InputError
from ..manifest import (
    BACKGROUND_DIR,
    HITS_DIR,
    NULL_DIR,
    QC_DIR,
    QVALUES_DIR,
    check_pages,
    file_record,
    footer,
    list_partitions,
    part_name,
    read_bytes,
    read_manifest,
    read_stamp,
)
from ..motifs import Motifs, motifs_digest
from ..params import MotifParams, SolverParams

#: Store attributes that say where the inputs were or when the store was made, not what it holds.
_VOLATILE_ATTRS = ("created_at", "created_by", "source", "chunk_checksums")
#: SolverParams fields that change no hit (see the module docstring), and ``use_hypothetical``,
#: which the mode decides: recorded once, with the motif options.
_NOT_IDENTITY = ("batch_size", "use_hypothetical", "check_every")


def jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists), so identities compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def npz_identity(path: Path) -> dict[str, Any]:
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


def store_identity(store: Any) -> dict[str, Any]:
    """A store's content fingerprint: the ``content_sha256`` its conversion recorded (stores
    written before it existed: their attributes, without the paths and times of their making)."""
    attrs = dict(store.attrs)
    if attrs.get("content_sha256"):
        return {"content": attrs["content_sha256"], "n_regions": store.n_regions,
                "width": store.width}
    kept = {k: v for k, v in attrs.items() if k not in _VOLATILE_ATTRS}
    return {"attrs": jsonable(kept), "n_regions": store.n_regions, "width": store.width}


def peaks_identity(peaks: Any, chrom_order: Any) -> dict[str, Any]:
    """The identity of call-hits' ``-p`` peaks (with ``-C``): their content, not their path."""
    from ..regions.convert._peaks import NarrowPeaks

    table = NarrowPeaks(peaks, chrom_order, 0)
    table.close()
    return {"content": table.content_sha256, "n_rows": table.n_rows}


def run_identity(regions: dict[str, Any], peaks: dict[str, Any] | None,
                 motif_params: MotifParams, motifs: Motifs, solver: SolverParams
                 ) -> dict[str, Any]:
    """Everything that determines a run's hits (see the module docstring)."""
    kept = {k: v for k, v in vars(solver).items() if k not in _NOT_IDENTITY}
    if kept.get("global_scale") is None:
        kept.pop("global_scale", None)  # runs made before it existed still resume
    if not kept.get("compile_optimizer"):
        kept.pop("compile_optimizer", None)
    return jsonable({
        "regions": regions,
        "peaks": peaks,
        "mode": motif_params.mode,
        "motif_options": jsonable(vars(motif_params)),
        "motifs": motifs_digest(motifs),
        "solver": kept,
    })


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


@dataclass
class Recorded:
    """The run OUT records: its fingerprint and identity, its layout, and its manifest."""

    fingerprint: str | None
    identity: dict[str, Any]
    block_size: int | None
    params_block_size: int | None
    manifest: dict[str, Any] | None
    regions_url: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def recorded_run(out: Any) -> Recorded | None:
    """What ``out`` says about the run in it: parameters.json's ``nemo_dask`` section and the
    manifest (written first, when a run claims OUT); None when neither is a run's."""
    params: dict[str, Any] = {}
    params_path = out / PARAMS_FILE
    if params_path.is_file():  # a FIFO of that name must not be opened for reading
        try:
            loaded = read_json(params_path)
            section = loaded.get("nemo_dask", {}) if isinstance(loaded, dict) else {}
            params = section if isinstance(section, dict) else {}
        except (OSError, ValueError, AttributeError):
            params = {}
    manifest = read_manifest(out)
    if manifest is not None and not isinstance(manifest.get("fingerprint"), str):
        manifest = None
    if not params and manifest is None:
        return None
    fp = params.get("fingerprint") if params else manifest.get("fingerprint")  # type: ignore[union-attr]
    identity = params.get("identity") or (manifest or {}).get("identity") or {}
    if manifest is not None and params and manifest.get("fingerprint") != fp:
        manifest = None  # another run's manifest: its records say nothing about this one
    size = params.get("block_size")
    params_size = size if isinstance(size, int) and size >= 1 else None
    m_size = (manifest or {}).get("block_size")
    block_size = m_size if isinstance(m_size, int) and m_size >= 1 else params_size
    return Recorded(fingerprint=fp, identity=identity if isinstance(identity, dict) else {},
                    block_size=block_size, params_block_size=params_size, manifest=manifest,
                    regions_url=params.get("regions_url"), params=params)


@dataclass
class Resume:
    """What a resume keeps: finished blocks (manifest entries) and why others are redone."""

    finished: dict[int, dict[str, Any]]
    redone: list[str]


def finished_blocks(out: Any, blocks: list[tuple[int, int, int]], run: str,
                    manifest: dict[str, Any] | None,
                    tables: tuple[str, ...] = (HITS_DIR, QC_DIR)) -> Resume:
    """The blocks of ``blocks`` whose partitions check out, and a line for every other block
    that has (or, by the manifest, had) a partition.

    A block is trusted when its files in every one of ``tables`` (hits and QC; and ``null``
    for a decoy or shuffle null; ``null_background`` alone for the blocks of a background
    store) carry this run's stamp for this block and row range, its QC holds one row per
    region, and each file is the one the manifest records (SHA-256), or, for a block finished
    after the manifest was last written, every data page's CRC-32 holds. Files written by
    versions without stamps are not trusted.
    """
    background = tables == (BACKGROUND_DIR,)
    section = ((manifest or {}).get("background") or {}) if background else (manifest or {})
    recorded = {int(k): v for k, v in (section.get("blocks") or {}).items()}
    present = {t: list_partitions(out, t) for t in tables}
    candidates = [(b, s, e) for b, s, e in blocks
                  if b in recorded or any(b in present[t] for t in tables)]

    def check(block: int, start: int, stop: int) -> tuple[dict[str, Any] | None, str | None]:
        listed = recorded.get(block)
        files: dict[str, dict[str, Any]] = {}
        for table in tables:
            expected = ((listed or {}).get("files") or {}).get(table)
            why = _check_partition(out, table, block, start, stop, run, expected, files)
            if why is not None:
                return None, f"its {table} partition {why}"
        entry: dict[str, Any] = {"start": start, "stop": stop}
        if HITS_DIR in files:
            entry["hits"] = files[HITS_DIR]["rows"]
        entry["regions"] = files[QC_DIR]["rows"] if QC_DIR in files else stop - start
        entry["files"] = files
        for key in ("device", "batch_size"):
            if listed and key in listed:
                entry[key] = listed[key]
        return entry, None

    finished: dict[int, dict[str, Any]] = {}
    redone: list[str] = []
    what = "background block" if background else "block"
    # Files are read and hashed on a few threads (the reads, zlib and SHA-256 release the GIL):
    # an object store answers each request after a round trip.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda b: check(*b), candidates)
        for (block, start, stop), (entry, why) in zip(candidates, results, strict=True):
            if entry is not None:
                finished[block] = entry
            else:
                redone.append(f"{what} {block} (regions {start}-{stop - 1}) is computed again: "
                              f"{why}")
    return Resume(finished=finished, redone=redone)


def _check_partition(out: Any, table: str, block: int, start: int, stop: int, run: str,
                     expected: dict[str, Any] | None, files: dict[str, Any]) -> str | None:
    data = read_bytes(out / table / part_name(block))
    if data is None:
        return "is missing"
    meta = footer(data)
    if meta is None:
        return "is not a complete Parquet file (truncated or damaged)"
    stamp = read_stamp(meta)
    if stamp is None:
        return ("carries no stamp of its run (written by an older nemo_dask, or not by a run), "
                "so it cannot be checked")
    if stamp.get("run") != run:
        return f"belongs to another run (fingerprint {_short(str(stamp.get('run')))})"
    if (stamp.get("block"), stamp.get("start"), stamp.get("stop"), stamp.get("table")) != (
            block, start, stop, table):
        where = _regions(stamp.get("start"), stamp.get("stop"))
        return (f"belongs to another block ({stamp.get('table')} of block {stamp.get('block')}, "
                f"regions {where})")
    if table == QC_DIR and meta.num_rows != stop - start:
        return f"holds {meta.num_rows} QC rows for {stop - start} regions"
    record = file_record(data, meta.num_rows)
    if expected is not None:
        if (record["sha256"], record["bytes"]) != (expected.get("sha256"), expected.get("bytes")):
            return "was changed after it was written (its SHA-256 is not the manifest's)"
    else:
        damaged = check_pages(data)
        if damaged is not None:
            return damaged
    files[table] = record
    return None


def _regions(start: Any, stop: Any) -> str:
    try:
        return f"{int(start)}-{int(stop) - 1}"
    except (TypeError, ValueError):
        return "?"


def stamped_block_size(out: Any, run: str) -> int | None:
    """The block size of the partitions of run ``run`` in OUT, from block 0's stamp (a layout
    a run recorded nowhere else, e.g. its manifest lost); None if it says nothing."""
    data = read_bytes(out / QC_DIR / part_name(0))
    meta = footer(data) if data is not None else None
    stamp = read_stamp(meta) if meta is not None else None
    if not stamp or stamp.get("run") != run or stamp.get("block") != 0:
        return None
    size = stamp.get("stop", 0) - stamp.get("start", 0) if isinstance(stamp.get("stop"), int) \
        else 0
    return size if size >= 1 else None


def stray_partitions(out: Any, n_blocks: int, n_background: int = 0) -> list[str]:
    """Partition files of blocks outside a layout of ``n_blocks`` blocks (another layout's),
    and of background blocks beyond ``n_background``."""
    limits = {HITS_DIR: n_blocks, QC_DIR: n_blocks, NULL_DIR: n_blocks, QVALUES_DIR: n_blocks,
              BACKGROUND_DIR: n_background}
    return [f"{table}/{name}" for table, limit in limits.items()
            for b, name in sorted(list_partitions(out, table).items()) if b >= limit]


__all__ = ("Recorded", "Resume", "describe_differences", "finished_blocks", "fingerprint",
           "jsonable", "npz_identity", "peaks_identity", "recorded_run", "run_identity",
           "stamped_block_size", "store_identity", "stray_partitions")
