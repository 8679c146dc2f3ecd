"""Per-motif q-values of hits from the scores of a null's hits.

For a motif (both strands of one pattern) with target hits of scores ``t_1..t_n`` and null hits
of scores ``d_1..d_m`` standing for its false hits, the false discovery rate of keeping every
hit scoring at least ``s`` is estimated as

    FDR(s) = min(1, ratio x (#{d_j >= s} + 1) / #{t_i >= s})

(the target-decoy estimate with the +1 of Barber & Candes 2015, Ann. Stat. 43:2055, "knockoff+",
and He et al. 2015, arXiv:1501.00537, which bounds the FDR in finite samples), and a hit's
q-value is the smallest FDR of any threshold that keeps it: ``q(t_i) = min over s <= t_i of
FDR(s)`` (Storey 2002, JRSS B 64:479). ``ratio`` scales null counts to the targets' search
space (1 for decoys fitted on the same regions; regions called / background regions for a
background null). Motifs with fewer than ``min_hits`` target hits share one pooled group (their
targets and their nulls together), so that a rare motif's q-values do not rest on a handful
of null hits.

Everything here is a pure function of the scores: the same hits and null hits give the same
q-values whatever the order they come in (ties get the same q-value), so a resume or another
block layout cannot change them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

#: Name of the group that pools motifs with few hits.
POOLED = "(pooled)"


class QTable(NamedTuple):
    """One group's map from score to q-value: ``scores`` ascending, ``q`` for each (the q of a
    hit scoring ``scores[i]``), and the group's counts."""

    scores: np.ndarray
    q: np.ndarray
    n_targets: int
    n_null: int


def qvalue_table(target: np.ndarray, null: np.ndarray, ratio: float = 1.0) -> QTable:
    """The q-value of every distinct target score (see the module docstring).

    Parameters
    ----------
    target, null : ndarray, shape=(n,), (m,)
        Scores of the target hits and of the null hits (higher = more confident).
    ratio : float
        Null counts are multiplied by it.

    Raises
    ------
    ValueError
        A score is not finite, or ``ratio`` is not > 0.
    """
    target = np.asarray(target, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    if not (np.all(np.isfinite(target)) and np.all(np.isfinite(null))):
        raise ValueError("scores must be finite")
    if not ratio > 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    scores = np.unique(target)  # ascending, distinct: ties share one threshold
    if scores.size == 0:
        return QTable(scores, np.zeros(0), 0, int(null.size))
    t_sorted, d_sorted = np.sort(target), np.sort(null)
    n_t = t_sorted.size - np.searchsorted(t_sorted, scores, side="left")
    n_d = d_sorted.size - np.searchsorted(d_sorted, scores, side="left")
    fdr = np.minimum(1.0, ratio * (n_d + 1.0) / n_t)
    # q at score s: the least FDR over thresholds s' <= s (which keep the hit too).
    q = np.minimum.accumulate(fdr)
    return QTable(scores, q, int(target.size), int(null.size))


def lookup(table: QTable, scores: np.ndarray) -> np.ndarray:
    """q-values of hits with ``scores`` (each must be one of the table's target scores)."""
    scores = np.asarray(scores, dtype=np.float64)
    idx = np.searchsorted(table.scores, scores, side="left")
    if scores.size and (np.any(idx >= table.scores.size)
                        or np.any(table.scores[np.minimum(idx, table.scores.size - 1)] != scores)):
        raise ValueError("a hit's score is not among the target scores its q-values were "
                         "computed from (the hits changed after calibration)")
    return table.q[idx]


def group_of(counts: dict[str, int], min_hits: int) -> dict[str, str]:
    """Each motif's group: itself, or :data:`POOLED` when it has fewer than ``min_hits`` hits
    (a lone small motif stays on its own: pooling it with nothing would change nothing)."""
    small = [m for m, n in counts.items() if n < min_hits]
    pooled = set(small) if len(small) > 1 else set()
    return {m: (POOLED if m in pooled else m) for m in counts}


def qvalue_tables(targets: pl.DataFrame, nulls: pl.DataFrame, *, ratio: float = 1.0,
                  min_hits: int = 50) -> tuple[dict[str, str], dict[str, QTable]]:
    """Per-group q-value tables.

    Parameters
    ----------
    targets, nulls : DataFrame
        Columns ``motif`` (the pattern's name) and ``score``: every target hit of the run, and
        every null hit standing for a false hit of ``motif``.
    ratio, min_hits
        See :func:`qvalue_table` and :func:`group_of`.

    Returns
    -------
    groups, tables
        motif -> group name, and group name -> :class:`QTable`.
    """
    counts = dict(targets.group_by("motif").len().iter_rows())
    groups = group_of(counts, min_hits)
    g = pl.DataFrame({"motif": list(groups), "group": list(groups.values())},
                     schema={"motif": pl.String, "group": pl.String})
    t = targets.join(g, on="motif", how="inner")
    d = nulls.join(g, on="motif", how="inner")
    tables = {}
    for name in sorted(set(groups.values())):
        tables[name] = qvalue_table(t.filter(pl.col("group") == name)["score"].to_numpy(),
                                    d.filter(pl.col("group") == name)["score"].to_numpy(), ratio)
    return groups, tables
