"""Decoy motifs for the target-decoy null: each motif's trimmed columns, shuffled.

A decoy has its motif's width, trim window, norm, base composition and lambda, so it meets
noise exactly as often and as strongly as its motif would, but it matches no real motif: a
draw whose best normalised cross-correlation with any real motif (either orientation, any
offset, partial overlaps included) reaches ``max_similarity`` is redrawn. The idea is the
proteomics target-decoy approach (Elias & Gygi 2007, Nat. Methods 4:207) carried over to
contribution-weight matrices; the shuffle is deterministic for a seed, so a resume or another
block layout gets the same decoys.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from ..motifs import Motifs
from ..schema import MOTIFS_SCHEMA, polars_schema

#: Prefix of a decoy's motif name (``decoy:pos_patterns.pattern_0``).
DECOY_PREFIX = "decoy:"


class Decoys(NamedTuple):
    """Decoy motifs and what their draw achieved.

    ``motifs`` has one decoy per motif row of the targets, in the same order (decoy ``i`` is
    the null of target ``i``; reverse-complement rows are the reverse complements of the
    forward decoys). ``similarity`` (shape=(n_patterns,)) is each forward decoy's best
    normalised cross-correlation with any real motif, and ``draws`` how many shuffles it took.
    """

    motifs: Motifs
    similarity: np.ndarray
    draws: np.ndarray


def cross_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best normalised cross-correlation of two matrices over every offset.

    ``a`` and ``b`` have shape=(4, wa) and (4, wb) (trimmed). At each offset the overlapping
    columns' dot product is divided by the product of the *full* norms, so a partial overlap
    scores what a hit of ``a`` on a clean instance of ``b`` at that offset would (cosine).
    """
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    # Correlation of each base row, summed over bases: one np.correlate per base, full mode.
    total = sum(np.correlate(a[i].astype(np.float64), b[i].astype(np.float64), mode="full")
                for i in range(4))
    return float(np.max(total) / (na * nb))


def make_decoys(motifs: Motifs, seed: int = 0, max_similarity: float = 0.5,
                max_draws: int = 200) -> Decoys:
    """One decoy per motif: its trimmed columns in a random order, redrawn while too similar.

    Parameters
    ----------
    motifs
        The run's motifs (forward rows with strand ``+``, reverse complements ``-``).
    seed
        The draws of pattern ``k`` use ``numpy.random.default_rng([seed, k])``.
    max_similarity
        A draw is kept once its :func:`cross_similarity` with every real motif (both strands)
        is below this; after ``max_draws`` the least similar draw is kept (its similarity is
        returned, and :mod:`.run` records it in parameters.json).

    Returns
    -------
    Decoys
        Decoy motifs with the targets' table layout: ``motif_name`` ``decoy:<name>``, the
        same ids, strands, trim windows, scales and lambdas.
    """
    table = motifs.table
    cwms = motifs.cwms.astype(np.float32)
    masks = motifs.trim_masks.astype(bool)
    targets = [cwms[i][:, masks[i]] for i in range(motifs.n_motifs)]
    decoy_cwms = np.zeros_like(cwms)
    strands = table.get_column("strand").to_list()
    names = table.get_column("motif_name").to_list()
    forward = {n: i for i, (n, s) in enumerate(zip(names, strands, strict=True)) if s == "+"}
    sims, draws = [], []
    for k, (name, i) in enumerate(forward.items()):
        rng = np.random.default_rng([seed, k])
        cols = np.flatnonzero(masks[i])
        best, best_sim, n = None, np.inf, 0
        for n in range(1, max_draws + 1):  # noqa: B007 (n is reported)
            order = rng.permutation(cols)
            if len(cols) > 1 and np.array_equal(order, cols):
                continue
            candidate = cwms[i].copy()
            candidate[:, cols] = cwms[i][:, order]
            trimmed = candidate[:, cols]
            sim = max(max(cross_similarity(trimmed, t), cross_similarity(trimmed, t[::-1, ::-1]))
                      for t in targets)
            if sim < best_sim:
                best, best_sim = candidate, sim
            if sim < max_similarity:
                break
        sims.append(best_sim)
        draws.append(n)
        decoy_cwms[i] = best
        for j, (other, strand) in enumerate(zip(names, strands, strict=True)):
            if other == name and strand == "-":
                decoy_cwms[j] = best[::-1, ::-1]
    decoy_table = table.with_columns(
        motif_name=pl.lit(DECOY_PREFIX) + pl.col("motif_name"),
        motif_name_orig=pl.lit(DECOY_PREFIX) + pl.col("motif_name_orig"),
    ).cast(dict(polars_schema(MOTIFS_SCHEMA)))
    decoy = Motifs(cwms=decoy_cwms.astype(np.float16), trim_masks=motifs.trim_masks.copy(),
                   lambdas=motifs.lambdas.copy(), table=decoy_table)
    return Decoys(decoy, np.asarray(sims), np.asarray(draws))


def joint_motifs(targets: Motifs, decoys: Motifs) -> Motifs:
    """Targets and decoys in one motif set (decoy ``i`` gets id ``M + i``), for a joint fit."""
    m = targets.n_motifs
    table = pl.concat([targets.table,
                       decoys.table.with_columns(pl.col("motif_id") + m)])
    return Motifs(cwms=np.concatenate([targets.cwms, decoys.cwms]),
                  trim_masks=np.concatenate([targets.trim_masks, decoys.trim_masks]),
                  lambdas=np.concatenate([targets.lambdas, decoys.lambdas]), table=table)
