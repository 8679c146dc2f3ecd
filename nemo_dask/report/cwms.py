"""Hit-averaged CWMs, accumulated block by block over the regions.

A CWM here is the mean of contribution x one-hot over a set of motif-sized windows (reverse
complemented for ``-`` strand windows), finemo's ``get_cwms``. Only one block of regions is in
memory at a time; sums and counts per (kind, motif) carry across blocks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from ..regions.source import RegionSource
from ..regions.store import RegionBlock

#: Window kinds of :class:`nemo_dask.report.tables.HitCounts` windows, by code.
CWM_KINDS = ("hits", "seqlets_only", "hits_restricted_only")


class CwmSums(NamedTuple):
    """Sums and counts of windows per kind and motif.

    Attributes
    ----------
    sums : ndarray, shape=(K, M, 4, W), float64
        Summed windows, K = len(CWM_KINDS).
    counts : ndarray, shape=(K, M), int64
        Windows summed (out-of-region windows are skipped, as in finemo).
    """

    sums: np.ndarray
    counts: np.ndarray

    def mean(self, kind: str) -> np.ndarray:
        """Average window of each motif for ``kind``, shape=(M, 4, W); NaN where there is none."""
        k = CWM_KINDS.index(kind)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[k] / self.counts[k][:, None, None]


def _rows_of(peaks: pl.DataFrame, peak_ids: np.ndarray) -> np.ndarray:
    """Row index of each peak_id in the regions (peak_id is the row index in finemo's files)."""
    ids = peaks.get_column("peak_id").to_numpy()
    if np.array_equal(ids, np.arange(len(ids))):
        return peak_ids.astype(np.int64)
    lookup = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    inside = peak_ids < len(lookup)
    rows = np.full(len(peak_ids), -1, dtype=np.int64)
    rows[inside] = lookup[peak_ids[inside]]
    return rows


#: Windows gathered per pass; bounds memory (about 100 bytes per window) however many hits.
WINDOWS_PER_CHUNK = 1_000_000


def accumulate_cwms(
    regions: RegionSource,
    windows: pl.LazyFrame | pl.DataFrame,
    n_motifs: int,
    motif_width: int,
    regions_per_read: int = 1024,
    windows_per_chunk: int | None = None,
) -> CwmSums:
    """Sum contribution x one-hot under every window, reading ``regions_per_read`` regions at a time.

    Parameters
    ----------
    regions : RegionSource
        Regions store or regions.npz (:func:`nemo_dask.open_regions`).
    windows : polars.LazyFrame or DataFrame
        peak_id, hit_start, is_revcomp, motif_idx, kind (``HitCounts.windows``).
    n_motifs : int
        M, the number of motif names.
    motif_width : int
        W, the untrimmed motif width.
    regions_per_read : int
        Regions per read; bounds memory to one block of contributions.
    windows_per_chunk : int, optional
        Windows collected at a time, by ranges of peak_id (default :data:`WINDOWS_PER_CHUNK`).
    """
    n_kinds = len(CWM_KINDS)
    n_groups = n_kinds * n_motifs
    counts = np.zeros(n_groups, dtype=np.int64)
    # Sums are kept per (group, strand) in the gathered (W, 4) layout: '-' windows are reverse
    # complemented once, on their sum, instead of one by one.
    acc = np.zeros((n_groups * 2, motif_width * 4), dtype=np.float64)
    lazy = windows.lazy()
    for lo, hi in _peak_chunks(lazy, regions_per_read, windows_per_chunk or WINDOWS_PER_CHUNK):
        chunk = lazy.filter((pl.col("peak_id") >= lo) & (pl.col("peak_id") < hi)).collect()
        _accumulate_chunk(regions, chunk, n_motifs, motif_width, regions_per_read, acc, counts)
    summed = acc.reshape(n_groups, 2, motif_width, 4).transpose(0, 1, 3, 2)
    sums = summed[:, 0] + summed[:, 1, ::-1, ::-1]
    return CwmSums(
        sums.reshape(n_kinds, n_motifs, 4, motif_width), counts.reshape(n_kinds, n_motifs)
    )


def _peak_chunks(windows: pl.LazyFrame, regions_per_read: int, per_chunk: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of peak_id, whole blocks of ``regions_per_read`` ids, each holding about
    ``per_chunk`` windows (a block holding more is a range of its own)."""
    per_block = (
        windows.group_by(block=pl.col("peak_id") // regions_per_read)
        .len()
        .sort("block")
        .collect()
    )
    ranges: list[tuple[int, int]] = []
    n = per_chunk  # start a range at the first block
    for block, size in per_block.iter_rows():
        if n + size > per_chunk:
            ranges.append((block * regions_per_read, (block + 1) * regions_per_read))
            n = 0
        ranges[-1] = (ranges[-1][0], (block + 1) * regions_per_read)
        n += size
    return ranges


def _accumulate_chunk(
    regions: RegionSource,
    windows: pl.DataFrame,
    n_motifs: int,
    motif_width: int,
    regions_per_read: int,
    acc: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Add the windows of one chunk to ``acc`` (per slot) and ``counts`` (per group)."""
    if not windows.height:
        return
    n_groups = len(counts)
    rows = _rows_of(regions.peaks, windows.get_column("peak_id").to_numpy())
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    starts = windows.get_column("hit_start").to_numpy()[order]
    group = (
        windows.get_column("kind").to_numpy().astype(np.int32) * n_motifs
        + windows.get_column("motif_idx").to_numpy().astype(np.int32)
    )[order]
    slot = group * 2 + windows.get_column("is_revcomp").to_numpy()[order]
    del order
    offsets = np.arange(motif_width)
    # Only blocks holding windows are read.
    for block_start in np.unique(rows[rows >= 0] // regions_per_read) * regions_per_read:
        block_stop = min(int(block_start) + regions_per_read, regions.n_regions)
        lo, hi = np.searchsorted(rows, [block_start, block_stop])
        start = starts[lo:hi]
        valid = (start >= 0) & (start + motif_width <= regions.width)
        if not valid.any():
            continue
        local = rows[lo:hi][valid] - block_start
        block = regions.read_block(int(block_start), block_stop)
        win = _windows(block, local, start[valid], offsets)
        sel = slot[lo:hi][valid]
        # Per-slot sums by sorting and reduceat (no BLAS: its threads fight on busy nodes).
        by_slot = np.argsort(sel, kind="stable")
        sel = sel[by_slot]
        first = np.flatnonzero(np.r_[True, sel[1:] != sel[:-1]])
        acc[sel[first]] += np.add.reduceat(win[by_slot], first, axis=0)
        counts += np.bincount(sel // 2, minlength=n_groups)


def _windows(
    block: RegionBlock, local: np.ndarray, start: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Contribution x one-hot under each window, shape=(h, W * 4), float64, position-major.

    Only the windows are gathered and multiplied, never the whole block.
    """
    rows, pos = local[:, None], start[:, None] + offsets[None, :]
    seq = block.sequences[rows, :, pos]  # (h, W, 4)
    contrib = block.contributions
    con = contrib[rows, :, pos] if contrib.ndim == 3 else contrib[rows, pos][..., None]
    win = con.astype(np.float64) * seq
    if not np.isfinite(win).all():
        win = np.nan_to_num(win, nan=0.0, posinf=0.0, neginf=0.0)
    return win.reshape(len(local), -1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two matrices (NaN when either is all-zero or NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float((a * b).sum() / (np.sqrt((a * a).sum()) * np.sqrt((b * b).sum())))
