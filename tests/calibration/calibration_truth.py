"""Shared helpers: label hits against a planted truth, and q-values computed in process."""

from __future__ import annotations

import numpy as np
import polars as pl

from nemo_dask.calibration.nulls import null_hits, null_motifs, shuffle_regions
from nemo_dask.calibration.params import CalibrationParams
from nemo_dask.calibration.planted import Planted
from nemo_dask.calibration.qvalues import lookup, qvalue_tables
from nemo_dask.solver.stream import fit_block


def scored(hits: pl.DataFrame, qc: pl.DataFrame, planted: Planted) -> pl.DataFrame:
    """Raw solver hits with motif name, trimmed region coordinates and global-scale scores."""
    table = planted.motifs.table.select("motif_id", "motif_name", "motif_start", "motif_end")
    gs = pl.col("global_scale")
    return (hits.join(qc.select("region", "global_scale"), on="region")
            .join(table, on="motif_id")
            .with_columns(region=pl.col("region").cast(pl.Int64),
                          start=pl.col("hit_start").cast(pl.Int64) + pl.col("motif_start"),
                          end=pl.col("hit_start").cast(pl.Int64) + pl.col("motif_end"),
                          hit_coefficient_global=pl.col("hit_coefficient") * gs**2,
                          hit_importance=pl.col("hit_importance") * gs,
                          hit_importance_sq=pl.col("hit_importance_sq") * gs**2))


def calibrated_hits(planted: Planted, params: CalibrationParams) -> pl.DataFrame:
    """The real fit's hits with hit_qvalue from the null of ``params`` (as a run computes it:
    the same null fit, null-hit selection and q-value tables, without the files)."""
    m = planted.motifs
    real = fit_block(planted.sequences, planted.contributions, m)
    seqs, contribs = planted.sequences, planted.contributions
    if params.null == "shuffle":
        seqs, contribs = shuffle_regions(seqs, contribs, 0, params)
    null = fit_block(seqs, contribs, null_motifs(m, params))
    nh = null_hits(null.hits, m.n_motifs, params)
    hits = scored(real.hits, real.qc, planted)
    nulls = scored(nh, null.qc, planted)
    col = params.column
    groups, tables = qvalue_tables(hits.select(motif="motif_name", score=col),
                                   nulls.select(motif="motif_name", score=col),
                                   min_hits=params.min_hits)
    q = np.full(hits.height, np.nan)
    names = hits["motif_name"].to_numpy()
    for motif in np.unique(names):
        rows = names == motif
        q[rows] = lookup(tables[groups[motif]], hits[col].to_numpy()[rows])
    return hits.with_columns(hit_qvalue=pl.Series(q))


def on_truth(hits: pl.DataFrame, planted: Planted) -> pl.Series:
    """Whether each hit overlaps a recorded instance of any kind (planted or decoy)."""
    ids = hits.with_row_index("_h")
    t = planted.truth.select("region", ts="start", te="end")
    hit = (ids.join(t, on="region").filter((pl.col("ts") < pl.col("end"))
                                          & (pl.col("te") > pl.col("start")))["_h"].unique())
    return ids["_h"].is_in(hit.implode())


def recall(hits: pl.DataFrame, planted: Planted) -> float:
    """Share of planted instances overlapped by a hit of their motif."""
    t = planted.truth.filter(pl.col("kind") == "planted").with_row_index("_t")
    j = t.join(hits.select("region", "motif_name", hs="start", he="end"), on="region")
    j = j.filter((pl.col("hs") < pl.col("end")) & (pl.col("he") > pl.col("start"))
                 & (pl.col("motif_name") == pl.col("motif")))
    return j["_t"].n_unique() / max(1, t.height)
