"""The manifest of a run's dataset, and checking partitions against it.

``OUT/manifest.json`` records the run (its fingerprint), its block layout (``block_size``,
``n_blocks``), whether it is complete, and for every finished block its row range, its row
counts and, per partition file, what was written: rows, bytes and the SHA-256 of the file
(computed from the bytes as they were written, so any later change of the file shows).

Each partition also identifies itself: its Parquet footer carries a ``nemo_dask`` key
(:func:`partition_stamp`: the run's fingerprint, the block, its row range and the table), and
its data pages carry CRC-32 checksums (Parquet's page checksums), so a partition the driver had
no time to record in the manifest (killed after the task wrote it) can still be checked
whole before a resume trusts it.

Who checks what:

* a resume (:mod:`nemo_dask.calling.identity`) trusts a block only when both its partitions
  carry this run's stamp for that block, its QC holds one row per region, and either the
  file's SHA-256 is the manifest's or (not yet in the manifest) every page's CRC holds;
* the readers (:func:`check_dataset`: ``dataset.scan_hits``/``scan_qc``, ``CallHitsResult``,
  ``export``, ``report``, ``tracks``, ``collapse-hits``...) refuse, in one line, a dataset whose
  partitions are not exactly the manifest's: a missing or extra partition, other row counts,
  another size or SHA-256.

Runs written before these records existed (no ``files`` in their blocks) are checked for what
their manifest has (the set of partitions and their row counts).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CorruptDataError
from .storage.outputs import write_json
from .storage.urls import filesystem, is_url, location, open_input

HITS_DIR = "hits"
QC_DIR = "qc"
#: A block's null hits in a run whose q-values need a second fit of every region (decoy or
#: shuffle null: nemo_dask.calibration), written with the block's hits and QC.
NULL_DIR = "null"
#: A background null's hits, one partition per block of the background store.
BACKGROUND_DIR = "null_background"
#: Every hit's q-value, one partition per block in its hits partition's row order, written by
#: the end-of-run pass (nemo_dask.calibration.assign) and recorded in the manifest's
#: ``qvalues`` section.
QVALUES_DIR = "qvalues"
TABLES = (HITS_DIR, QC_DIR)
MANIFEST_FILE = "manifest.json"
#: Key of a partition's stamp in its Parquet footer's key-value metadata.
STAMP_KEY = b"nemo_dask"


def part_name(block: int) -> str:
    """File name of block ``block``'s partition (the same in ``hits/`` and ``qc/``)."""
    return f"part-{block:06d}.parquet"


def block_of(name: str) -> int | None:
    """The block number of a partition file name (``part-000012.parquet`` -> 12), else None."""
    if name.startswith("part-") and name.endswith(".parquet"):
        digits = name[len("part-"):-len(".parquet")]
        if digits.isdigit():
            return int(digits)
    return None


def partition_stamp(run: str, block: int, start: int, stop: int, table: str,
                    **extra: Any) -> dict[str, Any]:
    """What a partition's footer says it is: run fingerprint, block, rows ``start:stop``, table
    (and, for a q-values partition, ``hits_sha256``: the hits file its rows belong to)."""
    return {"run": run, "block": int(block), "start": int(start), "stop": int(stop),
            "table": table, **extra}


def encode_partition(table: pa.Table, stamp: dict[str, Any] | None) -> bytes:
    """``table`` as the bytes of a Parquet file: zstd, page CRC-32s, ``stamp`` in the footer."""
    if stamp is not None:
        meta = dict(table.schema.metadata or {})
        meta[STAMP_KEY] = json.dumps(stamp, sort_keys=True).encode()
        table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def file_record(data: bytes, rows: int) -> dict[str, Any]:
    """The manifest's record of one partition file written as ``data``."""
    return {"rows": int(rows), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_manifest(out: Any, run_fingerprint: str, n_blocks: int | None,
                   finished: dict[int, dict[str, Any]], complete: bool,
                   block_size: int | None = None, identity: dict[str, Any] | None = None,
                   sections: dict[str, Any] | None = None) -> None:
    """Record the run, its layout and its finished blocks in ``manifest.json``.

    ``n_blocks`` None (with no blocks) is the record a run writes when it claims ``OUT``, before
    its layout is known: it marks ``OUT`` as this run's (``identity`` says what the run is).
    ``sections`` adds the records of a run with q-values: ``tables`` (each block's tables,
    when more than hits and QC), ``background`` (the background null's blocks) and
    ``qvalues`` (the q-value partitions).
    """
    record: dict[str, Any] = {
        "fingerprint": run_fingerprint,
        "n_blocks": n_blocks,
        "complete": complete,
        "n_hits": int(sum(b["hits"] for b in finished.values())),
        "blocks": {str(k): finished[k] for k in sorted(finished)},
    }
    if block_size is not None:
        record["block_size"] = int(block_size)
    if identity is not None:
        record["identity"] = identity
    record.update(sections or {})
    write_json(record, location(out) / MANIFEST_FILE)


def read_manifest(out: Any) -> dict[str, Any] | None:
    """``OUT/manifest.json``, or None when there is none (or it does not parse)."""
    try:
        data = read_bytes(location(out) / MANIFEST_FILE)
        record = json.loads(data) if data is not None else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_stamp(metadata: pq.FileMetaData) -> dict[str, Any] | None:
    """The stamp in a partition's footer (None: written by an older nemo_dask, or not ours)."""
    raw = (metadata.metadata or {}).get(STAMP_KEY)
    try:
        stamp = json.loads(raw) if raw else None
    except ValueError:
        return None
    return stamp if isinstance(stamp, dict) else None


def read_bytes(path: Any) -> bytes | None:
    """The whole file, or None when it is missing (or not a plain file)."""
    p = location(path)
    if is_url(p):
        fs, root = filesystem(str(p))
        # s3fs sizes an object from its cached listing of the directory before it reads it, so
        # an object written since (by a worker) would read as missing: forget that listing.
        fs.invalidate_cache(root)
        try:
            return bytes(fs.cat_file(root))
        except (FileNotFoundError, IsADirectoryError):
            return None
    if not p.is_file():  # a FIFO or device of that name must not be read (it blocks)
        return None
    try:
        with open_input(p) as f:
            return f.read()
    except FileNotFoundError:
        return None


def check_pages(data: bytes) -> str | None:
    """Read every page of a Parquet file, verifying the page CRC-32s; None if all hold, else
    what failed."""
    try:
        pq.ParquetFile(io.BytesIO(data), page_checksum_verification=True).read()
    except (OSError, pa.ArrowException) as err:
        return f"a data page is damaged ({_short(err)})"
    return None


def footer(data: bytes) -> pq.FileMetaData | None:
    """The Parquet footer of ``data``, or None when it does not read."""
    try:
        return pq.read_metadata(io.BytesIO(data))
    except (OSError, pa.ArrowException):
        return None


def list_partitions(out: Any, table: str) -> dict[int, str]:
    """Block -> file name of every partition file in ``OUT/<table>/`` (temporaries excluded)."""
    d = location(out) / table
    if is_url(d):
        fs, root = filesystem(str(d))
        try:
            # refresh: s3fs caches listings, and workers write partitions behind its back
            names = [p.rstrip("/").rsplit("/", 1)[-1]
                     for p in fs.ls(root, detail=False, refresh=True)]
        except FileNotFoundError:
            names = []
    else:
        names = os.listdir(d) if d.is_dir() else []
    found = {}
    for name in names:
        b = block_of(name)
        if b is not None:
            found[b] = name
    return found


def block_tables(manifest: dict[str, Any] | None) -> tuple[str, ...]:
    """The tables each block of a run writes (hits and QC, and ``null`` for a decoy or
    shuffle null)."""
    tables = (manifest or {}).get("tables")
    return tuple(tables) if isinstance(tables, list) and tables else TABLES


def table_records(manifest: dict[str, Any], table: str) -> dict[int, dict[str, Any]] | None:
    """Block -> the manifest's record of that block's partition in ``table`` (rows, bytes,
    SHA-256; rows only for runs recorded before file records), or None when the run has no
    such table."""
    if table == QVALUES_DIR:
        section = manifest.get("qvalues")
        if not isinstance(section, dict):
            return None
        return {int(k): v for k, v in (section.get("files") or {}).items()}
    if table == BACKGROUND_DIR:
        section = manifest.get("background")
        if not isinstance(section, dict):
            return None
        blocks = section.get("blocks") or {}
        return {int(k): (v.get("files") or {}).get(table, {}) for k, v in blocks.items()}
    if table not in block_tables(manifest):
        return None
    records = {}
    for k, v in (manifest.get("blocks") or {}).items():
        rec = (v.get("files") or {}).get(table)
        if rec is None and table in TABLES:  # a manifest written before file records: rows
            rec = {"rows": v.get("hits" if table == HITS_DIR else "regions")}
        records[int(k)] = rec or {}
    return records


def check_dataset(out: Any, *, tables: Iterable[str] | None = None,
                  allow_incomplete: bool = True) -> dict[str, Any] | None:
    """Refuse, in one line, a dataset whose partitions are not what its manifest records.

    ``tables`` (default: every table the run has: each block's, the background null's and
    the q-values) are checked; a table the run does not have is skipped. Returns the manifest
    (None when ``OUT`` has none and is not a run's: a bare directory of partitions, which has
    nothing to be checked against).

    Raises
    ------
    CorruptDataError
        A partition the manifest lists is missing, or its rows, size or SHA-256 differ; a
        partition the manifest does not list is there (in a complete run; in a run still being
        written only partitions stamped with its fingerprint may be); a q-values partition
        belongs to another hits file than the manifest's; the manifest is missing from a run's
        directory.
    InputError
        The run is incomplete and ``allow_incomplete`` is False.
    """
    from .dataset import is_output_dir

    manifest = read_manifest(out)
    shown = str(location(out))
    if manifest is None:
        if (location(out) / MANIFEST_FILE).exists() or is_output_dir(out):
            raise CorruptDataError(
                f"{shown}/{MANIFEST_FILE} is missing or unreadable, so the run's partitions "
                "cannot be checked; rerun the same call-hits into it to rebuild it (finished "
                "blocks are checked and kept)")
        return None
    complete = bool(manifest.get("complete"))
    if not complete and not allow_incomplete:
        from .errors import InputError

        done = len(manifest.get("blocks", {}))
        raise InputError(f"{shown}/{MANIFEST_FILE}: the run is incomplete ({done} of "
                         f"{manifest.get('n_blocks', '?')} blocks finished); resume it with "
                         "call-hits, or export what exists with --allow-incomplete")
    if tables is None:
        tables = (*block_tables(manifest), BACKGROUND_DIR, QVALUES_DIR)
    run = manifest.get("fingerprint")
    for table in tables:
        records = table_records(manifest, table)
        if records is None:
            continue
        _check_table(out, shown, table, records, run, complete
                     and table not in (BACKGROUND_DIR, QVALUES_DIR))
    if QVALUES_DIR in tables and manifest.get("qvalues"):
        _check_qvalues_belong(shown, manifest)
    return manifest


def _check_table(out: Any, shown: str, table: str, records: dict[int, dict[str, Any]],
                 run: Any, complete: bool) -> None:
    files = list_partitions(out, table)
    missing = [b for b in sorted(records) if b not in files]
    if missing:
        raise _mismatch(shown, table, part_name(missing[0]), "is missing")
    # Files are read and hashed on a few threads (reads and SHA-256 release the GIL).
    with ThreadPoolExecutor(max_workers=8) as pool:
        faults = pool.map(lambda b: _check_listed(out, table, b, records[b]), sorted(records))
        for b, fault in zip(sorted(records), faults, strict=True):
            if fault is not None:
                raise _mismatch(shown, table, part_name(b), fault)
    for b, name in sorted(files.items()):
        if b in records:
            continue
        if complete:
            raise _mismatch(shown, table, name, "is not in the manifest of this complete run "
                            f"({len(records)} blocks)")
        stamp = _footer_stamp(out, table, name)
        if stamp is None or stamp.get("run") != run or stamp.get("block") != b:
            raise _mismatch(shown, table, name, "is not a partition of the run being "
                            "written there (its footer names another run or block)")


def _check_qvalues_belong(shown: str, manifest: dict[str, Any]) -> None:
    """Each q-values partition must be of the hits file the manifest records now, and cover
    every block: q-values of other hits are never joined to these."""
    q = table_records(manifest, QVALUES_DIR) or {}
    blocks = {int(k): v for k, v in (manifest.get("blocks") or {}).items()}
    for b, rec in sorted(blocks.items()):
        hits = (rec.get("files") or {}).get(HITS_DIR) or {}
        qrec = q.get(b)
        if qrec is None:
            raise _mismatch(shown, QVALUES_DIR, part_name(b), "is not recorded, though block "
                            f"{b} is: the q-values were computed before it was")
        if (qrec.get("rows"), qrec.get("hits_sha256")) != (hits.get("rows"), hits.get("sha256")):
            raise _mismatch(shown, QVALUES_DIR, part_name(b), "belongs to another hits "
                            "partition than the manifest's")
    extra = sorted(set(q) - set(blocks))
    if extra:
        raise _mismatch(shown, QVALUES_DIR, part_name(extra[0]), "is of a block the run does "
                        "not have")


def _check_listed(out: Any, table: str, block: int, rec: dict[str, Any]) -> str | None:
    """What is wrong with a partition the manifest lists (None: it is the one recorded)."""
    name = part_name(block)
    if "sha256" not in rec:
        if "rows" not in rec:
            return "has no record in the manifest"
        rows = _footer_rows(out, table, name)  # a manifest written before file records
        return None if rows == rec["rows"] else f"holds {rows} rows, the manifest {rec['rows']}"
    data = read_bytes(location(out) / table / name)
    if data is None:
        return "is missing"
    found = file_record(data, rec.get("rows", 0))
    if (found["bytes"], found["sha256"]) == (rec.get("bytes"), rec.get("sha256")):
        return None
    return (f"is not the file the run wrote ({found['bytes']} bytes, SHA-256 "
            f"{found['sha256'][:12]}; the manifest records {rec.get('bytes')} bytes, "
            f"{str(rec.get('sha256'))[:12]})")


def _footer_rows(out: Any, table: str, name: str) -> int | None:
    data = read_bytes(location(out) / table / name)
    meta = footer(data) if data is not None else None
    return None if meta is None else meta.num_rows


def _footer_stamp(out: Any, table: str, name: str) -> dict[str, Any] | None:
    data = read_bytes(location(out) / table / name)
    meta = footer(data) if data is not None else None
    return None if meta is None else read_stamp(meta)


def _mismatch(shown: str, table: str, name: str, what: str) -> CorruptDataError:
    return CorruptDataError(
        f"{shown}/{table}/{name} {what}: the dataset does not match its {MANIFEST_FILE}, "
        "so it is not read; rerun the same call-hits into it (blocks that do not check out are "
        "computed again), then read it")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 100 else text[:97] + "..."


__all__ = ("BACKGROUND_DIR", "HITS_DIR", "MANIFEST_FILE", "NULL_DIR", "QC_DIR", "QVALUES_DIR",
           "STAMP_KEY", "TABLES", "block_of", "block_tables", "check_dataset", "table_records", "check_pages", "encode_partition", "file_record", "footer",
           "list_partitions", "part_name", "partition_stamp", "read_bytes", "read_manifest",
           "read_stamp", "write_manifest")
