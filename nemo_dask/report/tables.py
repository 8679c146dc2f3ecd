"""Per-region statistics and hit-statistic histograms, from lazy scans of the hits dataset.

Queries that group by region run over ranges of peak_id holding about
:data:`~nemo_dask.report.distinct.HITS_PER_PART` hits each; the partitions of a run hold
consecutive regions, so each range reads only the files it needs. Definitions follow finemo
0.41's ``evaluation.py`` and ``visualization.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import IO, NamedTuple

import numpy as np
import polars as pl

from . import distinct
from .distinct import with_motif_index

#: The columns of ``motif_report.tsv``, in finemo's order, with and without recall statistics.
REPORT_COLUMNS = (
    "motif_name",
    "num_hits_total",
    "num_hits_restricted",
    "num_seqlets",
    "num_overlaps",
    "num_seqlets_only",
    "num_hits_restricted_only",
    "seqlet_recall",
    "cwm_similarity",
)

#: Hit statistics whose distributions the report plots (finemo's choice).
HIT_STATISTICS = ("hit_coefficient_global", "hit_similarity", "hit_importance")

_STREAMING = "streaming"


class RegionStats(NamedTuple):
    """Hits per region and motif co-occurrence.

    Attributes
    ----------
    hits_per_region : polars.DataFrame
        motif_name (a motif, or ``"total"``), num_hits (k), num_regions: regions with k hits,
        zeros included.
    cooccurrence : ndarray, shape=(M, M), int64
        Regions holding both motif i and motif j (diagonal: regions holding motif i).
    """

    hits_per_region: pl.DataFrame
    cooccurrence: np.ndarray


def occurrences(hits: pl.LazyFrame, motif_names: list[str]) -> pl.LazyFrame:
    """Hits per motif per region, and their total (finemo's ``motif_occurrences.tsv``).

    One row per region with at least one hit, sorted by peak_id; every hit counts (duplicates
    seen from overlapping regions included), as in finemo.
    """
    idx = with_motif_index(hits.select("peak_id", "motif_name", "strand"), motif_names)
    per_motif = [
        (pl.col("motif_idx") == i).sum().cast(pl.Int32).alias(m) for i, m in enumerate(motif_names)
    ]
    return (
        idx.group_by("peak_id")
        .agg(per_motif)
        .with_columns(total=pl.sum_horizontal(*motif_names).cast(pl.Int32))
        .sort("peak_id")
    )


def peak_ranges(hits: pl.LazyFrame, rows_per_part: int | None = None) -> list[tuple[int, int]]:
    """[lo, hi) ranges of peak_id holding about ``rows_per_part`` hits each."""
    n, top = hits.select(pl.len(), pl.col("peak_id").max()).collect().row(0)
    if not n:
        return []
    parts = max(1, math.ceil(n / (rows_per_part or distinct.HITS_PER_PART)))
    step = math.ceil((int(top) + 1) / parts)
    return [(lo, lo + step) for lo in range(0, int(top) + 1, step)]


def occurrence_chunks(
    hits: pl.LazyFrame, motif_names: list[str], rows_per_part: int | None = None
) -> Iterator[pl.DataFrame]:
    """:func:`occurrences`, collected one range of peak_id at a time, in peak_id order."""
    occ = occurrences(hits, motif_names)
    for lo, hi in peak_ranges(hits, rows_per_part):
        yield occ.filter((pl.col("peak_id") >= lo) & (pl.col("peak_id") < hi)).collect()


def write_occurrences(
    hits: pl.LazyFrame, motif_names: list[str], f: IO[bytes]
) -> None:
    """Write ``motif_occurrences.tsv`` chunk by chunk into the binary file ``f``."""
    empty = occurrences(hits.clear(), motif_names).collect()
    empty.write_csv(f, separator="\t")
    for chunk in occurrence_chunks(hits, motif_names):
        chunk.write_csv(f, separator="\t", include_header=False)


def region_stats(hits: pl.LazyFrame, motif_names: list[str], n_regions: int) -> RegionStats:
    """Hits-per-region distributions and co-occurrence, accumulated over peak_id ranges."""
    n = len(motif_names)
    per_motif: list[np.ndarray] = [np.zeros(1, np.int64) for _ in range(n + 1)]
    coocc = np.zeros((n, n), np.int64)
    for chunk in occurrence_chunks(hits, motif_names):
        counts = chunk.select([*motif_names, "total"]).to_numpy().astype(np.int64)
        for j in range(n + 1):
            h = np.bincount(counts[:, j])
            size = max(len(h), len(per_motif[j]))
            per_motif[j] = np.pad(per_motif[j], (0, size - len(per_motif[j]))) + np.pad(
                h, (0, size - len(h))
            )
        present = (counts[:, :n] > 0).astype(np.int64)
        coocc += present.T @ present
    frames = []
    for j, m in enumerate([*motif_names, "total"]):
        h = per_motif[j].copy()
        h[0] += n_regions - int(h.sum())  # regions without hits are absent from the chunks
        frames.append(
            pl.DataFrame(
                {"motif_name": m, "num_hits": np.arange(len(h)), "num_regions": h},
                schema={"motif_name": pl.String, "num_hits": pl.Int64, "num_regions": pl.Int64},
            )
        )
    return RegionStats(pl.concat(frames), coocc)


def hit_stat_histograms(hits: pl.LazyFrame, motif_names: list[str], bins: int = 50) -> pl.DataFrame:
    """Histograms of :data:`HIT_STATISTICS` per motif, ``bins`` equal bins over each range.

    Returns
    -------
    polars.DataFrame
        motif_name, statistic, bin_left, bin_right, count (empty bins included).
    """
    stats = list(HIT_STATISTICS)
    idx = with_motif_index(hits.select("motif_name", "strand", *stats), motif_names)
    ranges = (
        idx.group_by("motif_idx")
        .agg(
            [pl.col(s).min().alias(f"{s}_min") for s in stats]
            + [pl.col(s).max().alias(f"{s}_max") for s in stats]
        )
        .collect(engine=_STREAMING)
    )
    frames = []
    for s in stats:
        lo = {int(r["motif_idx"]): float(r[f"{s}_min"]) for r in ranges.iter_rows(named=True)}
        hi = {int(r["motif_idx"]): float(r[f"{s}_max"]) for r in ranges.iter_rows(named=True)}
        span = {k: (hi[k] - lo[k]) or 1.0 for k in lo}
        # The bounds come in by a join, not replace_strict, so that the streaming engine runs
        # the query chunk by chunk.
        bounds = pl.LazyFrame(
            {"motif_idx": list(lo), "_lo": list(lo.values()), "_span": [span[k] for k in lo]},
            schema={"motif_idx": pl.UInt32, "_lo": pl.Float64, "_span": pl.Float64},
        )
        b = (
            ((pl.col(s).cast(pl.Float64) - pl.col("_lo")) / pl.col("_span") * bins)
            .floor()
            .clip(0, bins - 1)
            .cast(pl.Int32)
        )
        counts = (
            (
                idx.filter(pl.col(s).is_not_nan() & pl.col(s).is_not_null())
                .join(bounds, on="motif_idx", how="inner")
                .group_by("motif_idx", b.alias("bin"))
                .len("count")
                .collect(engine=_STREAMING)
            )
            if lo
            else pl.DataFrame(schema={"motif_idx": pl.UInt32, "bin": pl.Int32, "count": pl.UInt32})
        )
        for i, m in enumerate(motif_names):
            full = np.zeros(bins, dtype=np.int64)
            part = counts.filter(pl.col("motif_idx") == i)
            full[part["bin"].to_numpy()] = part["count"].to_numpy()
            left = lo.get(i, 0.0)
            edges = left + span.get(i, 1.0) * np.arange(bins + 1) / bins
            frames.append(
                pl.DataFrame(
                    {
                        "motif_name": m,
                        "statistic": s,
                        "bin_left": edges[:-1],
                        "bin_right": edges[1:],
                        "count": full,
                    }
                )
            )
    return pl.concat(frames)
