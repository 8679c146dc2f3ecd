"""FASTA + bigWig(s) + intervals of any width -> a tiled regions store (``convert intervals``).

Each interval (a BED row, a whole chromosome of a chrom.sizes file, or every chromosome of the
FASTA) is covered by windows of width L placed every ``step = L - overlap`` bases: the fewest
such windows that cover the interval widened by ``overlap // 2`` bases on the left and
``overlap - overlap // 2`` on the right, centred on it (an interval of ``L - overlap`` bases or
less gets one window centred on it, as a peak's window is centred on its summit). Windows reaching past a chromosome end are zero-padded
there (see :func:`nemo_dask.regions.convert.bigwig.fill_window`).

Ownership (the seam rule, applied by :mod:`nemo_dask.calling.seams` when hits are called): the
windows of one interval split it into consecutive half-open spans, one per window. The boundary
between windows k and k+1 (starts ``s_k`` and ``s_k + step``) is the middle of their overlap,
``b_k = s_k + step + overlap // 2``; window k owns ``[b_(k-1), b_k)``, the first window's span
starting at the interval's start and the last's ending at the interval's end. A hit belongs to
the window owning its anchor, the centre of its untrimmed motif window
``start_untrimmed + W // 2``. The spans partition the interval, so each instance is reported
once; with ``overlap >= W`` every anchor in a window's span has its whole untrimmed window
inside that window (``call-hits`` refuses a store whose overlap is below the motifs' W), at
least ``(overlap - W) // 2`` bases from the window's edges, also at the interval's ends, so no
instance is lost to a seam; a hit anchored in window k's span lies farther from window k's
edge than from its neighbour's. Hits anchored outside the interval (in the context a short
interval's window adds around it) are dropped: they belong to no requested interval.

Overlapping or book-ended intervals of one chromosome are merged first (a warning counts them),
so that no base is owned twice; the merged interval's name joins the names with ``,``.

Stored per window: the peak table (``chr``, ``peak_region_start`` = the window's genomic start,
``peak_name`` = the interval's name, or ``chr:start-end`` without one, ``peak_id`` = window row,
``chr_id``) and, under ``tiling/``: ``interval_id`` (row of the sorted, merged intervals),
``window_index`` (k within the interval), ``own_start`` and ``own_end`` (the owned span).
The store's attrs hold ``tiling``: ``{"width", "overlap", "step", "n_intervals", "anchor"}``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ...errors import InputError
from ...schema import PEAKS_DTYPES
from ...storage.urls import recorded_path
from ..store import Regions
from ._peaks import is_skipped_line, open_text_lines
from ._pipeline import Source, crop_bounds, run_conversion
from .bigwig import _open_bigwigs, _open_fasta, window_reader

PathLike = str | os.PathLike[str]

#: Default overlap of consecutive windows (bp): twice the untrimmed width W = 50 of the bundled
#: tfmodisco-lite patterns (modisco-lite writes 30-50 bp), so every owned hit keeps at least
#: (overlap - W) // 2 bases of context inside its window; call-hits refuses overlap < W.
DEFAULT_OVERLAP = 100
#: Attribute key of the tiling parameters in the store's attributes.
TILING_KEY = "tiling"
#: Arrays under ``tiling/`` and their dtypes.
TILING_ARRAYS = {"interval_id": "uint32", "window_index": "uint32", "own_start": "int64",
                 "own_end": "int64"}


@dataclass
class Intervals:
    """Sorted, merged intervals and the windows that tile them.

    Attributes
    ----------
    chrom, name : list of str
        Per interval.
    start, end : ndarray, int64
        Per interval, 0-based half-open.
    first_window : ndarray, int64, shape=(n + 1,)
        Cumulative window counts: interval i has windows ``first_window[i]:first_window[i+1]``.
    chr_ids : dict
        Chromosome -> chr_id (order of first appearance).
    """

    chrom: list[str]
    name: list[str]
    start: np.ndarray
    end: np.ndarray
    first_window: np.ndarray
    width: int
    step: int
    n_merged: int = 0

    @property
    def n_windows(self) -> int:
        return int(self.first_window[-1])

    def chromosomes(self) -> list[str]:
        return list(dict.fromkeys(self.chrom))

    def windows(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Window rows ``lo:hi``: interval, k, genomic start and the owned span."""
        rows = np.arange(lo, hi, dtype=np.int64)
        iv = np.searchsorted(self.first_window, rows, side="right") - 1
        k = rows - self.first_window[iv]
        n_k = self.first_window[iv + 1] - self.first_window[iv]
        s, e = self.start[iv], self.end[iv]
        overlap = self.width - self.step
        # The tiling covers the interval widened by overlap // 2 on the left and the rest of the
        # overlap on the right, centred: the ends get the same margin as an inner seam.
        lo_ext, hi_ext = s - overlap // 2, e + (overlap - overlap // 2)
        span = self.width + (n_k - 1) * self.step
        first = lo_ext - (span - (hi_ext - lo_ext)) // 2
        begin = first + k * self.step
        boundary = begin + self.step + overlap // 2  # b_k: end of window k's span
        own_start = np.where(k == 0, s, begin + overlap // 2)
        own_end = np.where(k == n_k - 1, e, boundary)
        own_start = np.clip(own_start, s, e)
        own_end = np.clip(own_end, s, e)
        return {"interval": iv, "window_index": k, "begin": begin,
                "own_start": own_start, "own_end": own_end}


def n_windows_for(length: np.ndarray, width: int, step: int) -> np.ndarray:
    """Windows tiling intervals of ``length`` bases: 1 up to L, then ``ceil((n - L)/step) + 1``."""
    return np.where(length <= width, 1, -(-(length - width) // step) + 1).astype(np.int64)


def _read_bed(path: Path) -> tuple[list[str], list[int], list[int], list[str | None]]:
    chroms: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    names: list[str | None] = []
    fh = open_text_lines(path, "intervals BED (-i)")
    try:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\r\n")
            if is_skipped_line(line) or not line.strip():
                continue
            fields = line.decode("utf-8", "replace").split("\t")
            where = f"{path}: line {number}"
            if len(fields) < 3:
                raise InputError(f"{where} has {len(fields)} tab-separated column(s); a BED row "
                                 "needs chr, start, end (name optional)")
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise InputError(f"{where}: start {fields[1][:20]!r} or end {fields[2][:20]!r} "
                                 "is not an integer (a header? start it with #)") from None
            if start < 0 or end <= start:
                raise InputError(f"{where}: interval {start}-{end} is empty or negative; BED "
                                 "needs 0 <= start < end")
            chroms.append(fields[0])
            starts.append(start)
            ends.append(end)
            name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else None
            names.append(name)
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read the intervals BED (-i) ({err})") from None
    finally:
        fh.close()
    if not chroms:
        raise InputError(f"{path}: the intervals BED (-i) holds no intervals")
    return chroms, starts, ends, names


def _read_chrom_sizes(path: Path) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    fh = open_text_lines(path, "chrom sizes file (-g)")
    try:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\r\n")
            if is_skipped_line(line) or not line.strip():
                continue
            fields = line.decode("utf-8", "replace").split("\t")
            try:
                size = int(fields[1])
            except (IndexError, ValueError):
                raise InputError(f"{path}: line {number} is not 'chrom<TAB>size'") from None
            if size <= 0:
                raise InputError(f"{path}: line {number}: size {size} must be > 0")
            out.append((fields[0], size))
    finally:
        fh.close()
    if not out:
        raise InputError(f"{path}: the chrom sizes file (-g) lists no chromosome")
    return out


def plan_intervals(chroms: Sequence[str], starts: Sequence[int], ends: Sequence[int],
                   names: Sequence[str | None], width: int, overlap: int) -> Intervals:
    """Sort intervals by chromosome (first appearance) then start, merge overlapping or
    book-ended ones, and count each one's windows."""
    order = {c: i for i, c in enumerate(dict.fromkeys(chroms))}
    idx = sorted(range(len(chroms)), key=lambda i: (order[chroms[i]], starts[i], ends[i]))
    m_chrom: list[str] = []
    m_start: list[int] = []
    m_end: list[int] = []
    m_names: list[list[str]] = []
    merged = 0
    for i in idx:
        c, s, e = chroms[i], starts[i], ends[i]
        name = names[i] if names[i] is not None else f"{c}:{s}-{e}"
        if m_chrom and m_chrom[-1] == c and s <= m_end[-1]:
            merged += 1
            m_end[-1] = max(m_end[-1], e)
            if name not in m_names[-1]:
                m_names[-1].append(name)
            continue
        m_chrom.append(c)
        m_start.append(s)
        m_end.append(e)
        m_names.append([name])
    step = width - overlap
    start, end = np.asarray(m_start, np.int64), np.asarray(m_end, np.int64)
    counts = n_windows_for(end - start + overlap, width, step)
    first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Intervals(m_chrom, [",".join(n) for n in m_names], start, end, first, width, step,
                     merged)


class _WindowPeaks:
    """The windows' peak table, generated chunk by chunk (a PeakReader)."""

    def __init__(self, tiles: Intervals) -> None:
        self.tiles = tiles
        self.n_rows = tiles.n_windows
        self.chr_ids = {c: i for i, c in enumerate(tiles.chromosomes())}
        self.path = "intervals"

    def read(self, start: int, stop: int) -> pl.DataFrame:
        w = self.tiles.windows(start, stop)
        iv = w["interval"]
        chrom = [self.tiles.chrom[i] for i in iv]
        return pl.DataFrame({
            "chr": pl.Series(chrom, dtype=pl.String),
            "peak_region_start": pl.Series(w["begin"]).cast(pl.Int32),
            "peak_name": pl.Series([self.tiles.name[i] for i in iv], dtype=pl.String),
            "peak_id": pl.Series(np.arange(start, stop, dtype=np.uint32)),
            "chr_id": pl.Series([self.chr_ids[c] for c in chrom], dtype=pl.UInt32),
        }).cast(PEAKS_DTYPES)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


def convert_intervals(
    fasta: PathLike,
    bigwigs: PathLike | Sequence[PathLike],
    out: PathLike,
    *,
    intervals: PathLike | None = None,
    chrom_sizes: PathLike | None = None,
    whole_genome: bool = False,
    region_width: int = 1000,
    overlap: int = DEFAULT_OVERLAP,
    chunk_size: int | None = None,
    contrib_dtype: str = "float16",
    overwrite: bool = False,
    progress: bool | None = None,
) -> Regions:
    """Tile intervals into overlapping windows of projected contributions (a tiled store).

    Parameters
    ----------
    fasta : path
        Genome FASTA (``-f``); a missing ``.fai`` index is created beside it.
    bigwigs : path or list of paths
        bigWigs of projected contributions (``-b``), averaged as finemo does.
    out : path or URL
        The store to create; contributions are compact (N, L).
    intervals : path, optional
        BED (``-i``; chr, start, end, optional name; plain or compressed) of intervals of any
        width. Exactly one of ``intervals``, ``chrom_sizes``, ``whole_genome``.
    chrom_sizes : path, optional
        ``chrom<TAB>size`` file (``-g``): each listed chromosome is one interval.
    whole_genome : bool
        Every chromosome of the FASTA is one interval (``--whole-genome``).
    region_width : int
        Window width L (even, default 1000).
    overlap : int
        Bases shared by consecutive windows (default :data:`DEFAULT_OVERLAP`); must be at least
        the untrimmed motif width W used at call time (call-hits refuses less), and < L.
    chunk_size, contrib_dtype, overwrite, progress
        As :func:`nemo_dask.regions.convert.convert_bigwig`.

    Raises
    ------
    InputError
        Bad options, an unreadable or malformed BED / sizes file, an interval past its
        chromosome's end, chromosomes absent from the FASTA or a bigWig.
    """
    bw_paths = [Path(p) for p in ([bigwigs] if isinstance(bigwigs, (str, os.PathLike))
                                  else bigwigs)]
    _check_options(bw_paths, intervals, chrom_sizes, whole_genome, region_width, overlap)
    fasta = Path(fasta)
    role, (chroms, starts, ends, names) = _read_intervals(fasta, intervals, chrom_sizes)
    tiles = plan_intervals(chroms, starts, ends, names, region_width, int(overlap))
    genome, bws = _open_inputs(fasta, bw_paths, tiles, role)
    if tiles.n_merged:
        warnings.warn(f"{role}: {tiles.n_merged} interval(s) overlapped or touched another on "
                      "the same chromosome and were merged with it (no base is called twice)",
                      stacklevel=2)
    read, notes = window_reader(genome, bws, region_width, contrib_dtype, "window")

    def extra(start: int, stop: int) -> dict[str, np.ndarray]:
        w = tiles.windows(start, stop)
        return {"interval_id": w["interval"].astype(np.uint32),
                "window_index": w["window_index"].astype(np.uint32),
                "own_start": w["own_start"], "own_end": w["own_end"]}

    def close() -> None:
        genome.close()
        for bw in bws:
            bw.close()

    attrs = _store_attrs(tiles, genome, fasta, bw_paths, intervals, chrom_sizes, whole_genome,
                         region_width, int(overlap), contrib_dtype, chunk_size)
    source = Source(
        n_regions=tiles.n_windows, width=region_width, contrib_kind="projected", read=read,
        seq_label=f"{fasta} (sequences)", contrib_labels=[f"bigWig(s) {[str(p) for p in bw_paths]}"],
        attrs=attrs, combine=lambda arrays, dtype: arrays[0].astype(dtype, copy=False),
        close=close, notes=notes, extra_dtypes=dict(TILING_ARRAYS), extra=extra,
    )
    return run_conversion(source, out, peaks=_WindowPeaks(tiles), chunk_size=chunk_size,
                          contrib_dtype=contrib_dtype, overwrite=overwrite,
                          progress=progress, desc="convert intervals")


def _check_options(bw_paths: list[Path], intervals: PathLike | None,
                   chrom_sizes: PathLike | None, whole_genome: bool, region_width: int,
                   overlap: int) -> None:
    if not bw_paths:
        raise InputError("intervals: give at least one bigWig file with -b")
    crop_bounds(region_width, region_width, "intervals")  # only validates -w
    if sum((intervals is not None, chrom_sizes is not None, bool(whole_genome))) != 1:
        raise InputError("intervals: give exactly one of -i BED, -g CHROM_SIZES or "
                         "--whole-genome")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) \
            or not 0 <= overlap < region_width:
        raise InputError(f"--overlap must be an integer in [0, {region_width}) (below the "
                         f"window width -w), got {overlap!r}")


def _read_intervals(fasta: Path, intervals: PathLike | None, chrom_sizes: PathLike | None
                    ) -> tuple[str, tuple[list[str], list[int], list[int], list[str]]]:
    """Where the intervals come from (for messages) and their chrom, start, end and name: the
    BED's rows, or each chromosome of the sizes file or of the FASTA whole."""
    if intervals is not None:
        return f"the intervals BED {intervals}", _read_bed(Path(intervals))
    if chrom_sizes is not None:
        role = f"the chrom sizes file {chrom_sizes}"
        sizes = _read_chrom_sizes(Path(chrom_sizes))
    else:
        role = "the FASTA"
        genome = _open_fasta(fasta, [])
        sizes = [(c, len(genome[c])) for c in genome.keys()]
        genome.close()
    chroms = [c for c, _ in sizes]
    return role, (chroms, [0] * len(sizes), [n for _, n in sizes], list(chroms))


def _open_inputs(fasta: Path, bw_paths: list[Path], tiles: Intervals, role: str
                 ) -> tuple[Any, list[Any]]:
    """The FASTA and bigWigs, open, every tile checked to lie within its chromosome."""
    genome = _open_fasta(fasta, tiles.chromosomes(), role)
    try:
        for c, e in zip(tiles.chrom, tiles.end.tolist(), strict=True):
            if e > len(genome[c]):
                raise InputError(f"{role}: interval on {c} ends at {e}, past the chromosome's "
                                 f"end ({len(genome[c])} in {fasta}); use the same genome")
        return genome, _open_bigwigs(bw_paths, tiles.chromosomes(), role)
    except BaseException:
        genome.close()
        raise


def _store_attrs(tiles: Intervals, genome: Any, fasta: Path, bw_paths: list[Path],
                 intervals: PathLike | None, chrom_sizes: PathLike | None, whole_genome: bool,
                 width: int, overlap: int, contrib_dtype: str, chunk_size: int | None
                 ) -> dict[str, Any]:
    """The tiled store's attributes: its sources, the genome's sizes and the tiling."""
    tiling = {"width": width, "overlap": overlap, "step": tiles.step,
              "n_intervals": len(tiles.chrom), "merged_intervals": tiles.n_merged,
              "anchor": "start_untrimmed + W // 2",
              "bases": int((tiles.end - tiles.start).sum())}
    return {"source": {"format": "intervals",
                       "intervals": recorded_path(intervals),
                       "chrom_sizes": recorded_path(chrom_sizes),
                       "whole_genome": bool(whole_genome),
                       "fasta": recorded_path(fasta),
                       "bigwigs": [recorded_path(p) for p in bw_paths]},
            # The genome's sizes, for browser tracks of the hits (nemo-dask tracks).
            "chrom_sizes": {str(k): len(genome[k]) for k in genome.keys()},
            "parameters": {"region_width": width, "overlap": overlap,
                           "contrib_dtype": contrib_dtype, "chunk_size": chunk_size},
            TILING_KEY: tiling}


__all__ = ("DEFAULT_OVERLAP", "TILING_ARRAYS", "TILING_KEY", "convert_intervals",
           "n_windows_for", "plan_intervals")
