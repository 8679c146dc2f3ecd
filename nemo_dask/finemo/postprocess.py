"""finemo's post-processing verbs: collapse overlapping hits, intersect runs.

Both accept finemo's hits TSVs, finemo output directories and nemo_dask output directories
(read by :func:`nemo_dask.finemo.read.load_hits`), and follow finemo 0.41's ``postprocessing.py``:

- **collapse**: hits are swept in file order. Each hit is widened/narrowed to
  ``[2 start + int(f len), 2 end - int(f len)]`` (``f`` = overlap fraction), so two such
  intervals meet exactly when the hits overlap by at least ``f`` times their mean length, and it
  is compared with every earlier hit still "active" (same chromosome, interval end >= its start,
  as finemo's heap keeps them). Of a compared pair finemo's rule marks the *earlier* hit
  non-primary unless the later one is strictly more similar, and then marks the later one
  non-primary (``is_primary`` is 1 for hits that lose no comparison). We evaluate the same pairs
  with numpy, one offset at a time, without numba.
- **intersect**: successive inner joins on finemo's key columns (nulls equal, later inputs'
  other columns suffixed ``_1``, ``_2``, ...). finemo 0.41 passes ``join_nulls``, which polars
  >= 2 removed; we pass its successor ``nulls_equal``.

Hits of regions without coordinates (``chr`` null or finemo's placeholder ``"NA"``; their
positions are offsets within the region) are keyed by region, ``peak_id``, in both verbs:
finemo 0.41 treats "NA" as one chromosome, so its collapse sweeps all regions as one (hits of
different regions at the same offset knock each other out) and its relaxed intersect pairs hits
of different regions.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InputError
from ..storage.outputs import open_output, output_file
from ..storage.urls import is_url, localize
from .formats import COLLAPSED_DTYPES, EXTRA_HITS_DTYPES, NA, RELAXED_KEYS, STRICT_KEYS
from .read import load_hits

HitsSource = str | os.PathLike | pl.LazyFrame | pl.DataFrame

DEFAULT_OVERLAP_FRAC = 0.2

_NULLS_KW = ("nulls_equal" if "nulls_equal" in inspect.signature(pl.LazyFrame.join).parameters
             else "join_nulls")


def collapse_hits(hits: HitsSource, overlap_frac: float = DEFAULT_OVERLAP_FRAC) -> pl.LazyFrame:
    """finemo's collapse-hits: the hits, in their order, with ``is_primary`` (UInt32) appended.

    Only the four key columns are collected; the other columns stay lazy, so writing the result
    with a sink streams them.
    """
    if not 0.0 <= overlap_frac <= 1.0:
        raise InputError(f"overlap_frac must lie in [0, 1], got {overlap_frac}")
    lf = _lazy(hits)
    keys = lf.select("chr", "start", "end", "hit_similarity", "peak_id").collect()
    if keys.height:
        # Chromosome ids by first appearance, as finemo numbers them; a region without
        # coordinates is a chromosome of its own (its positions are offsets in the region).
        chrom = keys.select(pl.when(_no_coordinates()).then(
            pl.lit("\x00region ") + pl.col("peak_id").cast(pl.String))
            .otherwise(pl.col("chr")).alias("chr")).to_series()
        order = chrom.unique(maintain_order=True)
        chrom_id = chrom.replace_strict(order, pl.int_range(len(order), eager=True),
                                        return_dtype=pl.Int64).to_numpy()
    else:
        chrom_id = keys["peak_id"].cast(pl.Int64).to_numpy()
    length = pl.col("end").cast(pl.Int64) - pl.col("start")
    # finemo: (end - start) * f is a float, truncated by the cast to Int32.
    shrink = (length * overlap_frac).cast(pl.Int32)
    trimmed = keys.select(s=pl.col("start").cast(pl.Int64) * 2 + shrink,
                          e=pl.col("end").cast(pl.Int64) * 2 - shrink)
    primary = primary_mask(chrom_id, trimmed["s"].to_numpy(), trimmed["e"].to_numpy(),
                           keys["hit_similarity"].cast(pl.Float32).to_numpy())
    flag = pl.LazyFrame({"is_primary": pl.Series(primary, dtype=pl.UInt32)})
    return pl.concat([lf, flag], how="horizontal")


def primary_mask(chrom: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 similarity: np.ndarray) -> np.ndarray:
    """finemo's sweep over N hits in order; returns is_primary as uint32, shape (N,).

    Hit j is active at a later hit i while, for every k in (j, i], (chrom_j, end_j) >=
    (chrom_k, start_k) lexicographically, i.e. until finemo's heap would have popped it. Each
    active pair (j, i) is compared once: j loses if not sim_i > sim_j, else i loses.
    """
    n = len(chrom)
    out = np.ones(n, dtype=bool)
    j = np.arange(max(n - 1, 0))
    t = 1
    while j.size:
        i = j + t
        active = (chrom[j] > chrom[i]) | ((chrom[j] == chrom[i]) & (ends[j] >= starts[i]))
        j, i = j[active], i[active]
        later_better = similarity[i] > similarity[j]
        out[j[~later_better]] = False
        out[i[later_better]] = False
        t += 1
        j = j[j + t < n]
    return out.astype(np.uint32)


def intersect_hits(hits: Sequence[HitsSource], relaxed: bool = False) -> pl.LazyFrame:
    """finemo's intersect-hits: hits present in every input, joined on finemo's key columns.

    Columns of the first input keep their names; the others' non-key columns get ``_<index>``.
    Rows follow the first input's order.
    """
    if len(hits) < 1:
        raise InputError("intersect-hits needs at least one hits input")
    keys = [*(RELAXED_KEYS if relaxed else STRICT_KEYS), "_region"]
    # Hits without coordinates match only hits of the same region.
    frames = [_lazy(h).with_columns(_region=pl.when(_no_coordinates()).then(pl.col("peak_id")))
              for h in hits]
    result = frames[0]
    for idx, other in enumerate(frames[1:], start=1):
        result = result.join(other, on=keys, how="inner", suffix=f"_{idx}", coalesce=True,
                             maintain_order="left", **{_NULLS_KW: True})
    return result.drop("_region")


def _no_coordinates() -> pl.Expr:
    return pl.col("chr").is_null() | (pl.col("chr") == NA)


def write_collapsed(source: str | os.PathLike[str], out_path: str | os.PathLike[str],
                    overlap_frac: float = DEFAULT_OVERLAP_FRAC, *, unique: bool = False,
                    max_qvalue: float | None = None) -> Path:
    """``nemo-dask collapse-hits``: collapse one hits input and write finemo's TSV.

    An input with extra columns (a run's ``motif_label`` and ``hit_qvalue``, or an export's
    extended files) keeps them after finemo's columns, before ``is_primary``, as finemo keeps
    every input column; ``max_qvalue`` collapses only the hits at most at that q-value.
    """
    output_file(out_path, "hits table")  # an unusable -o is refused before any work
    lf = collapse_hits(load_hits(source, unique=unique, max_qvalue=max_qvalue), overlap_frac)
    names = lf.collect_schema().names()
    extra = [c for c in EXTRA_HITS_DTYPES if c in names]
    columns = [c for c in COLLAPSED_DTYPES if c != "is_primary"] + extra + ["is_primary"]
    return write_tsv(lf.select(columns), out_path)


def write_intersection(sources: Sequence[str | os.PathLike[str]],
                       out_path: str | os.PathLike[str], relaxed: bool = False, *,
                       unique: bool = False, max_qvalue: float | None = None) -> Path:
    """``nemo-dask intersect-hits``: intersect hits inputs and write every column as TSV.

    ``max_qvalue`` keeps, in every input, only the hits at most at that q-value (each input
    must have q-values: a run with them, or an export's extended files).
    """
    output_file(out_path, "hits table")  # an unusable -o is refused before any work
    lf = intersect_hits([load_hits(s, unique=unique, max_qvalue=max_qvalue)
                         for s in sources], relaxed)
    return write_tsv(lf, out_path)


def write_tsv(lf: pl.LazyFrame, out_path: str | os.PathLike[str]) -> Path:
    """Stream ``lf`` as a tab-separated table to ``out_path``
    (:func:`nemo_dask.storage.outputs.open_output`: a file atomically, a symlink's target, a
    device, FIFO or ``-`` directly)."""
    with open_output(out_path, "wb", what="hits table") as f:
        lf.sink_csv(f, separator="\t", engine="streaming")
    target = localize(out_path)
    return target if is_url(target) else Path(target)


def _lazy(hits: HitsSource) -> pl.LazyFrame:
    if isinstance(hits, pl.DataFrame):
        return hits.lazy()
    if isinstance(hits, pl.LazyFrame):
        return hits
    return load_hits(hits)


__all__ = (
    "DEFAULT_OVERLAP_FRAC", "collapse_hits", "intersect_hits", "primary_mask", "write_collapsed",
    "write_intersection", "write_tsv",
)
