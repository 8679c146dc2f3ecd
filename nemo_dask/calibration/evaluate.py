"""Measure q-values against a known truth, in one process: what README "Calibrated hits"
reports and the tests check.

:func:`calibrated_fit` runs finemo's fit and the null fit of a :class:`CalibrationParams`
(the same null motifs, shuffles, null-hit selection and q-value tables as a call-hits run,
without the files or the cluster); :func:`on_truth`, :func:`recall` and :func:`summary` score
its hits against a table of recorded instances (``region``, ``start``, ``end`` in region
coordinates, ``motif``, ``kind``), such as :attr:`.planted.Planted.truth`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ..motifs import Motifs
from ..solver.stream import fit_block
from .estimate import run_qvalues
from .nulls import null_hits, null_motifs, shuffle_regions
from .params import CalibrationParams

#: The nominal levels reported.
LEVELS = (0.01, 0.05, 0.1)


def scored(hits: pl.DataFrame, qc: pl.DataFrame, motifs: Motifs) -> pl.DataFrame:
    """Raw solver hits with ``motif_name``, trimmed region coordinates ``start``/``end`` and
    the stored hits' global-scale columns (as :func:`nemo_dask.calling.columns.stored_tables`)."""
    table = motifs.table.select("motif_id", "motif_name", "motif_start", "motif_end")
    gs = pl.col("global_scale")
    return (hits.join(qc.select("region", "global_scale"), on="region")
            .join(table, on="motif_id")
            .with_columns(region=pl.col("region").cast(pl.Int64),
                          start=pl.col("hit_start").cast(pl.Int64) + pl.col("motif_start"),
                          end=pl.col("hit_start").cast(pl.Int64) + pl.col("motif_end"),
                          hit_coefficient_global=pl.col("hit_coefficient") * gs**2,
                          hit_importance=pl.col("hit_importance") * gs,
                          hit_importance_sq=pl.col("hit_importance_sq") * gs**2))


def calibrated_fit(sequences: np.ndarray, contributions: np.ndarray, motifs: Motifs,
                   params: CalibrationParams, background: tuple[np.ndarray, np.ndarray]
                   | None = None, real: Any = None) -> pl.DataFrame:
    """finemo's hits of the regions with ``hit_qvalue`` from the null of ``params``.

    Parameters
    ----------
    sequences, contributions : ndarray, shape=(N, 4, L)
        The regions (contributions may be (N, L) compact projected).
    motifs : Motifs
    params : CalibrationParams
    background : (sequences, contributions), optional
        The background regions of a ``background`` null.
    real : BlockResult, optional
        finemo's fit of these regions, when already made (it is not repeated).

    Returns
    -------
    polars.DataFrame
        :func:`scored` hits plus ``hit_qvalue``.
    """
    if real is None:
        real = fit_block(sequences, contributions, motifs)
    hits = scored(real.hits, real.qc, motifs)
    fitted, ratio = None, 1.0
    if params.fitted is not None:
        if params.fitted == "background":
            if background is None:
                raise ValueError("the background null needs background regions")
            seqs, contribs = background
            ratio = sequences.shape[0] / seqs.shape[0]
        else:
            seqs, contribs = sequences, contributions
            if params.fitted == "shuffle":
                seqs, contribs = shuffle_regions(seqs, contribs, 0, params)
        null = fit_block(seqs, contribs, null_motifs(motifs, params))
        fitted = scored(null_hits(null.hits, motifs.n_motifs, params), null.qc, motifs)
    est = run_qvalues(hits, fitted, params, motifs=motifs.table, width=sequences.shape[-1],
                      motif_width=motifs.width, ratio=ratio)
    return hits.with_columns(hit_qvalue=pl.Series(est.q))


def on_truth(hits: pl.DataFrame, truth: pl.DataFrame) -> pl.Series:
    """Whether each hit overlaps a recorded instance of any kind (same region, >= 1 bp)."""
    ids = hits.with_row_index("_h")
    t = truth.select("region", _ts="start", _te="end")
    hit = (ids.join(t, on="region").filter((pl.col("_ts") < pl.col("end"))
                                          & (pl.col("_te") > pl.col("start")))["_h"].unique())
    return ids["_h"].is_in(hit.implode())


def recall(hits: pl.DataFrame, truth: pl.DataFrame, kinds: tuple[str, ...] = ("planted",),
           motif_of: dict[str, str] | None = None) -> float:
    """Share of instances of ``kinds`` overlapped by a hit of their motif (``motif_of`` maps
    hit motif names to truth motif names; identity by default)."""
    t = truth.filter(pl.col("kind").is_in(kinds)).with_row_index("_t")
    h = hits.select("region", "motif_name", _hs="start", _he="end")
    if motif_of is not None:
        h = h.with_columns(pl.col("motif_name").replace_strict(motif_of, default=None))
    j = t.join(h, on="region").filter((pl.col("_hs") < pl.col("end"))
                                      & (pl.col("_he") > pl.col("start"))
                                      & (pl.col("motif_name") == pl.col("motif")))
    return j["_t"].n_unique() / max(1, t.height)


def average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of ranking by ``score`` (descending) for ``positive`` items."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    y = np.asarray(positive, dtype=bool)[order]
    if not y.any():
        return float("nan")
    precision = np.cumsum(y) / np.arange(1, y.size + 1)
    return float(precision[y].mean())


def summary(hits: pl.DataFrame, truth: pl.DataFrame, kinds: tuple[str, ...] = ("planted",),
            motif_of: dict[str, str] | None = None) -> dict[str, float]:
    """Observed false share and recall at each of :data:`LEVELS`, and of all hits."""
    true = on_truth(hits, truth).to_numpy()
    q = hits["hit_qvalue"].to_numpy()
    out: dict[str, float] = {"hits": float(hits.height), "false_all": float(1 - true.mean())
                             if hits.height else 0.0,
                             "recall_all": recall(hits, truth, kinds, motif_of)}
    for level in LEVELS:
        kept = q <= level
        out[f"kept_{level:g}"] = float(kept.sum())
        out[f"false_{level:g}"] = float(1 - true[kept].mean()) if kept.any() else 0.0
        out[f"recall_{level:g}"] = recall(hits.filter(pl.Series(kept)), truth, kinds, motif_of)
    return out
