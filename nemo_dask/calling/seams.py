"""The seam rule of tiled stores: each motif instance is reported by exactly one window.

A store made by ``nemo-dask convert intervals`` holds overlapping windows; the converter gives
every window a half-open genomic span it owns (``tiling/own_start``, ``tiling/own_end``; the
spans of an interval's windows partition the interval, the boundary between two windows being
the middle of their overlap; see :mod:`nemo_dask.regions.convert.intervals`). A hit is kept
only by the window owning its anchor, the centre of its untrimmed motif window::

    anchor = start_untrimmed + W // 2        (genomic; W = untrimmed motif width)
    kept   = own_start[window] <= anchor < own_end[window]

So an instance seen by two windows is kept once (no duplicates), by the window where it lies
farther from the edge, and one anchored anywhere in the interval is owned by a window that
holds its whole untrimmed span as long as the overlap is at least W (:func:`check_tiling`
refuses smaller overlaps), so none is dropped at a seam. The rule is applied in each task,
before its partition is written, so partitions never hold duplicates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ..errors import InputError

#: Attribute key of the tiling parameters in a regions store (see regions.convert.intervals).
TILING_KEY = "tiling"


def tiling(regions: Any) -> dict[str, Any] | None:
    """The tiling parameters of a regions store (width, overlap, step), or None if untiled."""
    attrs = getattr(regions, "attrs", None)
    if not isinstance(attrs, dict):
        return None
    value = attrs.get(TILING_KEY)
    return value if isinstance(value, dict) else None


def check_tiling(regions: Any, motif_width: int, label: str) -> None:
    """Refuse a tiled store whose overlap is narrower than the untrimmed motif width W.

    Raises
    ------
    InputError
        ``overlap < W``: an instance on a seam could then be owned by a window that does not
        hold it whole, and be lost.
    """
    tiles = tiling(regions)
    if tiles is None:
        return
    overlap = int(tiles["overlap"])
    if overlap < motif_width:
        raise InputError(f"{label}: tiled with --overlap {overlap}, narrower than the motifs' "
                         f"untrimmed width W = {motif_width}; an instance on a seam could be "
                         f"lost. Convert again with --overlap {motif_width} or more (default "
                         "100)")


def owned_spans(regions: Any, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """``own_start`` and ``own_end`` (int64, genomic) of windows ``start:stop``."""
    return (np.asarray(regions.read_array("tiling/own_start", start, stop), dtype=np.int64),
            np.asarray(regions.read_array("tiling/own_end", start, stop), dtype=np.int64))


def keep_owned(hits: pl.DataFrame, regions: Any, start: int, stop: int,
               motif_width: int) -> pl.DataFrame:
    """The hits of windows ``start:stop`` whose anchor their window owns (all hits when the
    store is not tiled).

    Parameters
    ----------
    hits : polars.DataFrame
        Annotated hits (:func:`nemo_dask.calling.columns.stored_tables`): ``region`` (store row) and
        ``start_untrimmed`` (genomic) columns.
    regions : Regions
        The store the windows come from.
    start, stop : int
        The block's rows.
    motif_width : int
        Untrimmed motif width W.
    """
    if tiling(regions) is None or hits.height == 0:
        return hits
    own_start, own_end = owned_spans(regions, start, stop)
    row = hits.get_column("region").to_numpy() - start
    anchor = hits.get_column("start_untrimmed").to_numpy().astype(np.int64) + motif_width // 2
    keep = (own_start[row] <= anchor) & (anchor < own_end[row])
    return hits.filter(pl.Series(keep))


__all__ = ("TILING_KEY", "check_tiling", "keep_owned", "owned_spans", "tiling")
