"""Statistics of distinct hits: finemo's motif_report counts and its seqlet confusion.

finemo identifies a hit by (chr_id, start_untrimmed, motif_name, strand), so the same instance
seen from two overlapping regions counts once. De-duplicating needs a hash table of every hit;
to bound memory the hits are split by ``start_untrimmed`` modulo a number of parts (copies of one
instance share their start, so they fall in the same part) and each part is aggregated on its
own, about :data:`HITS_PER_PART` hits at a time. The windows each part contributes to the
hit-averaged CWMs (one per distinct hit) are spilled to Parquet files, so that memory stays
bounded however many hits there are.

Definitions follow finemo 0.41's ``evaluation.py``: a hit is *restricted* when it lies inside
the central ``modisco_region_width`` bp of its region, the window tfmodisco looked at; hits
and seqlets *overlap* when their identities are equal.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

#: Hits aggregated per part (bounds the de-duplication hash table to ~100 MB).
HITS_PER_PART = 1_000_000

_KEYS = ["chr_id", "start_untrimmed", "motif_idx", "is_revcomp"]
_STREAMING = "streaming"


class HitCounts(NamedTuple):
    """Per-motif counts, the windows averaged into CWMs, and seqlet/hit bin overlaps.

    Attributes
    ----------
    counts : polars.DataFrame
        One row per motif: motif_name and the count columns of motif_report.tsv.
    windows : polars.LazyFrame
        peak_id, hit_start (window start within the region), is_revcomp, motif_idx and kind
        (0: every distinct hit, 1: seqlets no hit recovered, 2: restricted hits that are no
        seqlet); a scan of the files spilled into ``spill_dir``, each sorted by peak_id.
    bin_overlaps : ndarray, shape=(M, M), int64, or None
        Seqlets of motif i sharing their start and end bins with distinct hits of motif j.
    """

    counts: pl.DataFrame
    windows: pl.LazyFrame
    bin_overlaps: np.ndarray | None


#: Schema of :attr:`HitCounts.windows`.
WINDOW_SCHEMA = {
    "peak_id": pl.UInt32,
    "hit_start": pl.Int32,
    "is_revcomp": pl.Boolean,
    "motif_idx": pl.UInt32,
    "kind": pl.UInt8,
}


class _WindowSpill:
    """Writes window frames to numbered Parquet files under a directory, sorted by peak_id."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []

    def add(self, frame: pl.DataFrame | pl.LazyFrame) -> None:
        frame = frame.lazy().cast(WINDOW_SCHEMA).sort("peak_id", "hit_start").collect()  # type: ignore[arg-type]
        if frame.height:
            path = self.dir / f"windows-{len(self.files):05d}.parquet"
            # Small row groups: readers filtering on a peak_id range skip the others.
            frame.write_parquet(path, row_group_size=65_536, statistics=True)
            self.files.append(path)

    def scan(self) -> pl.LazyFrame:
        if not self.files:
            return pl.LazyFrame(schema=WINDOW_SCHEMA)
        return pl.scan_parquet([str(f) for f in self.files])


def with_motif_index(hits: pl.LazyFrame, motif_names: list[str]) -> pl.LazyFrame:
    """Add ``motif_idx`` (position of the hit's motif name in ``motif_names``), ``is_revcomp``."""
    # An Enum cast, not replace_strict: polars' streaming engine runs the former chunk by
    # chunk but materialises every row for the latter (626 against 203 MB at 5.2M hits).
    return hits.with_columns(
        motif_idx=pl.col("motif_name").cast(pl.Enum(motif_names)).to_physical().cast(pl.UInt32),
        is_revcomp=pl.col("strand") == "-",
    )


def n_parts(frame: pl.LazyFrame, rows_per_part: int | None = None) -> int:
    """How many parts to split ``frame`` into for about ``rows_per_part`` rows each."""
    n = frame.select(pl.len()).collect().item()
    return max(1, math.ceil(n / (rows_per_part or HITS_PER_PART)))


def hit_counts(
    hits: pl.LazyFrame,
    seqlets: pl.DataFrame | None,
    peaks: pl.DataFrame,
    motif_names: list[str],
    region_width: int,
    motif_width: int,
    modisco_region_width: int,
    compute_recall: bool,
    spill_dir: str | Path,
    parts: int | None = None,
) -> HitCounts:
    """Hits, restricted hits, seqlets and their overlaps per motif (finemo's motif_report counts).

    Parameters
    ----------
    hits : polars.LazyFrame
        The hits dataset (``scan_hits``).
    seqlets : polars.DataFrame or None
        :func:`nemo_dask.report.seqlets.load_seqlets` output; None without a TF-MoDISco H5.
    peaks : polars.DataFrame
        Peak table of the regions (peak_id, peak_region_start).
    motif_names : list of str
        Motif names in report order.
    region_width, motif_width, modisco_region_width : int
        L, the untrimmed motif width W, and the width of the central window tfmodisco ran on.
    compute_recall : bool
        Whether to count overlaps, missed seqlets and extra hits.
    spill_dir : path
        An empty directory for the window files (the caller removes it when done).
    parts : int, optional
        Number of parts to aggregate separately (default: by :data:`HITS_PER_PART`).
    """
    parts = parts or n_parts(hits)
    keyed = _keyed_hits(hits, motif_names, region_width, modisco_region_width)
    seq = None if seqlets is None else _seqlet_keys(seqlets, motif_names)
    tally = _Tally(len(motif_names), seq, compute_recall and seq is not None, motif_width,
                   peaks.select("peak_id", prs=pl.col("peak_region_start").cast(pl.Int64)),
                   _WindowSpill(spill_dir))
    for p in range(parts):
        part = keyed if parts == 1 else keyed.filter(pl.col("start_untrimmed") % parts == p)
        # One row per distinct hit. Its representative window is in the lowest peak_id seeing it
        # (for restricted hits, the lowest seeing it inside the central window). Only simple
        # aggregations, so that polars' streaming engine runs the group-by.
        tally.add(
            part.group_by(_KEYS)
            .agg(
                peak_id=pl.col("peak_id").min(),
                r_peak_id=pl.when("restricted").then(pl.col("peak_id")).min(),
            )
            .collect(engine=_STREAMING)
        )
    return tally.result(motif_names)


def _keyed_hits(hits: pl.LazyFrame, motif_names: list[str], region_width: int,
                modisco_region_width: int) -> pl.LazyFrame:
    """Each hit's key columns, peak and whether it lies in the central window tfmodisco ran on
    (finemo's "restricted" hits)."""
    center = region_width / 2
    half = modisco_region_width // 2
    in_window = (pl.col("hit_start") >= center - half) & (
        pl.col("hit_start") + (pl.col("end_untrimmed") - pl.col("start_untrimmed")) <= center + half
    )
    return with_motif_index(
        hits.select(
            "chr_id",
            "start_untrimmed",
            "end_untrimmed",
            "hit_start",
            "peak_id",
            "motif_name",
            "strand",
        ),
        motif_names,
    ).select(*_KEYS, "peak_id", restricted=in_window)


class _Tally:
    """Per-motif counts summed over the parts of the distinct hits, and the windows to draw."""

    def __init__(self, n_motifs: int, seq: pl.DataFrame | None, recall: bool, motif_width: int,
                 starts: pl.DataFrame, windows: _WindowSpill) -> None:
        self.n, self.seq, self.recall, self.motif_width = n_motifs, seq, recall, motif_width
        self.starts, self.windows = starts, windows
        self.total = np.zeros(n_motifs, np.int64)
        self.restricted = np.zeros(n_motifs, np.int64)
        self.overlaps = np.zeros(n_motifs, np.int64)
        self.extra = np.zeros(n_motifs, np.int64)
        self.bins = np.zeros((n_motifs, n_motifs), np.int64)
        self.found: list[pl.DataFrame] = []  # seqlet keys found among hits (for the missed)

    def add(self, distinct: pl.DataFrame) -> None:
        """Count one part's distinct hits (one row each, with ``peak_id`` and ``r_peak_id``)."""
        is_r = distinct["r_peak_id"].is_not_null().to_numpy()
        idx = distinct["motif_idx"].to_numpy().astype(np.int64)
        self.total += np.bincount(idx, minlength=self.n)
        self.restricted += np.bincount(idx[is_r], minlength=self.n)
        self.windows.add(_windows(distinct, self.starts, "peak_id", 0))
        seq = self.seq
        if seq is None:
            return
        self.bins += _bin_overlaps(distinct, seq, self.motif_width, self.n)
        if self.recall:
            restricted = distinct.filter(pl.col("r_peak_id").is_not_null())
            self.overlaps += _per_motif(restricted.join(seq, on=_KEYS, how="semi"), self.n)
            extra = restricted.join(seq, on=_KEYS, how="anti")
            self.extra += _per_motif(extra, self.n)
            self.windows.add(_windows(extra, self.starts, "r_peak_id", 2))
            self.found.append(seq.join(distinct, on=_KEYS, how="semi").select(_KEYS))

    def result(self, motif_names: list[str]) -> HitCounts:
        """finemo's motif_report counts per motif, the windows, and the hit-seqlet bins."""
        seq = self.seq
        counts: dict[str, object] = {
            "motif_name": motif_names,
            "num_hits_total": self.total,
            "num_hits_restricted": self.restricted,
        }
        if seq is not None:
            counts["num_seqlets"] = _per_motif(seq, self.n)
        if seq is not None and self.recall:
            missed = seq.join(pl.concat(self.found), on=_KEYS, how="anti")
            counts |= {
                "num_overlaps": self.overlaps,
                "num_seqlets_only": _per_motif(missed, self.n),
                "num_hits_restricted_only": self.extra,
            }
            self.windows.add(
                missed.select(
                    "peak_id", "hit_start", "is_revcomp", "motif_idx", kind=pl.lit(1, pl.UInt8)
                )
            )
        table = pl.DataFrame(counts)
        if self.recall:
            table = table.with_columns(
                seqlet_recall=pl.when(pl.col("num_seqlets") > 0)
                .then(pl.col("num_overlaps") / pl.col("num_seqlets"))
                .otherwise(0.0)
            )
        return HitCounts(table, self.windows.scan(), self.bins if seq is not None else None)


def _seqlet_keys(seqlets: pl.DataFrame, motif_names: list[str]) -> pl.DataFrame:
    index = {m: i for i, m in enumerate(motif_names)}
    return seqlets.select(
        "chr_id",
        "start_untrimmed",
        "end_untrimmed",
        "is_revcomp",
        "peak_id",
        motif_idx=pl.col("motif_name").replace_strict(index, return_dtype=pl.UInt32),
        hit_start=(pl.col("start_untrimmed") - pl.col("peak_region_start")).cast(pl.Int32),
    )


def _windows(frame: pl.DataFrame, starts: pl.DataFrame, peak_col: str, kind: int) -> pl.DataFrame:
    """Windows of distinct hits, placed in their representative region."""
    return (
        frame.select("start_untrimmed", "is_revcomp", "motif_idx", peak_id=peak_col)
        .join(starts, on="peak_id", how="inner")
        .select(
            "peak_id",
            hit_start=(pl.col("start_untrimmed") - pl.col("prs")).cast(pl.Int32),
            is_revcomp="is_revcomp",
            motif_idx="motif_idx",
            kind=pl.lit(kind, pl.UInt8),
        )
    )


def _bin_overlaps(
    distinct: pl.DataFrame, seq: pl.DataFrame, width: int, n_motifs: int
) -> np.ndarray:
    """Seqlet x hit pairs whose untrimmed start and end fall in the same ``width`` bins.

    Untrimmed hits are ``width`` long, so a hit's end bin follows from its start.
    """
    hit_bins = distinct.select(
        "chr_id",
        start_bin=pl.col("start_untrimmed") // width,
        end_bin=(pl.col("start_untrimmed") + width) // width,
        hit_idx="motif_idx",
    )
    seq_bins = seq.select(
        "chr_id",
        start_bin=pl.col("start_untrimmed") // width,
        end_bin=pl.col("end_untrimmed") // width,
        seq_idx="motif_idx",
    )
    pairs = seq_bins.join(hit_bins, on=["chr_id", "start_bin", "end_bin"], how="inner")
    flat = pairs["seq_idx"].to_numpy().astype(np.int64) * n_motifs + pairs["hit_idx"].to_numpy()
    return np.bincount(flat, minlength=n_motifs * n_motifs).reshape(n_motifs, n_motifs)


def _per_motif(frame: pl.DataFrame, n_motifs: int) -> np.ndarray:
    """Rows per motif_idx as an int64 array of length ``n_motifs``."""
    idx = frame.get_column("motif_idx").to_numpy()
    return np.bincount(idx.astype(np.int64), minlength=n_motifs).astype(np.int64)


def seqlet_confusion(counts: HitCounts, motif_names: list[str]) -> pl.DataFrame:
    """Fraction of each motif's seqlets sharing a position bin with hits of each motif.

    Only non-zero pairs are listed, in motif order (finemo's ``seqlet_confusion.tsv``; a value
    above 1 means several hits per seqlet).

    Returns
    -------
    polars.DataFrame
        motif_name_seqlets, motif_name_hits, frac_overlap.
    """
    assert counts.bin_overlaps is not None and "num_seqlets" in counts.counts.columns
    n_seq = counts.counts["num_seqlets"].to_numpy()
    rows, cols = np.nonzero(counts.bin_overlaps)
    return pl.DataFrame(
        {
            "motif_name_seqlets": [motif_names[i] for i in rows],
            "motif_name_hits": [motif_names[j] for j in cols],
            "frac_overlap": counts.bin_overlaps[rows, cols] / n_seq[rows],
        },
        schema={
            "motif_name_seqlets": pl.String,
            "motif_name_hits": pl.String,
            "frac_overlap": pl.Float64,
        },
    )


def confusion_matrix(confusion: pl.DataFrame, motif_names: list[str]) -> np.ndarray:
    """A confusion table as a dense matrix, shape=(M, M): rows seqlet motif, columns hit motif."""
    order = {m: i for i, m in enumerate(motif_names)}
    mat = np.zeros((len(motif_names), len(motif_names)), dtype=np.float64)
    for s, h, f in confusion.iter_rows():
        if s in order and h in order:
            mat[order[s], order[h]] = f
    return mat
