"""The one reader of hits in finemo's layout, whatever holds them.

A nemo_dask output directory (its Parquet dataset, sorted as finemo sorts), a finemo call-hits
output directory or one of finemo's TSVs: :func:`load_hits` takes any of them;
:func:`finemo_hits` and :func:`finemo_qc` are the dataset's rows as finemo's files hold them, and
:func:`read_tsv` reads any finemo table after checking its header. The raw dataset scans
(:func:`nemo_dask.dataset.scan_hits`) are what these build on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, overload

import polars as pl

from ..dataset import HITS_DIR, read_motifs, scan_hits, scan_qc
from ..errors import InputError
from ..storage.urls import is_url, location, open_input
from .formats import (
    FINEMO_HITS_DTYPES,
    FINEMO_QC_COLUMNS,
    HITS_FILE,
    HITS_UNIQUE_FILE,
    NA,
    UNIQUE_KEY,
)

# Sort keys after finemo's (chr_id, start): finemo leaves ties in arbitrary order, we fix one.
# (_mk: a dense id of (motif_name, strand), so that hits_unique's duplicates sort side by side.)
SORT_KEYS = ("chr_id", "start", "_mk", "peak_id", "motif_id")

#: A calibrated run's per-hit q-value (nemo_dask.calibration), after finemo's columns.
QVALUE = "hit_qvalue"


def is_calibrated(out: str | os.PathLike[str]) -> bool:
    """Whether ``out`` is a run made with q-values (``call-hits --calibrate``)."""
    from ..calibration.assign import calibration_state

    return calibration_state(out) is not None
QC_SORT_KEYS = ("chr_id", "peak_region_start", "peak_id")


def load_hits(source: str | os.PathLike[str], *, unique: bool = False,
              max_qvalue: float | None = None) -> pl.LazyFrame:
    """Hits in finemo's ``hits.tsv`` layout (plus finemo's ``count`` column of 1s), lazily.

    ``source`` is a finemo hits TSV, a finemo output directory, or a nemo_dask output directory
    (hits sorted as finemo sorts them). For directories, ``unique`` picks hits_unique.tsv. A
    calibrated run's hits (and an export of one) carry ``hit_qvalue`` after finemo's columns;
    ``max_qvalue`` keeps the hits whose q-value is at most that (:func:`filter_qvalue`).
    """
    path = location(source)  # a local Path, or a UPath for an fsspec URL
    if path.is_dir():
        if (path / HITS_DIR).is_dir():
            lf = finemo_hits(path, unique=unique)
            return filter_qvalue(lf, max_qvalue, source).with_columns(
                count=pl.lit(1, pl.Int32))
        path = path / (HITS_UNIQUE_FILE if unique else HITS_FILE)
        if not path.is_file():
            raise InputError(f"{source} is neither a nemo_dask output directory (no {HITS_DIR}/) "
                             f"nor a finemo one (no {path.name}); pass one of them or a hits TSV")
    elif not path.is_file():
        raise InputError(f"hits file {source} does not exist")
    lf = read_tsv(path, FINEMO_HITS_DTYPES, kind=HITS_FILE, lazy=True)
    return filter_qvalue(lf, max_qvalue, path).with_columns(count=pl.lit(1, pl.Int32))


def filter_qvalue(lf: pl.LazyFrame, max_qvalue: float | None, source: object) -> pl.LazyFrame:
    """The hits of ``lf`` whose ``hit_qvalue`` is at most ``max_qvalue`` (all when None).

    Raises
    ------
    InputError
        ``max_qvalue`` is not in (0, 1], or the hits have no q-values: no ``hit_qvalue``
        column (a run without ``--calibrate``, or finemo's own files), or a hit without one
        (a calibrated run that has not finished: rerun its call-hits to complete it).
    """
    if max_qvalue is None:
        return lf
    if not (isinstance(max_qvalue, (int, float)) and 0 < max_qvalue <= 1):
        raise InputError(f"--max-qvalue must lie in (0, 1], got {max_qvalue!r}")
    if QVALUE not in lf.collect_schema().names():
        raise InputError(f"{source}: these hits have no {QVALUE} column; --max-qvalue needs a "
                         "run made with `nemo-dask call-hits --calibrate` (or its export)")
    if lf.select(pl.col(QVALUE).null_count()).collect().item():
        raise InputError(f"{source}: some hits have no {QVALUE} (the calibrated run has not "
                         "finished); rerun the same call-hits command to complete it")
    return lf.filter(pl.col(QVALUE) <= max_qvalue)


def finemo_hits(out: str | os.PathLike[str], *, unique: bool = False,
                keep_keys: bool = False) -> pl.LazyFrame:
    """The run's hits as finemo's ``hits.tsv`` (or ``hits_unique.tsv``) rows, lazily, sorted.

    This sorts everything in one polars query; :func:`nemo_dask.finemo.export.export` writes the same rows in bounded
    memory. ``keep_keys`` keeps ``chr_id`` and ``motif_id`` (the sort keys finemo drops).
    """
    extra = [QVALUE] if is_calibrated(out) else []
    lf = hits_with_keys(out).sort(SORT_KEYS)
    if unique:
        # finemo drops null chromosomes first; its "NA" placeholder is a string and is kept,
        # keyed by region (not one chromosome across regions, as finemo 0.41 keys it).
        lf = (lf.filter(pl.col("chr").is_not_null())
              .with_columns(_region=pl.when(pl.col("chr") == NA).then(pl.col("peak_id")))
              .unique(subset=[*UNIQUE_KEY, "_region"], keep="first", maintain_order=True)
              .drop("_region"))
    return lf.drop("_mk") if keep_keys else lf.select(*FINEMO_HITS_DTYPES, *extra)


def finemo_qc(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """The run's ``peaks_qc.tsv`` rows, lazily, sorted as finemo sorts them."""
    return (
        finemo_qc_columns(scan_qc(out))
        .sort(QC_SORT_KEYS)
        .select(FINEMO_QC_COLUMNS)
    )


@overload
def read_tsv(path: Path, dtypes: dict[str, pl.DataType], *, kind: str,
             lazy: Literal[False] = ...) -> pl.DataFrame: ...
@overload
def read_tsv(path: Path, dtypes: dict[str, pl.DataType], *, kind: str,
             lazy: Literal[True]) -> pl.LazyFrame: ...
def read_tsv(path: Path, dtypes: dict[str, pl.DataType], *, kind: str,
             lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
    """A finemo TSV whose header must be exactly ``dtypes``' columns, read with those types.

    ``kind`` names the file finemo writes with these columns (``hits.tsv``, ...), for messages.

    Raises
    ------
    InputError
        The header differs (a file of another kind, or edited), or a value does not parse.
    """
    with open_input(path, "r") as f:
        header = f.readline().rstrip("\n").split("\t")
    if kind == HITS_FILE and header == [*dtypes, QVALUE]:
        # An export of a calibrated run: finemo's columns, then the q-value.
        dtypes = {**dtypes, QVALUE: pl.Float32}
    if header != list(dtypes):
        raise InputError(f"{path}: expected finemo's {kind} columns {list(dtypes)}, found "
                         f"{header}; pass the {kind} finemo wrote, unmodified")
    if is_url(path):  # read whole through fsspec (polars' own cloud readers ignore fsspec)
        with open_input(path) as f:
            path = f.read()  # type: ignore[assignment]
        frame = pl.read_csv(path, separator="\t", quote_char=None, schema=dict(dtypes))
        return frame.lazy() if lazy else frame
    if lazy:
        return pl.scan_csv(path, separator="\t", quote_char=None, schema=dict(dtypes))
    try:
        return pl.read_csv(path, separator="\t", quote_char=None, schema=dict(dtypes))
    except pl.exceptions.PolarsError as err:
        raise InputError(f"{path}: not a readable finemo table ({err})") from err


def hits_with_keys(out: str | os.PathLike[str]) -> pl.LazyFrame:
    """The stored hits of ``out`` as :func:`finemo_hits_columns` (unsorted, lazily)."""
    return finemo_hits_columns(scan_hits(out), motif_keys(out))


def motif_keys(out: str | os.PathLike[str]) -> dict[int, int]:
    """motif_id -> a dense id of its (motif_name, strand), hits_unique's motif identity."""
    m = read_motifs(out).with_columns(
        _mk=pl.struct("motif_name", "strand").rank("dense").cast(pl.UInt32) - 1)
    return dict(zip(m["motif_id"].to_list(), m["_mk"].to_list(), strict=True))


def finemo_hits_columns(hits: pl.LazyFrame, motif_keys: dict[int, int]) -> pl.LazyFrame:
    """Stored hits -> finemo's hits.tsv columns plus the sort keys chr_id, _mk, motif_id."""
    return (
        hits.with_columns(na_fill(), hit_correlation=pl.col("hit_similarity"),
                          _mk=pl.col("motif_id").replace_strict(motif_keys,
                                                                return_dtype=pl.UInt32))
        .select(*FINEMO_HITS_DTYPES, QVALUE, "chr_id", "_mk", "motif_id")
    )


def finemo_qc_columns(qc: pl.LazyFrame) -> pl.LazyFrame:
    """Stored QC -> finemo's peaks_qc.tsv columns plus the sort key chr_id."""
    return qc.with_columns(na_fill()).select(*FINEMO_QC_COLUMNS, "chr_id")


def na_fill() -> list[pl.Expr]:
    """finemo's placeholders where a store without coordinates leaves nulls."""
    # finemo without coordinates: chr and peak_name are the string "NA", chr_id is the region
    # index (= peak_id) and peak_region_start 0; a store may leave them null.
    return [
        pl.col("chr").fill_null(NA),
        pl.col("peak_name").fill_null(NA),
        pl.col("chr_id").fill_null(pl.col("peak_id")),
    ]
