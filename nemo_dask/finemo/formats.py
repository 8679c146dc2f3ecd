"""finemo 0.41's files: their names, column orders and types, in one place.

The types are those of :mod:`nemo_dask.schema` (the stored tables carry finemo's values), so a
column has one type everywhere. Used by the exporter (writes these files), the importer and the
hit reader (read them) and the report.
"""

from __future__ import annotations

import polars as pl

from ..schema import HITS_SCHEMA, MOTIFS_SCHEMA, QC_SCHEMA, polars_dtypes

HITS_FILE = "hits.tsv"
HITS_UNIQUE_FILE = "hits_unique.tsv"
HITS_BED_FILE = "hits.bed"
QC_FILE = "peaks_qc.tsv"
MOTIF_DATA_FILE = "motif_data.tsv"
CWMS_FILE = "motif_cwms.npy"
PARAMS_FILE = "parameters.json"

#: Not finemo's: an annotated run's TOMTOM matches, one row per motif and rank (``export``).
MOTIF_MATCHES_FILE = "motif_matches.tsv"

#: Not finemo's: hits.tsv's and hits_unique.tsv's rows with every column nemo_dask adds after
#: finemo's (:data:`EXTRA_HITS_DTYPES`). Separate files, because finemo 0.41 reads hits TSVs
#: with a fixed schema and refuses any other column (polars 1 and 2 alike), so hits.tsv and
#: hits_unique.tsv keep exactly finemo's.
HITS_EXTRA_FILE = "hits_extra.tsv"
HITS_UNIQUE_EXTRA_FILE = "hits_unique_extra.tsv"

#: The columns the extended hits files add, in this order, each where the run has it:
#: ``motif_label`` (an annotated run: nemo_dask.matching), ``hit_qvalue`` (a run with q-values:
#: nemo_dask.calibration).
EXTRA_HITS_DTYPES: dict[str, pl.DataType] = {"motif_label": pl.String(),
                                             "hit_qvalue": pl.Float32()}

#: Every file of a finemo call-hits output directory, in the order ``export`` lists them.
CALL_HITS_FILES: tuple[str, ...] = (HITS_FILE, HITS_UNIQUE_FILE, HITS_BED_FILE, QC_FILE,
                                    MOTIF_DATA_FILE, CWMS_FILE, PARAMS_FILE)

#: finemo's placeholder for chr and peak_name when the regions have no genomic coordinates.
NA = "NA"

#: finemo 0.41's ``hits.tsv`` columns and dtypes, in file order. ``hit_correlation`` is a copy
#: of ``hit_similarity`` (finemo writes both).
FINEMO_HITS_DTYPES: dict[str, pl.DataType] = {
    name: dtype for name, dtype in (
        (n, polars_dtypes(HITS_SCHEMA)["hit_similarity" if n == "hit_correlation" else n])
        for n in ("chr", "start", "end", "start_untrimmed", "end_untrimmed", "motif_name",
                  "hit_coefficient", "hit_coefficient_global", "hit_similarity",
                  "hit_correlation", "hit_importance", "hit_importance_sq", "strand",
                  "peak_name", "peak_id"))
}

#: finemo 0.41's ``peaks_qc.tsv`` columns and dtypes, in file order.
FINEMO_QC_DTYPES: dict[str, pl.DataType] = polars_dtypes(
    QC_SCHEMA, ("nll", "dual_gap", "num_steps", "step_size", "global_scale", "peak_id", "chr",
                "peak_region_start", "peak_name"))
FINEMO_QC_COLUMNS: tuple[str, ...] = tuple(FINEMO_QC_DTYPES)

#: finemo's ``motif_data.tsv`` columns and dtypes (the stored motif table, same order).
FINEMO_MOTIFS_DTYPES: dict[str, pl.DataType] = polars_dtypes(MOTIFS_SCHEMA)

#: finemo 0.41's ``parameters.json`` keys, in the order its ``call-hits`` writes them.
FINEMO_PARAMETER_KEYS: tuple[str, ...] = (
    "regions_path", "peaks_path", "modisco_h5_path", "chrom_order_path", "motifs_include_path",
    "motif_names_path", "motif_lambdas_path", "out_dir", "cwm_trim_coords_path",
    "cwm_trim_thresholds_path", "cwm_trim_threshold_default", "lambda_default", "step_size_max",
    "step_size_min", "sqrt_transform", "convergence_tol", "max_steps", "batch_size",
    "step_adjust", "device", "mode", "no_post_filter", "compile_optimizer", "region_width",
    "num_regions", "untrimmed_motif_width", "num_motifs",
)

#: finemo's ``parameters.json`` keys that change no hit: where the inputs and outputs were,
#: batching, device and compilation (finemo's results do not depend on them beyond rounding).
FINEMO_NEUTRAL_PARAMETERS: frozenset[str] = frozenset(
    [k for k in FINEMO_PARAMETER_KEYS if k.endswith("_path") or k == "out_dir"]
    + ["batch_size", "device", "compile_optimizer"])

#: Columns whose first occurrence ``hits_unique.tsv`` keeps (finemo's subset, in its order).
UNIQUE_KEY: tuple[str, ...] = ("chr", "start", "motif_name", "strand")

#: finemo's collapse-hits output columns: hits.tsv's plus is_primary.
COLLAPSED_DTYPES: dict[str, pl.DataType] = FINEMO_HITS_DTYPES | {"is_primary": pl.UInt32}

#: Join keys of intersect-hits (finemo's strict and relaxed criteria).
STRICT_KEYS: tuple[str, ...] = ("chr", "start", "end", "start_untrimmed", "end_untrimmed",
                                "motif_name", "strand", "peak_name", "peak_id")
RELAXED_KEYS: tuple[str, ...] = ("chr", "start_untrimmed", "end_untrimmed", "motif_name",
                                 "strand")
