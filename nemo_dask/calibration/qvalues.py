"""Per-motif q-values of hits from the scores of one or more nulls' hits.

For a motif (both strands of one pattern) with target hits of scores ``t_1..t_n`` and a null's
hits of scores ``d_1..d_m`` standing for its false hits, each with a weight ``w_j`` (how many
false target hits one null hit stands for), the false discovery rate of keeping every hit
scoring at least ``s`` is estimated as

    FDR(s) = min(1, (sum of w_j over d_j >= s  +  w_max) / #{t_i >= s})

(the target-decoy estimate with the +1 of Barber & Candes 2015, Ann. Stat. 43:2055,
"knockoff+", and He et al. 2015, arXiv:1501.00537, which bounds the FDR in finite samples;
the +1 is one null hit, of the largest weight). Weights scale null counts to the targets'
search space: 1 for decoys fitted on the same regions, regions called / background regions for
a background null, window positions / flank positions for the positional null
(:mod:`.flank`). With several nulls (e.g. ``flank+decoy``) the estimate is the largest of
theirs at each threshold, so it holds wherever any one of them holds. A hit's q-value is the
smallest FDR of any threshold that keeps it: ``q(t_i) = min over s <= t_i of FDR(s)``
(Storey 2002, JRSS B 64:479). Motifs with fewer than ``min_hits`` target hits share one
pooled group (their targets and their nulls together), so that a rare motif's q-values do not
rest on a handful of null hits.

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


class NullSample(NamedTuple):
    """A null's hits for one group: their ``scores`` and ``weights`` (shape=(m,) each), and
    ``unit``, the weight of the +1 (the largest weight a null hit of this null can have)."""

    scores: np.ndarray
    weights: np.ndarray
    unit: float

    @classmethod
    def of(cls, scores: np.ndarray, ratio: float = 1.0) -> NullSample:
        """Null hits that each stand for ``ratio`` false target hits."""
        scores = np.asarray(scores, dtype=np.float64)
        return cls(scores, np.full(scores.shape, float(ratio)), float(ratio))


class QTable(NamedTuple):
    """One group's map from score to q-value: ``scores`` ascending, ``q`` for each (the q of a
    hit scoring ``scores[i]``), and the group's counts (``n_null``: null hits of every null)."""

    scores: np.ndarray
    q: np.ndarray
    n_targets: int
    n_null: int


def _fdr(scores: np.ndarray, n_t: np.ndarray, null: NullSample) -> np.ndarray:
    """FDR(s) of one null at each of ``scores`` (ascending), ``n_t`` targets scoring >= each."""
    d = np.asarray(null.scores, dtype=np.float64)
    w = np.asarray(null.weights, dtype=np.float64)
    order = np.argsort(d, kind="stable")
    d, w = d[order], w[order]
    # Weight of the null hits scoring >= s: the tail sums of the weights sorted by score.
    tail = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])
    above = tail[np.searchsorted(d, scores, side="left")]
    return np.minimum(1.0, (above + null.unit) / n_t)


def qvalue_table(target: np.ndarray, *nulls: NullSample) -> QTable:
    """The q-value of every distinct target score (see the module docstring).

    Parameters
    ----------
    target : ndarray, shape=(n,)
        Scores of the target hits (higher = more confident).
    *nulls : NullSample
        One or more nulls; the FDR estimate is the largest of theirs at each threshold.

    Raises
    ------
    ValueError
        No null is given, a score or weight is not finite, a weight is < 0 or a unit <= 0.
    """
    if not nulls:
        raise ValueError("qvalue_table needs at least one null")
    target = np.asarray(target, dtype=np.float64)
    for null in nulls:
        if not (np.all(np.isfinite(null.scores)) and np.all(np.isfinite(null.weights))):
            raise ValueError("null scores and weights must be finite")
        if not null.unit > 0 or np.any(np.asarray(null.weights) < 0):
            raise ValueError(f"null weights must be >= 0 and units > 0, got unit {null.unit}")
    if not np.all(np.isfinite(target)):
        raise ValueError("scores must be finite")
    n_null = int(sum(np.asarray(n.scores).size for n in nulls))
    scores = np.unique(target)  # ascending, distinct: ties share one threshold
    if scores.size == 0:
        return QTable(scores, np.zeros(0), 0, n_null)
    t_sorted = np.sort(target)
    n_t = t_sorted.size - np.searchsorted(t_sorted, scores, side="left")
    fdr = np.max([_fdr(scores, n_t, null) for null in nulls], axis=0)
    # q at score s: the least FDR over thresholds s' <= s (which keep the hit too).
    q = np.minimum.accumulate(fdr)
    return QTable(scores, q, int(target.size), n_null)


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


#: A group's stratum-wise table key: (group name, stratum).
Key = tuple[str, int]


def qvalue_tables(targets: pl.DataFrame, nulls: pl.DataFrame,
                  units: dict[tuple[str, int], float], *, min_hits: int = 50
                  ) -> tuple[dict[str, str], dict[Key, QTable]]:
    """Per-group, per-stratum q-value tables.

    Parameters
    ----------
    targets : DataFrame
        Columns ``motif`` (the pattern's name), ``stratum`` (Int64: the part of the window the
        hit lies in, :mod:`.flank`; 0 for all without the flank null) and ``score``: every
        target hit of the run.
    nulls : DataFrame
        Columns ``source`` (the null's name), ``motif`` (whose false hits the null hit stands
        for), ``stratum``, ``score`` and ``weight``.
    units : dict
        (null's name, stratum) -> the weight of its +1 there: every null of every stratum
        that has targets (even a null with no hits counts).
    min_hits
        See :func:`group_of` (counted over all strata).

    Returns
    -------
    groups, tables
        motif -> group name, and (group name, stratum) -> :class:`QTable`.
    """
    counts = dict(targets.group_by("motif").len().iter_rows())
    groups = group_of(counts, min_hits)
    g = pl.DataFrame({"motif": list(groups), "group": list(groups.values())},
                     schema={"motif": pl.String, "group": pl.String})
    t = targets.join(g, on="motif", how="inner")
    d = nulls.join(g, on="motif", how="inner")
    tables: dict[Key, QTable] = {}
    # One split of the null hits (in their order) instead of a filter per group, stratum and
    # null: a sheet runs this pass once per run, and each small filter costs a query.
    parts = d.partition_by("group", "stratum", "source", as_dict=True, maintain_order=True)
    none = d.clear()
    for (name, stratum), tg in sorted(t.group_by("group", "stratum"), key=lambda x: x[0]):
        samples = []
        for (src, st), unit in sorted(units.items()):
            if st != stratum:
                continue
            ds = parts.get((name, stratum, src), none)
            samples.append(NullSample(ds["score"].to_numpy().astype(np.float64),
                                      ds["weight"].to_numpy().astype(np.float64), unit))
        tables[(str(name), int(stratum))] = qvalue_table(tg["score"].to_numpy(), *samples)
    return groups, tables


def assign(hits: pl.DataFrame, groups: dict[str, str], tables: dict[Key, QTable],
           column: str, strata: np.ndarray | None = None) -> np.ndarray:
    """q-value of each row of ``hits`` (``motif_name`` and ``column``; ``strata``, shape=(n,),
    each row's stratum, all 0 when None), shape=(n,) float64."""
    q = np.full(hits.height, np.nan)
    if not hits.height:
        return q
    names = hits.get_column("motif_name").to_numpy()
    scores = hits.get_column(column).to_numpy().astype(np.float64)
    strata = np.zeros(hits.height, dtype=np.int64) if strata is None else np.asarray(strata)
    for motif in np.unique(names):
        for stratum in np.unique(strata[names == motif]):
            rows = (names == motif) & (strata == stratum)
            q[rows] = lookup(tables[(groups[motif], int(stratum))], scores[rows])
    return q
