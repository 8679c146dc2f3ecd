"""A block's null fit, on the worker beside the real one: which motifs, on which arrays.

The real fit is finemo's and is never touched; the null fit only yields null hits, stored in
``OUT/null/part-<block>.parquet`` (:data:`nemo_dask.schema.NULL_HITS_SCHEMA`) and read at the
end of the run by :mod:`.assign`. Every null is a function of a region's own row (never of the
block it falls in), so another block layout gives the same null hits.
"""

from __future__ import annotations

import threading

import numpy as np
import polars as pl

from ..motifs import Motifs, motifs_digest
from .decoys import joint_motifs, make_decoys
from .params import CalibrationParams

_CACHE: dict[tuple[str, CalibrationParams], Motifs] = {}
_LOCK = threading.Lock()


def null_motifs(motifs: Motifs, params: CalibrationParams) -> Motifs:
    """The motif set of the null fit: targets then decoys (``decoy``), or the targets.

    Decoys are redrawn from ``params.seed`` wherever this runs (deterministic; cached per
    process), so no worker depends on another's memory.
    """
    if params.fitted != "decoy":
        return motifs
    key = (motifs_digest(motifs), params)
    with _LOCK:
        if key not in _CACHE:
            decoys = make_decoys(motifs, seed=params.seed,
                                 max_similarity=params.decoy_max_similarity).motifs
            _CACHE[key] = joint_motifs(motifs, decoys)
        return _CACHE[key]


def shuffle_regions(sequences: np.ndarray, contributions: np.ndarray, first_row: int,
                    params: CalibrationParams) -> tuple[np.ndarray, np.ndarray]:
    """Each region's positions permuted in blocks of ``params.shuffle_block`` bp.

    Parameters
    ----------
    sequences : ndarray, shape=(n, 4, L)
    contributions : ndarray, shape=(n, 4, L) or (n, L)
    first_row : int
        The store row of region 0: region ``first_row + i`` is shuffled with
        ``numpy.random.default_rng([seed, first_row + i])``, whatever block holds it.

    Sequence and contributions move together (a projected contribution stays on its base),
    so each region keeps its values exactly (the marginal distribution) and their order
    within each block (local smoothness); motif instances longer than a block are broken.
    """
    n, length = sequences.shape[0], sequences.shape[-1]
    k = params.shuffle_block
    n_blocks = -(-length // k)
    seqs, contribs = np.empty_like(sequences), np.empty_like(contributions)
    for i in range(n):
        rng = np.random.default_rng([params.seed, first_row + i])
        order = rng.permutation(n_blocks)
        idx = np.concatenate([np.arange(b * k, min((b + 1) * k, length)) for b in order])
        seqs[i] = sequences[i][..., idx]
        contribs[i] = contributions[i][..., idx]
    return seqs, contribs


def null_hits(hits: pl.DataFrame, n_targets: int, params: CalibrationParams) -> pl.DataFrame:
    """The raw solver hits of the null fit that stand for false target hits.

    Decoy null: the decoys' hits, each given its target's ``motif_id`` (decoy ``M + i`` is the
    null of target ``i``); the targets' hits of the joint fit are dropped. Other nulls: every
    hit is null.
    """
    if params.fitted != "decoy":
        return hits
    return (hits.filter(pl.col("motif_id") >= n_targets)
            .with_columns((pl.col("motif_id") - n_targets).cast(hits.schema["motif_id"])))
