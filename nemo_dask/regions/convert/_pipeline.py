"""The conversion loop shared by every input format: read a chunk, check it, write it.

A format module describes its input as a :class:`Source` (sizes and a function reading the
sequences and per-file contributions of regions ``start:stop``, already centre-cropped);
:func:`run_conversion` validates one-hot sequences, turns NaN/inf contributions into 0 (counting
them), averages several files exactly as finemo does, and streams the chunks into the store.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from ...errors import InputError
from ...storage.faults import fault_error, format_size, is_fault, tree_size
from ..store import Regions
from ._writer import (
    StoreWriter,
    check_contrib_dtype,
    check_target,
    progress_bar,
    resolve_chunk_size,
)


class PeakReader(Protocol):
    """Peak-table rows in consecutive batches (narrowPeak or a regions.npz's arrays)."""

    n_rows: int

    def read(self, start: int, stop: int) -> pl.DataFrame: ...

    def close(self) -> None: ...


def finemo_mean(arrays: Sequence[np.ndarray], dtype: str) -> np.ndarray:
    """Average of several files' contributions as finemo computes it.

    ``np.mean(list, axis=0, dtype=float16)`` accumulates in float16 (so two float32 files give
    values up to 1 ulp off float16 of the exact mean); one file gives exactly ``float16(x)``.
    """
    return np.mean(arrays, axis=0, dtype=np.dtype(dtype))


@dataclass
class Source:
    """An input, described for :func:`run_conversion`.

    Attributes
    ----------
    n_regions, width : int
        N and the region width L written to the store.
    contrib_kind : str
        ``"hypothetical"`` or ``"projected"``.
    read : callable
        ``read(start, stop, peaks)`` -> ``(sequences, [contributions per file])``: sequences
        shape (n, 4, L) in any 0/1 dtype, contributions (n, 4, L) or (n, L) in the files' dtypes.
        ``peaks`` is that chunk's peak table (or None).
    seq_label : str
        How errors name the sequences (file and field).
    contrib_labels : list of str
        How warnings name each contributions input.
    attrs : dict
        ``source`` and ``parameters`` entries for the store's attributes.
    combine : callable
        ``combine(cleaned_arrays, dtype)`` -> the stored contributions of the chunk.
    close : callable
        Releases the input files.
    """

    n_regions: int
    width: int
    contrib_kind: str
    read: Callable[[int, int, pl.DataFrame | None], tuple[np.ndarray, list[np.ndarray]]]
    seq_label: str
    contrib_labels: list[str]
    attrs: dict[str, Any]
    combine: Callable[[Sequence[np.ndarray], str], np.ndarray] = finemo_mean
    close: Callable[[], None] = lambda: None
    notes: dict[str, int] = field(default_factory=dict)
    #: Where ``read``'s window starts in the input (its centre crop), for error messages.
    crop_start: int = 0
    #: What finemo does with NaN/inf in this input, appended to the zeroing warning.
    nan_note: str = ("finemo's extract-regions-* also zeroes NaN, but writes infinities as the "
                     "largest float")
    #: Extra per-region arrays, stored under the group ``tiling/``: name -> dtype, and
    #: ``extra(start, stop)`` -> {name: (stop - start,) array} (interval stores use them).
    extra_dtypes: dict[str, str] = field(default_factory=dict)
    extra: Callable[[int, int], dict[str, np.ndarray]] | None = None


def crop_bounds(input_width: int, region_width: int, label: str) -> tuple[int, int]:
    """finemo's centre crop ``[W//2 - w//2, W//2 - w//2 + w)``, refusing odd or too-wide ``w``."""
    if isinstance(region_width, bool) or not isinstance(region_width, (int, np.integer)) \
            or region_width < 2:
        raise InputError(f"region width (-w) must be an even integer >= 2, got {region_width!r}")
    if region_width % 2:
        raise InputError(f"region width (-w) {region_width} is odd; finemo needs an even width "
                         f"(its extractors silently use {region_width - 1}); pass -w "
                         f"{region_width - 1} or {region_width + 1}")
    if region_width > input_width:
        raise InputError(f"{label}: regions are {input_width} bp wide, narrower than the region "
                         f"width -w {region_width}; pass -w {input_width - input_width % 2} or "
                         "less")
    start = input_width // 2 - region_width // 2
    return start, start + region_width


def check_one_hot(seqs: np.ndarray, label: str, offset: int, crop_start: int = 0) -> np.ndarray:
    """int8 copy of ``seqs`` (n, 4, L) after checking every column is one-hot or all zero."""
    if seqs.dtype.kind not in "biuf":
        raise InputError(f"{label}: sequences have dtype {seqs.dtype}, expected one-hot 0/1 "
                         "integers")
    bad_value = (seqs != 0) & (seqs != 1)
    column_sum = seqs.sum(axis=1, dtype=np.float64 if seqs.dtype.kind == "f" else np.int64)
    bad = bad_value.any(axis=1) | (column_sum > 1)
    if bad.any():
        region, pos = (int(i) for i in np.argwhere(bad)[0])
        where = (f"position {pos} of the {seqs.shape[2]} bp window (position {crop_start + pos} "
                 "in the file)" if crop_start else f"position {pos}")
        raise InputError(
            f"{label}: region {offset + region}, {where} is not one-hot "
            f"(column {seqs[region, :, pos].tolist()}, n = {int(bad.sum())} such columns in "
            f"regions {offset}-{offset + len(seqs) - 1}); sequences must be one-hot over A, C, "
            "G, T (an all-zero column for N); check the file and the (N, 4, L) axis order")
    return seqs.astype(np.int8)


def clean_contributions(a: np.ndarray, label: str) -> tuple[np.ndarray, int, int]:
    """Set NaN and +-inf to 0; returns the counts.

    finemo's extractors call ``np.nan_to_num`` (NaN -> 0, inf -> the largest float); its
    call-hits divides each region by its contributions' norm, which one NaN or inf makes NaN,
    and then zeroes the NaN quotient: the whole region is solved as zeros and gets no hits.
    Zeroing only the bad values keeps the rest of the region.
    """
    if a.dtype.kind not in "biuf":
        raise InputError(f"{label}: contributions have dtype {a.dtype}, expected floats")
    if a.dtype.kind != "f":
        return a, 0, 0
    nan = np.isnan(a)
    n_nan = int(nan.sum())
    inf = np.isinf(a)
    n_inf = int(inf.sum())
    if n_nan or n_inf:
        a = np.where(nan | inf, a.dtype.type(0), a)
    return a, n_nan, n_inf


def run_conversion(source: Source, out: Any, *, peaks: PeakReader | None,
                   chunk_size: int | None, contrib_dtype: str, overwrite: bool,
                   progress: bool | None, desc: str) -> Regions:
    """Stream ``source`` into a new store at ``out``; see the module docstring."""
    try:
        contrib_dtype = check_contrib_dtype(contrib_dtype)
        check_target(out, overwrite)
        n = source.n_regions
        if n == 0:
            raise InputError(f"{source.seq_label}: holds no regions")
        if peaks is not None and peaks.n_rows != n:
            raise InputError(f"{getattr(peaks, 'path', 'peaks')}: {peaks.n_rows} peak rows but "
                             f"{source.seq_label} holds {n} regions; the peaks file (-p) must "
                             "list the same regions in the same order, one row each")
        chunk = resolve_chunk_size(chunk_size, n, source.width, source.contrib_kind,
                                   contrib_dtype)
        # A full or unwritable file system: one line naming it, what was written and the fix
        # (storage/faults.py); the partial store is removed, the target left as it was.
        try:
            writer = StoreWriter(out, n_regions=n, width=source.width,
                                 contrib_kind=source.contrib_kind, chunk_size=chunk,
                                 contrib_dtype=contrib_dtype, has_peaks=peaks is not None,
                                 attrs=source.attrs, extra_arrays=source.extra_dtypes)
        except OSError as err:
            if not is_fault(err):
                raise
            raise fault_error(err, out, f"nothing was written; {out} is as it was") from None
        try:
            digest = hashlib.sha256()
            counts = _stream(source, peaks, writer, chunk, contrib_dtype, progress, desc,
                             digest)
            regions = writer.finish({"zeroed_contributions": counts, "notes": source.notes,
                                     "content_sha256": digest.hexdigest()})
        except BaseException as err:
            fault = None
            if is_fault(err):  # measured before the partial store goes
                size = tree_size(writer.target) if writer.local is not None else 0
                fault = fault_error(err, out, f"{writer.n_written} of {n} regions "  # type: ignore[arg-type]
                                    f"({format_size(size)}) were written before it; the "
                                    f"partial store was removed and {out} is as it was")
            writer.abort()
            if fault is not None:
                raise fault from None
            raise
    finally:
        source.close()
        if peaks is not None:
            peaks.close()
    _warn_counts(counts, source.nan_note)
    return regions


def _stream(source: Source, peaks: PeakReader | None, writer: StoreWriter, chunk: int,
            contrib_dtype: str, progress: bool | None, desc: str,
            digest: Any) -> dict[str, dict[str, int]]:
    """Write every chunk; ``digest`` is updated with exactly what is stored (the store's
    ``content_sha256``: a resumed call-hits run recognises the same regions by it, whatever
    the path, copy or modification time)."""
    n = source.n_regions
    counts = {label: {"nan": 0, "inf": 0} for label in source.contrib_labels}
    counts["float16 overflow"] = {"nan": 0, "inf": 0}
    with progress_bar(n, progress, desc) as bar:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            table = peaks.read(start, stop) if peaks is not None else None
            seqs, contribs = source.read(start, stop, table)
            seqs = check_one_hot(seqs, source.seq_label, start, source.crop_start)
            cleaned = []
            for label, a in zip(source.contrib_labels, contribs, strict=True):
                a, n_nan, n_inf = clean_contributions(a, label)
                counts[label]["nan"] += n_nan
                counts[label]["inf"] += n_inf
                cleaned.append(a)
            with np.errstate(over="ignore", invalid="ignore"):
                combined = np.ascontiguousarray(source.combine(cleaned, contrib_dtype))
            # Finite inputs beyond float16's range (|x| > 65504) become inf: zero them too.
            combined, _, n_over = clean_contributions(combined, "")
            counts["float16 overflow"]["inf"] += n_over
            writer.write(start, seqs, combined, table)
            if source.extra is not None:
                extra = source.extra(start, stop)
                writer.write_extra(start, extra)
                for name in sorted(extra):
                    digest.update(np.ascontiguousarray(extra[name]).tobytes())
            digest.update(seqs.tobytes())
            digest.update(combined.tobytes())
            if table is not None:
                digest.update(table.write_csv().encode())
            bar.update(stop - start)
    return {k: v for k, v in counts.items() if v["nan"] or v["inf"]}


def _warn_counts(counts: dict[str, dict[str, int]], nan_note: str) -> None:
    for label, c in counts.items():
        if label == "float16 overflow":
            warnings.warn(f"{c['inf']} averaged contribution values exceeded the float16 range "
                          "and were set to 0 (finemo would store inf); convert with "
                          "--contrib-dtype float32 to keep them", stacklevel=3)
        else:
            warnings.warn(f"{label}: {c['nan']} NaN and {c['inf']} infinite contribution values "
                          f"were set to 0 ({nan_note})", stacklevel=3)
