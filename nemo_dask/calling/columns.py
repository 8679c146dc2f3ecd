"""The columns a block's stored tables derive from the solver's raw output.

The solver (:class:`nemo_dask.solver.stream.BlockResult`) works on each region's normalised
scale and in window coordinates; the stored hits and QC (``schema.py``) carry finemo's
columns: genomic coordinates, values on the contributions' own scale, and the QC status as a
word. This module is the one place those columns are derived, as finemo 0.41's writer
(``finemo.hitcaller`` and ``finemo.main.call_hits``) derives them. A new hit column is its
type in ``schema.py`` plus its formula here (plus ``finemo/formats.py`` when finemo's files
have it).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..motifs import Motifs
from ..schema import FAILED, QC_STATUS, TIMEOUT


def stored_tables(hits: pl.DataFrame, qc: pl.DataFrame, peaks: pl.DataFrame, motifs: Motifs,
                  start: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The stored hits and QC tables (``schema.py``) of one block's raw solver output.

    Parameters
    ----------
    hits, qc : polars.DataFrame
        The solver's raw columns (``schema.SOLVER_HITS_DTYPES``, ``SOLVER_QC_DTYPES``);
        ``region`` is the store row, ``status`` an index into ``schema.QC_STATUS``.
    peaks : polars.DataFrame
        The peak-table rows of regions ``start, start + 1, ...``.
    motifs : Motifs
        The run's motifs (their table's names, strands and trim bounds; ``width`` is W).
    start : int
        The block's first region.

    Returns
    -------
    hits, qc : polars.DataFrame
        With finemo's columns: ``start``/``end`` (trimmed) and ``start_untrimmed``/
        ``end_untrimmed`` in genome coordinates (``peak_region_start + hit_start`` + the trim
        offsets; W for the untrimmed end); ``hit_coefficient_global = c s^2``,
        ``hit_importance`` scaled by ``s`` and ``hit_importance_sq`` by ``s^2``, where ``s`` is
        the region's ``global_scale`` (finemo's ``call_hits`` writer); the peak columns; the
        status as a word.
    """
    width = motifs.width
    # Region i is row i of the peak table; its peak_id is whatever that row says (finemo joins on
    # peak_id = row number, which is the same thing for every file its extractors write).
    peak_cols = peaks.select("peak_id", "chr", "chr_id", "peak_region_start", "peak_name")
    peak_cols = peak_cols.with_columns(
        region=pl.Series(np.arange(start, start + len(peaks), dtype=np.int64)))
    qc_full = (
        qc.with_columns(pl.col("region").cast(pl.Int64), status=status_words(pl.col("status")))
        .join(peak_cols, on="region", how="left")
    )
    motif_cols = motifs.table.select("motif_id", "motif_name", "strand", "motif_start", "motif_end")
    start_untrimmed = pl.col("peak_region_start").cast(pl.Int64) + pl.col("hit_start")
    gs = pl.col("global_scale")
    hits_full = (
        hits.with_columns(pl.col("region").cast(pl.Int64))
        .join(qc_full.select("region", "peak_id", "global_scale", "chr", "chr_id",
                             "peak_region_start", "peak_name"), on="region", how="left")
        .join(motif_cols, on="motif_id", how="left")
        .with_columns(
            start=start_untrimmed + pl.col("motif_start"),
            end=start_untrimmed + pl.col("motif_end"),
            start_untrimmed=start_untrimmed,
            end_untrimmed=start_untrimmed + width,
            hit_coefficient_global=pl.col("hit_coefficient") * gs**2,
            hit_importance=pl.col("hit_importance") * gs,
            hit_importance_sq=pl.col("hit_importance_sq") * gs**2,
        )
    )
    return hits_full, qc_full


def status_words(codes: pl.Expr) -> pl.Expr:
    """The solver's status codes as ``schema.QC_STATUS`` words."""
    return codes.replace_strict(list(range(len(QC_STATUS))), list(QC_STATUS),
                                return_dtype=pl.String)


def status_counts(codes: np.ndarray) -> tuple[int, int]:
    """(timeouts, failures) among a block's status codes."""
    counts = np.bincount(codes, minlength=len(QC_STATUS))
    return int(counts[TIMEOUT]), int(counts[FAILED])
