"""The partitioned Parquet dataset a run writes: layout, atomic partition writes, lazy reads.

Layout of an output directory ``OUT``::

    OUT/hits/part-000000.parquet   one file per block, possibly with 0 rows
    OUT/qc/part-000000.parquet
    OUT/motifs.parquet             the motif table (schema.MOTIFS_SCHEMA)
    OUT/motif_cwms.npy             untrimmed normalised motif matrices, M x 4 x W
    OUT/parameters.json            every parameter of the run
    OUT/manifest.json              the run, its layout, finished blocks, each file's rows, bytes
                                   and SHA-256 (nemo_dask.manifest)

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
from .manifest import (
    HITS_DIR,
    MANIFEST_FILE,
    QC_DIR,
    check_dataset,
    encode_partition,
    file_record,
    part_name,
    partition_stamp,
    write_manifest,
)
from .schema import (
    ANNOTATED_MOTIFS_SCHEMA,
    HITS_SCHEMA,
    MOTIFS_SCHEMA,
    QC_SCHEMA,
    conform,
    polars_schema,
)
from .storage.faults import reporting_faults
from .storage.outputs import open_output, remove_temporaries
from .storage.urls import filesystem, is_url, location, open_input

__all__ = ("CWMS_FILE", "HITS_DIR", "MANIFEST_FILE", "MOTIFS_FILE", "PARAMS_FILE", "QC_DIR",
           "is_output_dir", "part_name", "partition_rows", "read_cwms", "read_json",
           "read_motifs", "read_parameters", "remove_stale_temporaries", "scan_hits", "scan_qc",
           "write_block", "write_manifest", "write_motifs", "write_partitions",
           "write_table_atomic")

MOTIFS_FILE = "motifs.parquet"


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> int:
    """Write ``table`` to ``path`` as Parquet with :func:`nemo_dask.storage.outputs.open_output`.

    Returns the number of rows written. A regular file is replaced atomically (temporary in the
    same directory, then a rename); a full or unwritable file system raises
    :class:`~nemo_dask.storage.faults.StorageFaultError` naming ``path``, the temporary removed.
    """
    with reporting_faults(path), open_output(path, "wb", what="Parquet file") as f:
        pq.write_table(table, f, compression="zstd")
    return table.num_rows


def write_block(
    out: str | os.PathLike[str], block: int, hits: pa.Table | pl.DataFrame, qc: pa.Table | pl.DataFrame
) -> tuple[int, int]:
    """Write one block's hits and QC partitions without a run's stamp; returns their row
    counts (:func:`write_partitions` is what a run's tasks call)."""
    record = write_partitions(out, block, hits, qc)
    return record["hits"], record["regions"]


def write_partitions(out: str | os.PathLike[str], block: int, hits: pa.Table | pl.DataFrame,
                     qc: pa.Table | pl.DataFrame, *, run: str | None = None,
                     start: int | None = None, stop: int | None = None) -> dict[str, Any]:
    """Write one block's hits and QC partitions; returns the block's manifest entry.

    Each file is stamped (``run``, ``block``, rows ``start:stop``; see
    :func:`nemo_dask.manifest.partition_stamp`) when ``run`` is given, carries page CRC-32s,
    and is recorded by its rows, bytes and SHA-256. QC is written last: a block counts as
    finished only when both files are valid.

    Raises
    ------
    StorageFaultError
        The file system is full, read-only or not writable (one line; nothing half-written).
    """
    out = location(out)
    files: dict[str, dict[str, Any]] = {}
    for name, table, schema in ((HITS_DIR, hits, HITS_SCHEMA), (QC_DIR, qc, QC_SCHEMA)):
        arrow = conform(table, schema)
        stamp = None if run is None else partition_stamp(run, block, start or 0,
                                                         stop if stop is not None else 0, name)
        data = encode_partition(arrow, stamp)
        path = out / name / part_name(block)
        # A full or unwritable file system: StorageFaultError naming the file, its temporary
        # removed (storage/faults.py); the block then has no complete pair of partitions.
        with reporting_faults(path), open_output(path, "wb", what="Parquet file") as f:
            f.write(data)
        files[name] = file_record(data, arrow.num_rows)
    entry: dict[str, Any] = {"hits": files[HITS_DIR]["rows"], "regions": files[QC_DIR]["rows"],
                             "files": files}
    if start is not None and stop is not None:
        entry = {"start": int(start), "stop": int(stop), **entry}
    return entry


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
    from .storage.lock import LOCK_NAME

    return (remove_temporaries(location(out) / HITS_DIR)
            + remove_temporaries(location(out) / QC_DIR)
            + remove_temporaries(out, (MOTIFS_FILE, CWMS_FILE, PARAMS_FILE, MANIFEST_FILE,
                                       "regions.zarr", LOCK_NAME)))


def scan_hits(out: str | os.PathLike[str], *, labels: bool = False) -> pl.LazyFrame:
    """Lazy polars frame over every hits partition of ``out`` (schema.HITS_SCHEMA); with
    ``labels``, plus ``motif_label`` last (:mod:`nemo_dask.matching.labels`: the motif's name
    and best TOMTOM match of an annotated run, else its name).

    The partitions are first checked against ``OUT/manifest.json``
    (:func:`nemo_dask.manifest.check_dataset`): a dataset that does not match is refused with
    :class:`~nemo_dask.errors.CorruptDataError`, one line naming the file.
    """
    check_dataset(out, tables=(HITS_DIR,))
    hits = _scan(out, HITS_DIR, HITS_SCHEMA)
    if not labels:
        return hits
    from .matching.labels import with_labels

    return with_labels(hits, read_motifs(out))


def scan_qc(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """Lazy polars frame over every QC partition of ``out`` (schema.QC_SCHEMA), checked
    against the manifest as :func:`scan_hits`."""
    check_dataset(out, tables=(QC_DIR,))
    return _scan(out, QC_DIR, QC_SCHEMA)


def _scan(out: str | os.PathLike[str], sub: str, schema: pa.Schema) -> pl.LazyFrame:
    d = location(out) / sub
    if is_url(d):
        return _scan_url(str(d), schema)
    if not d.is_dir() or not any(d.glob("part-*.parquet")):
        return pl.LazyFrame(schema=polars_schema(schema))
    # A glob, not the directory: hidden temporaries of a run in progress must not be read.
    return pl.scan_parquet(str(d / "part-*.parquet"), schema=polars_schema(schema))


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


#: Parquet key-value metadata of an annotated motif table: how its matches were made (JSON).
ANNOTATION_METADATA_KEY = b"nemo_dask.annotation"


def write_motifs(out: str | os.PathLike[str], motifs: pl.DataFrame,
                 annotation: dict[str, Any] | None = None) -> None:
    """Write the motif table to ``OUT/motifs.parquet``.

    A table with ``motif_label`` is an annotated one (schema.ANNOTATED_MOTIFS_SCHEMA): its
    match columns are kept and ``annotation`` (the database, conversion and thresholds used)
    is stored as the file's metadata, so the table says how it was made.
    """
    annotated = "motif_label" in motifs.columns
    table = conform(motifs, ANNOTATED_MOTIFS_SCHEMA if annotated else MOTIFS_SCHEMA)
    if annotated and annotation is not None:
        table = table.replace_schema_metadata(
            {ANNOTATION_METADATA_KEY: json.dumps(annotation, sort_keys=True)})
    write_table_atomic(table, location(out) / MOTIFS_FILE)


def read_motifs(out: str | os.PathLike[str]) -> pl.DataFrame:
    """The motif table of a run (schema.MOTIFS_SCHEMA; an annotated run's has the columns of
    schema.ANNOTATED_MOTIFS_SCHEMA)."""
    with open_input(location(out) / MOTIFS_FILE) as f:
        # ParquetFile, not pq.read_table: that imports pyarrow.dataset and with it pandas,
        # ~0.2 s on every worker's first task.
        return pl.from_arrow(pq.ParquetFile(f).read())  # type: ignore[return-value]


def read_annotation(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """How the run's motifs were annotated (database, conversion, thresholds), or None when
    they never were."""
    with open_input(location(out) / MOTIFS_FILE) as f:
        metadata = pq.ParquetFile(f).schema_arrow.metadata or {}
    text = metadata.get(ANNOTATION_METADATA_KEY)
    return None if text is None else json.loads(text)


def read_cwms(out: Any) -> Any:
    """``OUT/motif_cwms.npy`` (M x 4 x W) of a run, local or at an fsspec URL."""
    import io

    import numpy as np

    with open_input(location(out) / CWMS_FILE) as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


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
