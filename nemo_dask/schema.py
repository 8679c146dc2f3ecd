"""One schema for every table nemo_dask writes or reads, and the solver's raw columns.

The Parquet writer, the readers, the finemo-compatible export and the report all take their
column names and types from here, so a partition written by any worker can be concatenated with
any other (an empty block included) and scanned by polars, pyarrow, dask or duckdb. finemo's
own files (TSV column orders, file names) are described in :mod:`nemo_dask.finemo.formats`,
with the types defined here.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
import pyarrow as pa

#: Hits as stored in ``OUT/hits/part-*.parquet``. The finemo ``hits.tsv`` columns (with the
#: same values: importances and the global coefficient already multiplied by the region's
#: global scale) plus the raw keys ``motif_id``, ``hit_start`` and ``chr_id`` so that exports
#: and joins never have to re-derive them. ``hit_correlation`` (a copy of ``hit_similarity``)
#: is added by the exporter only.
HITS_SCHEMA = pa.schema(
    [
        ("peak_id", pa.uint32()),
        ("motif_id", pa.uint32()),
        ("hit_start", pa.int32()),
        ("chr", pa.string()),
        ("chr_id", pa.uint32()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("start_untrimmed", pa.int32()),
        ("end_untrimmed", pa.int32()),
        ("motif_name", pa.string()),
        ("strand", pa.string()),
        ("hit_coefficient", pa.float32()),
        ("hit_coefficient_global", pa.float32()),
        ("hit_similarity", pa.float32()),
        ("hit_importance", pa.float32()),
        ("hit_importance_sq", pa.float32()),
        ("peak_name", pa.string()),
    ]
)

#: The per-hit q-value (nemo_dask.calibration): the lazy hits views add it after the stored
#: columns (null where a run has none); export writes it after finemo's columns.
QVALUE = "hit_qvalue"

#: ``OUT/qvalues/part-*.parquet``: each hit's q-value, row for row in the order of its block's
#: hits partition (a separate table, so that finished hits partitions are never rewritten).
QVALUES_SCHEMA = pa.schema([(QVALUE, pa.float32())])

#: The lazy hits views (``nemo_dask.scan_hits``, ``CallHitsResult.hits``): the stored columns,
#: then each hit's q-value.
HITS_VIEW_SCHEMA = pa.schema([*HITS_SCHEMA, *QVALUES_SCHEMA])

#: Null hits of a run whose q-values need a second fit (``OUT/null/`` and
#: ``OUT/null_background/``): what the null fit found, in the stored hits' units, each under the
#: ``motif_id`` and ``motif_name`` of the target motif whose false hits it stands for.
NULL_HITS_SCHEMA = pa.schema(
    [HITS_SCHEMA.field(name) for name in (
        "peak_id", "motif_id", "hit_start", "motif_name", "strand", "hit_coefficient",
        "hit_coefficient_global", "hit_similarity", "hit_importance", "hit_importance_sq")]
)

#: Per-region QC as stored in ``OUT/qc/part-*.parquet``: finemo's ``peaks_qc.tsv`` columns plus
#: ``chr_id`` (for finemo's sort order) and ``status`` (``converged``, ``timeout`` or ``failed``).
QC_SCHEMA = pa.schema(
    [
        ("peak_id", pa.uint32()),
        ("nll", pa.float32()),
        ("dual_gap", pa.float32()),
        ("num_steps", pa.int32()),
        ("step_size", pa.float32()),
        ("global_scale", pa.float32()),
        ("status", pa.string()),
        ("chr", pa.string()),
        ("chr_id", pa.uint32()),
        ("peak_region_start", pa.int32()),
        ("peak_name", pa.string()),
    ]
)

#: QC status values, in the order the solver codes them: the solver writes ``status`` as the
#: index (:data:`CONVERGED`, :data:`TIMEOUT`, :data:`FAILED`), the stored QC as the word.
QC_STATUS = ("converged", "timeout", "failed")
CONVERGED, TIMEOUT, FAILED = (QC_STATUS.index(s) for s in ("converged", "timeout", "failed"))

#: The motif table (``OUT/motifs.parquet`` and finemo's ``motif_data.tsv``).
MOTIFS_SCHEMA = pa.schema(
    [
        ("motif_id", pa.uint32()),
        ("motif_name", pa.string()),
        ("motif_name_orig", pa.string()),
        ("strand", pa.string()),
        ("motif_start", pa.uint32()),
        ("motif_end", pa.uint32()),
        ("motif_scale", pa.float64()),
        ("lambda", pa.float64()),
    ]
)

#: What ``--annotate`` / ``nemo-dask annotate`` add to the motif table (after finemo's columns):
#: the label shown in every output (``pos_patterns.pattern_3 (SOX2)``; the motif name when no
#: match passes the q-value threshold or the motif was renamed with ``-N``) and the best k
#: TOMTOM matches of the motif, best first, one list entry per match. ``match_orientation`` is
#: ``+`` when this motif (this row's strand) matches the database motif as written, ``-`` when
#: it matches its reverse complement. A run never annotated has none of these columns.
MOTIF_MATCH_FIELDS: tuple[pa.Field, ...] = (
    pa.field("motif_label", pa.string()),
    pa.field("match_id", pa.list_(pa.string())),
    pa.field("match_name", pa.list_(pa.string())),
    pa.field("match_pvalue", pa.list_(pa.float64())),
    pa.field("match_qvalue", pa.list_(pa.float64())),
    pa.field("match_orientation", pa.list_(pa.string())),
)

#: The motif table of an annotated run: finemo's columns, then :data:`MOTIF_MATCH_FIELDS`.
ANNOTATED_MOTIFS_SCHEMA = pa.schema([*MOTIFS_SCHEMA, *MOTIF_MATCH_FIELDS])

#: The peak table of a regions store, as finemo's ``regions.npz`` describes it.
PEAKS_DTYPES: dict[str, pl.DataType] = {
    "chr": pl.String,
    "peak_region_start": pl.Int32,
    "peak_name": pl.String,
    "peak_id": pl.UInt32,
    "chr_id": pl.UInt32,
}

def polars_schema(schema: pa.Schema) -> pl.Schema:
    """The polars schema matching an Arrow schema of this module."""
    # Not schema.empty_table() nor pa.array([]): both import pandas (~0.15 s of every start).
    empty = pa.Table.from_arrays([pa.nulls(0, type=f.type) for f in schema], schema=schema)
    return pl.from_arrow(empty).schema  # type: ignore[union-attr]


def conform(table: pa.Table | pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """Cast a table to ``schema`` exactly (column order, types, no dictionary columns).

    Every partition goes through this so that empty blocks and blocks whose string columns
    polars chose to dictionary-encode still share one physical schema.
    """
    if isinstance(table, pl.DataFrame):
        table = table.to_arrow()
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"table lacks columns {missing} required by the schema")
    columns = []
    for field in schema:
        col = table.column(field.name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        columns.append(col.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def polars_dtypes(schema: pa.Schema, names: Iterable[str] | None = None) -> dict[str, pl.DataType]:
    """``{column: polars dtype}`` of an Arrow schema of this module, for ``names`` (in that
    order) or every column."""
    dtypes = dict(polars_schema(schema))
    return {n: dtypes[n] for n in (names if names is not None else schema.names)}


#: The solver's raw hit columns (:class:`nemo_dask.solver.stream.BlockResult`): ``region`` (the
#: region's row in the store) and the stored columns it computes, on its normalised scale.
SOLVER_HITS_DTYPES: dict[str, pl.DataType] = {"region": pl.UInt32} | polars_dtypes(
    HITS_SCHEMA, ("motif_id", "hit_start", "hit_coefficient", "hit_similarity",
                  "hit_importance", "hit_importance_sq"))

#: The solver's raw QC columns: ``region``, the stored statistics, and ``status`` as its index
#: in :data:`QC_STATUS`.
SOLVER_QC_DTYPES: dict[str, pl.DataType] = (
    {"region": pl.UInt32}
    | polars_dtypes(QC_SCHEMA, ("nll", "dual_gap", "num_steps", "step_size", "global_scale"))
    | {"status": pl.UInt8}
)
