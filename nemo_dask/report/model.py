"""What the report shows (:class:`ReportTables`): computed by :mod:`.compute`, rendered by
:mod:`.html`, written by :mod:`.write`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class ReportTables:
    """Everything the report shows, as polars frames and arrays.

    Attributes
    ----------
    motif_report : polars.DataFrame
        One row per motif: finemo's ``motif_report.tsv`` columns.
    motif_occurrences : polars.LazyFrame
        Hits per motif per region with a hit, and their total (``motif_occurrences.tsv``); lazy
        because it has one row per region: ``.collect()`` or ``.sink_csv()`` it.
    seqlets : polars.DataFrame or None
        TF-MoDISco seqlets in genomic coordinates (``seqlets.tsv`` plus chr_id, is_revcomp).
    seqlet_confusion : polars.DataFrame or None
        motif_name_seqlets, motif_name_hits, frac_overlap (``seqlet_confusion.tsv``).
    hits_per_region : polars.DataFrame
        motif_name (or "total"), num_hits, num_regions: regions with k hits, zeros included.
    hit_statistics : polars.DataFrame
        Histograms of hit coefficient, similarity and importance per motif.
    cooccurrence : polars.DataFrame
        motif_name and one column per motif: regions holding both motifs.
    cwms : dict of str to ndarray, each shape=(M, 4, W)
        ``hits_fc``, ``hits_rc`` (hit-averaged), ``modisco_fc``, ``modisco_rc`` (the run's
        motif matrices) and, with recall, ``seqlets_only`` and ``hits_restricted_only``.
    trim_bounds : polars.DataFrame
        motif_name, strand, motif_start, motif_end: the trimmed core of each motif matrix.
    n_regions : int
        Regions in the regions input.
    hits : polars.LazyFrame
        The lazy scan of the run's hits the tables were computed from.
    matches : polars.DataFrame or None
        An annotated run's forward motifs: motif_name, motif_label and the match lists
        (``match_id``, ``match_name``, ``match_pvalue``, ``match_qvalue``,
        ``match_orientation``); None when the run was never annotated.
    match_database : str
        The database the matches come from ("" when none).
    qvalue_levels : polars.DataFrame or None
        Calibrated runs: per motif, its hits and those at q <= 0.01, 0.05 and 0.1
        (``motif_qvalues.tsv``); None otherwise.
    """

    motif_report: pl.DataFrame
    motif_occurrences: pl.LazyFrame
    seqlets: pl.DataFrame | None
    seqlet_confusion: pl.DataFrame | None
    hits_per_region: pl.DataFrame
    hit_statistics: pl.DataFrame
    cooccurrence: pl.DataFrame
    cwms: dict[str, np.ndarray]
    trim_bounds: pl.DataFrame
    n_regions: int
    hits: pl.LazyFrame
    matches: pl.DataFrame | None = None
    match_database: str = ""
    #: Calibrated runs: hits per motif at q <= 0.01 / 0.05 / 0.1 (report.qvalues).
    qvalue_levels: pl.DataFrame | None = None

    @property
    def motif_names(self) -> list[str]:
        """Motif names in report order (the run's motif order)."""
        return self.motif_report["motif_name"].to_list()

    @property
    def compute_recall(self) -> bool:
        """Whether recall statistics were computed."""
        return "seqlet_recall" in self.motif_report.columns
