"""TF-MoDISco seqlets, placed in genomic coordinates the way finemo's report places them."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers filters some tfmodisco H5 files are written with)
import numpy as np
import polars as pl

from ..errors import InputError
from ..motifs import PATTERN_GROUPS, pattern_sort_key

#: Columns of seqlets.tsv, in finemo's order (chr_id and is_revcomp are kept in memory only).
SEQLET_COLUMNS = (
    "chr",
    "start",
    "end",
    "start_untrimmed",
    "end_untrimmed",
    "strand",
    "motif_name",
    "peak_id",
    "peak_region_start",
)

_RAW_SCHEMA = {
    "seqlet_start": pl.Int32,
    "seqlet_end": pl.Int32,
    "is_revcomp": pl.Boolean,
    "peak_id": pl.UInt32,
    "motif_name_orig": pl.String,
}


def _read_raw_seqlets(path: Path) -> pl.DataFrame:
    """Every seqlet of every pattern: start/end within modisco's window, strand, example index."""
    parts: list[pl.DataFrame] = []
    try:
        with h5py.File(path, "r") as h5:
            for group in PATTERN_GROUPS:
                if group not in h5:
                    continue
                for name in sorted(h5[group].keys(), key=pattern_sort_key):
                    pattern = h5[group][name]
                    if "seqlets" not in pattern:
                        raise InputError(
                            f"{path}: {group}/{name} has no 'seqlets' group; expected a "
                            "tfmodisco-lite H5 (`modisco motifs`), or leave out -m"
                        )
                    s = pattern["seqlets"]
                    parts.append(
                        pl.DataFrame(
                            {
                                "seqlet_start": s["start"][:].astype(np.int32),
                                "seqlet_end": s["end"][:].astype(np.int32),
                                "is_revcomp": s["is_revcomp"][:].astype(bool),
                                "peak_id": s["example_idx"][:].astype(np.uint32),
                                "motif_name_orig": np.full(len(s["start"]), f"{group}.{name}"),
                            },
                            schema=_RAW_SCHEMA,
                        )
                    )
    except OSError as err:
        raise InputError(f"{path}: cannot read the TF-MoDISco H5 ({err})") from err
    if not parts:
        return pl.DataFrame(schema=_RAW_SCHEMA)
    return pl.concat(parts)


def load_seqlets(
    modisco_h5: str | os.PathLike[str],
    peaks: pl.DataFrame,
    motifs: pl.DataFrame,
    region_width: int,
    modisco_region_width: int = 400,
) -> pl.DataFrame:
    """TF-MoDISco seqlets in genomic coordinates, one row per distinct instance.

    tfmodisco ran on a central window of ``modisco_region_width`` bp of each region, so a
    seqlet's genomic start is ``peak_region_start + seqlet_start + (L//2 - W_modisco//2)``.
    Seqlets of patterns absent from ``motifs`` or of example indices absent from ``peaks`` are
    dropped, and duplicates of (chr_id, start_untrimmed, motif_name, strand) are kept once, as
    finemo does.

    Parameters
    ----------
    modisco_h5 : path
        tfmodisco-lite output.
    peaks : polars.DataFrame
        Peak table of the regions (schema.PEAKS_DTYPES).
    motifs : polars.DataFrame
        Motif table of the run (``OUT/motifs.parquet``).
    region_width : int
        L, the width of the regions hits were called on.
    modisco_region_width : int
        Width of the windows tfmodisco was run on (``modisco motifs -w``).

    Returns
    -------
    polars.DataFrame
        :data:`SEQLET_COLUMNS` plus ``chr_id`` and ``is_revcomp``, sorted by motif, then
        chr_id, then start.
    """
    path = Path(modisco_h5)
    if not path.is_file():
        raise InputError(f"{path}: TF-MoDISco H5 not found (-m)")
    raw = _read_raw_seqlets(path).with_columns(
        strand=pl.when(pl.col("is_revcomp")).then(pl.lit("-")).otherwise(pl.lit("+"))
    )
    offset = region_width // 2 - modisco_region_width // 2
    motif_order = {
        name: i for i, name in enumerate(motifs.filter(pl.col("strand") == "+")["motif_name"])
    }
    base = pl.col("peak_region_start") + pl.col("seqlet_start") + offset
    seqlets = (
        raw.join(
            motifs.select("motif_name_orig", "strand", "motif_name", "motif_start", "motif_end"),
            on=["motif_name_orig", "strand"],
            how="inner",
        )
        .join(
            peaks.select("peak_id", "chr", "chr_id", "peak_region_start"), on="peak_id", how="inner"
        )
        .select(
            chr=pl.col("chr"),
            start=(base + pl.col("motif_start").cast(pl.Int32)).cast(pl.Int32),
            end=(base + pl.col("motif_end").cast(pl.Int32)).cast(pl.Int32),
            start_untrimmed=base.cast(pl.Int32),
            end_untrimmed=(pl.col("peak_region_start") + pl.col("seqlet_end") + offset).cast(
                pl.Int32
            ),
            strand=pl.col("strand"),
            motif_name=pl.col("motif_name"),
            peak_id=pl.col("peak_id"),
            peak_region_start=pl.col("peak_region_start"),
            chr_id=pl.col("chr_id"),
            is_revcomp=pl.col("is_revcomp"),
        )
        # Overlapping regions see the same seqlet twice; keep the lowest peak_id for determinism.
        .sort("peak_id", maintain_order=True)
        .unique(
            subset=["chr_id", "start_untrimmed", "motif_name", "is_revcomp"],
            keep="first",
            maintain_order=True,
        )
        .with_columns(
            _order=pl.col("motif_name").replace_strict(motif_order, return_dtype=pl.UInt32)
        )
        .sort(["_order", "chr_id", "start_untrimmed", "is_revcomp"])
        .drop("_order")
    )
    return seqlets


#: Seqlets sampled to check that the H5 lines up with the regions.
SEQLET_SAMPLE = 96
#: Fraction of sampled seqlets that must match the regions' sequence.
MIN_LINED_UP = 0.9


def recorded_window(modisco_h5: str | os.PathLike[str]) -> int | None:
    """The window tfmodisco-lite ran on, from the H5's ``window_size`` attribute (None if absent)."""
    if not Path(modisco_h5).is_file():
        raise InputError(f"{modisco_h5}: TF-MoDISco H5 not found (-m)")
    try:
        with h5py.File(modisco_h5, "r") as h5:
            value = h5.attrs.get("window_size")
    except OSError as err:
        raise InputError(f"{modisco_h5}: cannot read the TF-MoDISco H5 ({err})") from err
    if value is None:
        return None
    try:
        window = int(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return window if window > 0 else None


def resolve_window(modisco_h5: str | os.PathLike[str], requested: int | None) -> int:
    """The modisco window to use: the H5's recorded ``window_size`` when it has one (a different
    ``requested`` -W is overridden with a warning), else ``requested``, else
    ``nemo_dask.report.modisco-region-width`` in dask config (400, modisco's default)."""
    import warnings

    from .. import config

    recorded = recorded_window(modisco_h5)
    if recorded is None:
        return requested or int(config.get("report.modisco-region-width"))
    if requested is not None and requested != recorded:
        warnings.warn(f"{modisco_h5} records window_size {recorded} (`modisco motifs -w "
                      f"{recorded}`); using it instead of -W {requested}", stacklevel=3)
    return recorded


def check_seqlets_line_up(modisco_h5: str | os.PathLike[str], regions: object,
                          modisco_region_width: int, sample: int = SEQLET_SAMPLE) -> float:
    """Check that the H5's seqlets lie on the regions' sequences; returns the matching fraction.

    tfmodisco-lite stores each seqlet's one-hot sequence (reverse-complemented for ``-``
    seqlets) with its example index and its start in the central window. A sample of seqlets
    is compared with the regions' sequence at the place the report maps them to
    (``L//2 - W//2 + start`` in region ``example_idx``). When modisco ran on another window, on
    other regions or on the same regions in another order, few of them match, and every recall
    would silently be 0.

    Raises
    ------
    InputError
        When fewer than :data:`MIN_LINED_UP` of the sampled seqlets match.
    """
    from .cwms import _rows_of

    path = Path(modisco_h5)
    records: list[tuple[int, int, int, bool, np.ndarray]] = []
    with h5py.File(path, "r") as h5:
        for group in PATTERN_GROUPS:
            if group not in h5:
                continue
            for name in sorted(h5[group].keys(), key=pattern_sort_key):
                s = h5[group][name].get("seqlets")
                if s is None or "sequence" not in s:
                    continue
                n = len(s["start"])
                for i in np.linspace(0, n - 1, min(n, max(1, sample // 8)), dtype=int):
                    records.append((int(s["example_idx"][i]), int(s["start"][i]),
                                    int(s["end"][i]), bool(s["is_revcomp"][i]),
                                    np.asarray(s["sequence"][i])))
    if not records:
        return 1.0
    if len(records) > sample:
        keep = np.linspace(0, len(records) - 1, sample, dtype=int)
        records = [records[i] for i in keep]
    width = int(regions.width)  # type: ignore[attr-defined]
    offset = width // 2 - modisco_region_width // 2
    rows = _rows_of(regions.peaks,  # type: ignore[attr-defined]
                    np.array([r[0] for r in records], dtype=np.int64))
    matched = 0
    for (_, start, end, revcomp, stored), row in zip(records, rows, strict=True):
        a, b = offset + start, offset + end
        # A seqlet of a region these regions do not have (modisco ran on more or other
        # regions) cannot lie on them.
        if row < 0 or row >= regions.n_regions or a < 0 or b > width:  # type: ignore[attr-defined]
            continue
        seq = regions.read_block(int(row), int(row) + 1).sequences[0][:, a:b]  # type: ignore
        if revcomp:
            seq = seq[::-1, ::-1]
        matched += bool(np.array_equal(seq.T, stored.astype(seq.dtype)))
    fraction = matched / len(records)
    if fraction < MIN_LINED_UP:
        raise InputError(
            f"{path}: only {matched} of {len(records)} sampled seqlets lie on the regions' "
            f"sequence where the report places them (window -W {modisco_region_width}, region "
            f"width {width}); the H5 was made on other regions, on these regions in another "
            "order or subset, or with another window: pass the regions (-r) and window (-W) "
            "modisco ran on, or leave out -m")
    return fraction
