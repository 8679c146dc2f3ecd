"""The partitioned Parquet dataset a run writes: layout, atomic partition writes, lazy reads.

Layout of an output directory ``OUT``::

    OUT/hits/part-000000.parquet   one file per block, possibly with 0 rows
    OUT/qc/part-000000.parquet
    OUT/motifs.parquet             the motif table (schema.MOTIFS_SCHEMA)
    OUT/motif_cwms.npy             untrimmed normalised motif matrices, M x 4 x W
    OUT/parameters.json            every parameter of the run
    OUT/manifest.json              finished blocks and their row counts

A partition is written to a hidden temporary name beside its final name and renamed into place,
so a reader (and a resumed run) only ever sees complete files.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

# motif_cwms.npy and parameters.json keep finemo's names (and parameters.json finemo's keys).
from .finemo.formats import CWMS_FILE as CWMS_FILE
from .finemo.formats import PARAMS_FILE as PARAMS_FILE
from .schema import HITS_SCHEMA, MOTIFS_SCHEMA, QC_SCHEMA, conform

HITS_DIR = "hits"
QC_DIR = "qc"
MOTIFS_FILE = "motifs.parquet"
MANIFEST_FILE = "manifest.json"
_TMP_PREFIX = ".tmp-"


def part_name(block: int) -> str:
    """File name of block ``block``'s partition (the same in ``hits/`` and ``qc/``)."""
    return f"part-{block:06d}.parquet"


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> int:
    """Write ``table`` to ``path`` as Parquet via a temporary file and a rename.

    Returns the number of rows written. The temporary lives in the same directory so that the
    rename is atomic on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return table.num_rows


def write_block(
    out: str | os.PathLike[str], block: int, hits: pa.Table | pl.DataFrame, qc: pa.Table | pl.DataFrame
) -> tuple[int, int]:
    """Write one block's hits and QC partitions; returns their row counts.

    QC is written last: a block counts as finished only when both files are valid.
    """
    out = Path(out)
    n_hits = write_table_atomic(conform(hits, HITS_SCHEMA), out / HITS_DIR / part_name(block))
    n_qc = write_table_atomic(conform(qc, QC_SCHEMA), out / QC_DIR / part_name(block))
    return n_hits, n_qc


def partition_rows(path: str | os.PathLike[str]) -> int | None:
    """Row count of a complete Parquet file, or None if it is missing or unreadable."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowInvalid):
        return None


def remove_stale_temporaries(out: str | os.PathLike[str]) -> int:
    """Delete temporaries left by an interrupted writer; returns how many were removed."""
    removed = 0
    for sub in (HITS_DIR, QC_DIR):
        d = Path(out) / sub
        if d.is_dir():
            for f in d.glob(f"{_TMP_PREFIX}*"):
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def scan_hits(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """Lazy polars frame over every hits partition of ``out`` (schema.HITS_SCHEMA)."""
    return _scan(out, HITS_DIR, HITS_SCHEMA)


def scan_qc(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """Lazy polars frame over every QC partition of ``out`` (schema.QC_SCHEMA)."""
    return _scan(out, QC_DIR, QC_SCHEMA)


def _scan(out: str | os.PathLike[str], sub: str, schema: pa.Schema) -> pl.LazyFrame:
    d = Path(out) / sub
    if not d.is_dir() or not any(d.glob("part-*.parquet")):
        return pl.LazyFrame(pl.from_arrow(schema.empty_table()))
    # A glob, not the directory: hidden temporaries of a run in progress must not be read.
    return pl.scan_parquet(str(d / "part-*.parquet"), schema=pl.from_arrow(schema.empty_table()).schema)


def write_motifs(out: str | os.PathLike[str], motifs: pl.DataFrame) -> None:
    """Write the motif table to ``OUT/motifs.parquet``."""
    write_table_atomic(conform(motifs, MOTIFS_SCHEMA), Path(out) / MOTIFS_FILE)


def read_motifs(out: str | os.PathLike[str]) -> pl.DataFrame:
    """The motif table of a run (schema.MOTIFS_SCHEMA)."""
    return pl.from_arrow(pq.read_table(Path(out) / MOTIFS_FILE))  # type: ignore[return-value]


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=4)
        f.write("\n")
    os.replace(tmp, path)


def write_manifest(out: Path, run_fingerprint: str, n_blocks: int,
                   finished: dict[int, dict[str, Any]], complete: bool) -> None:
    """Record the finished blocks (and whether the run is complete) in ``manifest.json``."""
    write_json_atomic({
        "fingerprint": run_fingerprint,
        "n_blocks": n_blocks,
        "complete": complete,
        "n_hits": int(sum(b["hits"] for b in finished.values())),
        "blocks": {str(k): finished[k] for k in sorted(finished)},
    }, out / MANIFEST_FILE)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`write_json_atomic`."""
    with open(path) as f:
        return json.load(f)


def read_parameters(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters a run in ``out`` was made with."""
    return read_json(Path(out) / PARAMS_FILE)
