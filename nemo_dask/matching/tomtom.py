"""TOMTOM (memelite's) of query PPMs against a motif database: p-values, q-values, best k.

memelite implements TOMTOM (Gupta et al. 2007, Genome Biology 8:R24) with the complete score:
the column score is minus the Euclidean distance between probability columns, the null of each
query column is its scores against every column of the database (so p-values depend on the
database, and are unreliable with fewer than 25 motifs: a warning says so), and each target's
p-value is that of its best offset, corrected for the two strands (both orientations of every
target are scanned). The q-value of a match is the Benjamini-Hochberg adjustment of its p-value
among the query's p-values against every database motif, as MEME's tomtom reports it; E-value =
p-value x database size is not stored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .database import EXTRA_HINT, MotifDatabase

#: memelite's own threshold for its small-database warning.
MIN_RELIABLE_TARGETS = 25


@dataclass(frozen=True)
class Match:
    """One database motif matched to a query.

    ``orientation`` is ``+`` when the query matches the database motif as written and ``-``
    when it matches its reverse complement.
    """

    id: str
    name: str
    pvalue: float
    qvalue: float
    orientation: str


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """q-values of a vector of p-values (Benjamini & Hochberg 1995; monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    n = p.size
    if n == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def tomtom_matches(queries: list[np.ndarray], database: MotifDatabase,
                   top_k: int) -> list[list[Match]]:
    """The best ``top_k`` matches of each query, best first.

    Parameters
    ----------
    queries : list of ndarray, each shape=(4, w)
        Query PPMs (A, C, G, T rows).
    database : MotifDatabase
        Targets.
    top_k : int
        Matches kept per query (at most the database's size).

    Matches are ranked by p-value, ties (memelite bins scores, so close matches can share one)
    by the higher alignment score, then by database order.

    Raises
    ------
    InputError
        memelite is not installed, or ``top_k`` < 1.
    """
    if top_k < 1:
        raise InputError(f"top-k must be at least 1, got {top_k}")
    if not queries:
        return []
    try:
        from memelite import tomtom
    except ImportError:
        raise InputError(f"matching motifs needs memelite (TOMTOM): {EXTRA_HINT}") from None
    if len(database) < MIN_RELIABLE_TARGETS:
        warnings.warn(f"motif database {database.source} holds {len(database)} motifs: TOMTOM "
                      "takes its null distribution from the database's columns, so p- and "
                      f"q-values are unreliable below {MIN_RELIABLE_TARGETS} motifs",
                      stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # memelite's own small-database warning, said above
        pvalues, scores, _, _, strands = tomtom(
            [np.ascontiguousarray(q, dtype=np.float64) for q in queries],
            list(database.ppms), n_nearest=None, reverse_complement=True)
    out = []
    for i in range(len(queries)):
        p = np.asarray(pvalues[i], dtype=np.float64)
        q = benjamini_hochberg(p)
        order = np.lexsort((np.arange(p.size), -scores[i], p))[:top_k]
        out.append([Match(database.ids[j], database.names[j], float(p[j]), float(q[j]),
                          "-" if strands[i, j] == 1 else "+") for j in order])
    return out
