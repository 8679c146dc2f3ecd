"""The partitioned Parquet dataset a run writes: layout, atomic partition writes, lazy reads.

Layout of an output directory ``OUT``::

    OUT/hits/part-000000.parquet   one file per block, possibly with 0 rows
    OUT/qc/part-000000.parquet
    OUT/motifs.parquet             the motif table (schema.MOTIFS_SCHEMA)
    OUT/motif_cwms.npy             untrimmed normalised motif matrices, M x 4 x W
    OUT/parameters.json            every parameter of the run
    OUT/manifest.json              the run, its layout, finished blocks, each file's rows, bytes
                                   and SHA-256 (nemo_dask.manifest)
    OUT/qvalues/part-000000.parquet  every hit's q-value, in its hits partition's row order
                                   (written once every block is finished; nemo_dask.calibration)
    OUT/null/part-000000.parquet   a decoy or shuffle null's hits of the block
    OUT/null_background/part-000000.parquet  a background null's hits of a background block

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
    BACKGROUND_DIR,
    HITS_DIR,
    MANIFEST_FILE,
    NULL_DIR,
    QC_DIR,
    QVALUES_DIR,
    check_dataset,
    encode_partition,
    file_record,
    part_name,
    partition_stamp,
    read_manifest,
    table_records,
    write_manifest,
)
from .schema import (
    ANNOTATED_MOTIFS_SCHEMA,
    HITS_SCHEMA,
    MOTIFS_SCHEMA,
    NULL_HITS_SCHEMA,
    QC_SCHEMA,
    QVALUE,
    QVALUES_SCHEMA,
    conform,
    polars_schema,
)
from .storage.faults import reporting_faults
from .storage.outputs import open_output, remove_temporaries
from .storage.urls import filesystem, is_url, location, open_input

__all__ = ("BACKGROUND_DIR", "CWMS_FILE", "HITS_DIR", "MANIFEST_FILE", "MOTIFS_FILE", "NULL_DIR",
           "PARAMS_FILE", "QC_DIR", "QVALUES_DIR", "has_qvalues",
           "is_output_dir", "part_name", "partition_rows", "read_cwms", "read_json",
           "read_motifs", "read_parameters", "remove_stale_temporaries", "scan_hits",
           "scan_null", "scan_qc", "write_block", "write_manifest", "write_motifs",
           "write_partitions", "write_stamped", "write_table_atomic")

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
                     qc: pa.Table | pl.DataFrame, *, null: pa.Table | pl.DataFrame | None = None,
                     run: str | None = None, start: int | None = None,
                     stop: int | None = None) -> dict[str, Any]:
    """Write one block's hits and QC partitions (and its null hits: a run whose q-values have
    a decoy or shuffle null); returns the block's manifest entry.

    Each file is stamped (``run``, ``block``, rows ``start:stop``; see
    :func:`nemo_dask.manifest.partition_stamp`) when ``run`` is given, carries page CRC-32s,
    and is recorded by its rows, bytes and SHA-256. QC is written last: a block counts as
    finished only when every file is valid.

    Raises
    ------
    StorageFaultError
        The file system is full, read-only or not writable (one line; nothing half-written).
    """
    out = location(out)
    files: dict[str, dict[str, Any]] = {}
    tables = [(HITS_DIR, hits, HITS_SCHEMA)]
    if null is not None:
        tables.append((NULL_DIR, null, NULL_HITS_SCHEMA))
    for name, table, schema in (*tables, (QC_DIR, qc, QC_SCHEMA)):
        files[name] = write_stamped(out / name / part_name(block), conform(table, schema),
                                    None if run is None else partition_stamp(
                                        run, block, start or 0,
                                        stop if stop is not None else 0, name))
    entry: dict[str, Any] = {"hits": files[HITS_DIR]["rows"], "regions": files[QC_DIR]["rows"],
                             "files": files}
    if start is not None and stop is not None:
        entry = {"start": int(start), "stop": int(stop), **entry}
    return entry


def write_stamped(path: Any, table: pa.Table, stamp: dict[str, Any] | None) -> dict[str, Any]:
    """Write ``table`` to ``path`` as a stamped partition (whole, atomically); returns the
    manifest's record of it (rows, bytes, SHA-256).

    Raises
    ------
    StorageFaultError
        The file system is full, read-only or not writable: one line naming the file, its
        temporary removed (:mod:`nemo_dask.storage.faults`); the block then has no complete
        set of partitions.
    """
    data = encode_partition(table, stamp)
    with reporting_faults(path), open_output(path, "wb", what="Parquet file") as f:
        f.write(data)
    return file_record(data, table.num_rows)


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
    """Delete temporaries left by an interrupted writer in the partition directories and ``out``.

    Returns how many were removed (names as :func:`nemo_dask.storage.temporary.is_temporary`
    says; in ``out`` only those of the run's own files, since ``out`` may also hold a user's
    files).
    """
    from .storage.lock import LOCK_NAME

    return (sum(remove_temporaries(location(out) / d)
                for d in (HITS_DIR, QC_DIR, NULL_DIR, BACKGROUND_DIR, QVALUES_DIR))
            + remove_temporaries(out, (MOTIFS_FILE, CWMS_FILE, PARAMS_FILE, MANIFEST_FILE,
                                       "regions.zarr", LOCK_NAME)))


def scan_hits(out: str | os.PathLike[str], *, labels: bool = False) -> pl.LazyFrame:
    """Lazy polars frame over every hits partition of ``out``: schema.HITS_SCHEMA's columns,
    then ``hit_qvalue`` (the run's q-values: null where the run has none, or has not finished
    computing them); with ``labels``, plus ``motif_label`` last
    (:mod:`nemo_dask.matching.labels`: the motif's name and best TOMTOM match of an annotated
    run, else its name).

    The partitions are first checked against ``OUT/manifest.json``
    (:func:`nemo_dask.manifest.check_dataset`): a dataset that does not match is refused with
    :class:`~nemo_dask.errors.CorruptDataError`, one line naming the file. q-values are joined
    by position: each block's q-values partition holds its hits partition's rows in order, and
    the manifest records which hits file each belongs to (checked here).
    """
    manifest = check_dataset(out, tables=(HITS_DIR, QVALUES_DIR))
    blocks = sorted(table_records(manifest, QVALUES_DIR) or {}) if manifest else []
    if blocks and manifest is not None and manifest.get("complete"):
        d = location(out)
        hits = _scan_files(out, [d / HITS_DIR / part_name(b) for b in blocks], HITS_SCHEMA)
        q = _scan_files(out, [d / QVALUES_DIR / part_name(b) for b in blocks], QVALUES_SCHEMA)
        hits = pl.concat([hits, q], how="horizontal")
    else:
        hits = _scan(out, HITS_DIR, HITS_SCHEMA).with_columns(
            pl.lit(None, pl.Float32).alias(QVALUE))
    if not labels:
        return hits
    from .matching.labels import with_labels

    return with_labels(hits, read_motifs(out))


def has_qvalues(out: str | os.PathLike[str]) -> bool:
    """Whether the run in ``out`` is complete with a q-value for every hit (its manifest
    records the q-values partitions)."""
    manifest = read_manifest(out)
    return bool(manifest and manifest.get("complete") and table_records(manifest, QVALUES_DIR)
                is not None)


def scan_null(out: str | os.PathLike[str], table: str = NULL_DIR) -> pl.LazyFrame:
    """Lazy polars frame over a run's null hits (schema.NULL_HITS_SCHEMA): ``null/`` (decoy or
    shuffle null) or ``null_background/`` (background null), checked against the manifest."""
    check_dataset(out, tables=(table,))
    return _scan(out, table, NULL_HITS_SCHEMA)


def scan_qc(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """Lazy polars frame over every QC partition of ``out`` (schema.QC_SCHEMA), checked
    against the manifest as :func:`scan_hits`."""
    check_dataset(out, tables=(QC_DIR,))
    return _scan(out, QC_DIR, QC_SCHEMA)


def _scan_files(out: Any, files: list[Any], schema: pa.Schema) -> pl.LazyFrame:
    """The given partition files, in this order, as one lazy frame."""
    if not files:
        return pl.LazyFrame(schema=polars_schema(schema))
    if is_url(location(out)):
        return _scan_url([str(f) for f in files], schema)
    return pl.scan_parquet([str(f) for f in files], schema=polars_schema(schema))


def _scan(out: str | os.PathLike[str], sub: str, schema: pa.Schema) -> pl.LazyFrame:
    d = location(out) / sub
    if is_url(d):
        return _scan_url(str(d), schema)
    if not d.is_dir() or not any(d.glob("part-*.parquet")):
        return pl.LazyFrame(schema=polars_schema(schema))
    # A glob, not the directory: hidden temporaries of a run in progress must not be read.
    return pl.scan_parquet(str(d / "part-*.parquet"), schema=polars_schema(schema))


def _scan_url(url: str | list[str], schema: pa.Schema) -> pl.LazyFrame:
    """The partitions under a URL (or these partition URLs, in order) as a lazy frame, read
    through fsspec by pyarrow."""
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, root = filesystem(url if isinstance(url, str) else url[0])
    if isinstance(url, str):
        files = sorted(f for f in fs.glob(f"{root.rstrip('/')}/part-*.parquet"))
    else:
        files = [filesystem(u)[1] for u in url]
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
