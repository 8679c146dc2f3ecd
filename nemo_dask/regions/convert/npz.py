"""finemo's own ``regions.npz`` (from ``finemo extract-regions-*``) -> regions store.

Every member is streamed from the zip (see ``_npy``): memory is bounded by a chunk, not by N.
The store holds the same arrays: sequences, contributions (hypothetical (N, 4, L) or projected
(N, L), in their stored float dtype unless ``contrib_dtype`` says otherwise) and the peak table
(``start`` becomes ``peak_region_start``); a file without ``chr`` has no coordinates, as finemo
treats it. A narrowPeak file (``peaks``, finemo's ``call-hits -p``) gives the regions their
coordinates, replacing any the file holds, exactly as finemo's call-hits does.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import polars as pl

from ...errors import InputError
from ...schema import PEAKS_DTYPES
from ...storage.urls import recorded_path
from ..store import Regions
from ._npy import NpyRows, file_kind, npz_keys
from ._peaks import NarrowPeaks
from ._pipeline import Source, run_conversion

PathLike = str | os.PathLike[str]

#: regions.npz member -> peak-table column.
PEAK_MEMBERS = {"chr": "chr", "start": "peak_region_start", "peak_name": "peak_name",
                "peak_id": "peak_id", "chr_id": "chr_id"}


class _NpzPeaks:
    """The peak arrays of a regions.npz, read in consecutive row batches."""

    def __init__(self, path: Path, rows: dict[str, NpyRows]) -> None:
        self.path = path
        self.rows = rows
        self.n_rows = rows["chr"].shape[0]

    def read(self, start: int, stop: int) -> pl.DataFrame:
        columns = {}
        for member, column in PEAK_MEMBERS.items():
            values = self.rows[member].read(start, stop)
            dtype = PEAKS_DTYPES[column]
            if dtype == pl.String:
                if values.dtype.kind == "S":
                    values = np.char.decode(values, "utf-8")
                columns[column] = pl.Series(column, values.astype(str), dtype=pl.String)
                continue
            if values.dtype.kind not in "iu":
                raise InputError(f"{self.path}: {member} has dtype {values.dtype}, expected "
                                 "integers (is this finemo's regions.npz?)")
            info = np.iinfo(_NP_INT[column])
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise InputError(f"{self.path}: {member} has values outside {info.dtype} "
                                 f"(rows {start}-{stop - 1}); finemo's regions.npz keeps "
                                 f"{member} within that range")
            columns[column] = pl.Series(column, values.astype(_NP_INT[column]))
        return pl.DataFrame(columns).select(list(PEAKS_DTYPES))

    def close(self) -> None:
        pass


_NP_INT = {"peak_region_start": np.int32, "peak_id": np.uint32, "chr_id": np.uint32}


def convert_npz(
    regions_npz: PathLike,
    out: PathLike,
    *,
    peaks: PathLike | None = None,
    chrom_order: PathLike | None = None,
    chunk_size: int | None = None,
    contrib_dtype: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Regions:
    """Convert finemo's ``regions.npz`` into a regions store with the same arrays.

    Parameters
    ----------
    regions_npz : path
        Output of ``finemo extract-regions-*``: ``sequences`` (N, 4, L) int8, ``contributions``
        (N, 4, L) or (N, L), and optionally ``chr``, ``chr_id``, ``start``, ``peak_id``,
        ``peak_name`` (N,).
    out : path or URL
        The store to create.
    peaks : path, optional
        narrowPeak file (plain or compressed), one row per region in the same order: the
        coordinates of regions around ``start + summit`` (finemo's ``call-hits -p``); it
        replaces the file's own ``chr``, ``start``, ... arrays.
    chrom_order : path, optional
        Chromosome order file (``-C``) for ``peaks``.
    chunk_size : int, optional
        Regions per chunk (default: ~4 MiB chunks).
    contrib_dtype : {"float16", "float32"}, optional
        Stored dtype; default the file's (float16 for finemo's files; float64 becomes float32).
    overwrite : bool
        Replace an existing store at ``out``.
    progress : bool, optional
        Progress bar; default on when stderr is a terminal.
    """
    path = Path(regions_npz)
    if not path.is_file():
        raise InputError(f"{path}: regions file (-r) not found")
    if file_kind(path) != "npz":
        raise InputError(f"{path}: not an .npz file; expected finemo's regions.npz from "
                         "`finemo extract-regions-*`")
    keys = npz_keys(path)
    for key in ("sequences", "contributions"):
        if key not in keys:
            raise InputError(f"{path}: array {key!r} missing (found {keys}); expected finemo's "
                             "regions.npz (make one with `finemo extract-regions-*` or convert "
                             "the original inputs with another `nemo-dask convert` format)")
    if chrom_order is not None and peaks is None:
        raise InputError(f"{chrom_order}: a chromosome order (-C) needs a peaks file (-p)")
    has_peaks = "chr" in keys and peaks is None
    if has_peaks:
        missing = [k for k in PEAK_MEMBERS if k not in keys]
        if missing:
            raise InputError(f"{path}: has 'chr' but lacks {missing}; finemo's regions.npz holds "
                             "chr, chr_id, start, peak_id and peak_name together; re-extract it")
    stack = ExitStack()
    try:
        seq = stack.enter_context(NpyRows(path, "sequences"))
        con = stack.enter_context(NpyRows(path, "contributions"))
        shape = seq.shape
        if len(shape) != 3 or shape[1] != 4:
            raise InputError(f"{path}: 'sequences' has shape {shape}, expected (N, 4, L)")
        n, width = shape[0], shape[2]
        if con.shape == (n, 4, width):
            kind = "hypothetical"
        elif con.shape == (n, width):
            kind = "projected"
        else:
            raise InputError(f"{path}: 'contributions' has shape {con.shape}; with sequences "
                             f"{shape} expected {(n, 4, width)} (hypothetical) or {(n, width)} "
                             "(projected)")
        if width % 2:
            raise InputError(f"{path}: region width {width} is odd; finemo needs an even width "
                             "(re-extract the regions with an even -w)")
        if has_peaks:
            rows = {k: stack.enter_context(NpyRows(path, k)) for k in PEAK_MEMBERS}
            for k, r in rows.items():
                if r.shape != (n,):
                    raise InputError(f"{path}: '{k}' has shape {r.shape}, expected ({n},) (one "
                                     "entry per region)")
            table: _NpzPeaks | NarrowPeaks | None = _NpzPeaks(path, rows)
        elif peaks is not None:
            table = NarrowPeaks(peaks, chrom_order, width // 2)
        else:
            table = None
        if contrib_dtype is None:
            contrib_dtype = "float16" if con.dtype == np.float16 else "float32"

        def read(start: int, stop: int, _: pl.DataFrame | None) -> tuple[np.ndarray,
                                                                         list[np.ndarray]]:
            return seq.read(start, stop), [con.read(start, stop)]

        source = Source(
            n_regions=n, width=width, contrib_kind=kind, read=read,
            seq_label=f"{path} ('sequences')", contrib_labels=[f"{path} ('contributions')"],
            attrs={"source": {"format": "npz", "regions": recorded_path(path),
                              "input_contrib_dtype": str(con.dtype),
                              "peaks": recorded_path(peaks),
                              "chrom_order": recorded_path(chrom_order)},
                   "parameters": {"contrib_dtype": contrib_dtype, "chunk_size": chunk_size}},
            combine=lambda arrays, dtype: arrays[0].astype(dtype, copy=False),
            close=stack.close,
            nan_note="finemo's call-hits does not: one NaN or infinite value makes it solve the "
                     "whole region as zeros, so the region gets no hits",
        )
    except BaseException:
        stack.close()
        raise
    return run_conversion(source, out, peaks=table, chunk_size=chunk_size,
                          contrib_dtype=contrib_dtype, overwrite=overwrite, progress=progress,
                          desc="convert npz")
