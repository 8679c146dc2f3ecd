"""The partitioned Parquet dataset a run writes: layout, atomic partition writes, lazy reads.

Layout of an output directory ``OUT``::

    OUT/hits/part-000000.parquet   one file per block, possibly with 0 rows
    OUT/qc/part-000000.parquet
    OUT/motifs.parquet             the motif table (schema.MOTIFS_SCHEMA)
    OUT/motif_cwms.npy             untrimmed normalised motif matrices, M x 4 x W
    OUT/parameters.json            every parameter of the run
    OUT/manifest.json              finished blocks and their row counts

A partition is written to a hidden temporary name beside its final name and renamed into place
(:mod:`nemo_dask.storage.outputs`), so a reader (and a resumed run) only ever sees complete
files; the temporary's name (``.part-000000.parquet.tmp-<hex>``) matches no glob of the dataset, so
``pl.scan_parquet('OUT/hits/*.parquet')`` works while a run writes and after a killed writer.
"""

from __future__ import annotations

import json
import os
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

# motif_cwms.npy and parameters.json keep finemo's names (and parameters.json finemo's keys).
from .finemo.formats import CWMS_FILE as CWMS_FILE
from .finemo.formats import PARAMS_FILE as PARAMS_FILE
from .schema import HITS_SCHEMA, MOTIFS_SCHEMA, NULL_HITS_SCHEMA, QC_SCHEMA, conform, polars_schema
from .storage.outputs import open_output, remove_temporaries, write_json
from .storage.urls import filesystem, is_url, location, open_input

HITS_DIR = "hits"
QC_DIR = "qc"
NULL_DIR = "null"  # calibrated runs: the null fit's hits (nemo_dask.calibration)
MOTIFS_FILE = "motifs.parquet"
MANIFEST_FILE = "manifest.json"


def part_name(block: int) -> str:
    """File name of block ``block``'s partition (the same in ``hits/`` and ``qc/``)."""
    return f"part-{block:06d}.parquet"


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> int:
    """Write ``table`` to ``path`` as Parquet with :func:`nemo_dask.storage.outputs.open_output`.

    Returns the number of rows written. A regular file is replaced atomically (temporary in the
    same directory, then a rename).
    """
    with open_output(path, "wb", what="Parquet file") as f:
        pq.write_table(table, f, compression="zstd")
    return table.num_rows


def write_block(
    out: str | os.PathLike[str], block: int, hits: pa.Table | pl.DataFrame,
    qc: pa.Table | pl.DataFrame, null: pa.Table | pl.DataFrame | None = None,
) -> tuple[int, int]:
    """Write one block's hits and QC partitions (and its null hits, for calibrated runs);
    returns the hits' and QC's row counts.

    QC is written last: a block counts as finished only when every file is valid.
    """
    out = location(out)
    if null is not None:
        write_table_atomic(conform(null, NULL_HITS_SCHEMA), out / NULL_DIR / part_name(block))
    n_hits = write_table_atomic(conform(hits, HITS_SCHEMA), out / HITS_DIR / part_name(block))
    n_qc = write_table_atomic(conform(qc, QC_SCHEMA), out / QC_DIR / part_name(block))
    return n_hits, n_qc


def partition_rows(path: str | os.PathLike[str]) -> int | None:
    """Row count of a complete Parquet file, or None if it is missing or unreadable.

    On an object store the object was written whole (one request), but a reader still checks
    its footer: an object some other tool truncated is not trusted either.
    """
    if not location(path).is_file():  # a FIFO or device of that name must not be read (it blocks)
        return None
    try:
        with open_input(path) as f:
            return pq.read_metadata(f).num_rows
    except (OSError, pa.ArrowInvalid):
        return None


def remove_stale_temporaries(out: str | os.PathLike[str]) -> int:
    """Delete temporaries left by an interrupted writer in ``hits/``, ``qc/`` and ``out`` itself.

    Returns how many were removed (names as :func:`nemo_dask.storage.temporary.is_temporary`
    says; in ``out`` only those of the run's own files, since ``out`` may also hold a user's
    files).
    """
    return (remove_temporaries(location(out) / HITS_DIR)
            + remove_temporaries(location(out) / QC_DIR)
            + remove_temporaries(location(out) / NULL_DIR)
            + remove_temporaries(out, (MOTIFS_FILE, CWMS_FILE, PARAMS_FILE, MANIFEST_FILE)))


def scan_hits(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """Lazy polars frame over every hits partition of ``out`` (schema.HITS_SCHEMA)."""
    return _scan(out, HITS_DIR, HITS_SCHEMA)


def scan_null(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """Lazy polars frame over every null-hits partition of a calibrated run
    (schema.NULL_HITS_SCHEMA)."""
    return _scan(out, NULL_DIR, NULL_HITS_SCHEMA)


def scan_qc(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """Lazy polars frame over every QC partition of ``out`` (schema.QC_SCHEMA)."""
    return _scan(out, QC_DIR, QC_SCHEMA)


def _scan(out: str | os.PathLike[str], sub: str, schema: pa.Schema) -> pl.LazyFrame:
    d = location(out) / sub
    if is_url(d):
        return _scan_url(str(d), schema)
    if not d.is_dir() or not any(d.glob("part-*.parquet")):
        return pl.LazyFrame(schema=polars_schema(schema))
    # A glob, not the directory: hidden temporaries of a run in progress must not be read.
    # missing_columns: partitions written before an optional column existed (schema.py).
    return pl.scan_parquet(str(d / "part-*.parquet"), schema=polars_schema(schema),
                           missing_columns="insert")


def _scan_url(url: str, schema: pa.Schema) -> pl.LazyFrame:
    """The partitions under a URL as a lazy frame, read through fsspec by pyarrow."""
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, root = filesystem(url)
    files = sorted(f for f in fs.glob(f"{root.rstrip('/')}/part-*.parquet"))
    if not files:
        return pl.LazyFrame(schema=polars_schema(schema))
    dataset = ds.dataset(files, schema=schema, format="parquet",
                         filesystem=PyFileSystem(FSSpecHandler(fs)))
    return pl.scan_pyarrow_dataset(dataset)


def write_motifs(out: str | os.PathLike[str], motifs: pl.DataFrame) -> None:
    """Write the motif table to ``OUT/motifs.parquet``."""
    write_table_atomic(conform(motifs, MOTIFS_SCHEMA), location(out) / MOTIFS_FILE)


def read_motifs(out: str | os.PathLike[str]) -> pl.DataFrame:
    """The motif table of a run (schema.MOTIFS_SCHEMA)."""
    with open_input(location(out) / MOTIFS_FILE) as f:
        # ParquetFile, not pq.read_table: that imports pyarrow.dataset and with it pandas,
        # ~0.2 s on every worker's first task.
        return pl.from_arrow(pq.ParquetFile(f).read())  # type: ignore[return-value]


def read_cwms(out: Any) -> Any:
    """``OUT/motif_cwms.npy`` (M x 4 x W) of a run, local or at an fsspec URL."""
    import io

    import numpy as np

    with open_input(location(out) / CWMS_FILE) as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def write_manifest(out: Any, run_fingerprint: str, n_blocks: int,
                   finished: dict[int, dict[str, Any]], complete: bool) -> None:
    """Record the finished blocks (and whether the run is complete) in ``manifest.json``."""
    write_json({
        "fingerprint": run_fingerprint,
        "n_blocks": n_blocks,
        "complete": complete,
        "n_hits": int(sum(b["hits"] for b in finished.values())),
        "blocks": {str(k): finished[k] for k in sorted(finished)},
    }, location(out) / MANIFEST_FILE)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`nemo_dask.storage.outputs.write_json`."""
    with open_input(path, "r") as f:
        return json.load(f)


def is_output_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory a nemo_dask run (or import) wrote: its parameters.json
    carries nemo_dask's own record."""
    params = location(path) / PARAMS_FILE
    if not params.is_file():
        return False
    try:
        record = read_json(params).get("nemo_dask")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(record, dict) and bool(record)


def read_parameters(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters a run in ``out`` was made with."""
    return read_json(location(out) / PARAMS_FILE)
