"""The one reader of hits in finemo's layout, whatever holds them.

A nemo_dask output directory (its Parquet dataset, sorted as finemo sorts), a finemo call-hits
output directory, an export directory, or one of their TSVs (plain or compressed): :func:`load_hits` takes any of
them; :func:`finemo_hits` and :func:`finemo_qc` are the dataset's rows as finemo's files hold
them, and :func:`read_tsv` reads any finemo table after checking its header. The raw dataset
scans (:func:`nemo_dask.dataset.scan_hits`) are what these build on.

Hits carry finemo's columns, then the run's extra columns in a fixed order
(:data:`~.formats.EXTRA_HITS_DTYPES`: ``motif_label`` for an annotated run, ``hit_qvalue`` for
one with q-values), as an export's ``hits_extra.tsv`` holds them; an export directory is read
from its extended files when it has them, so its q-values and labels are kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, overload

import polars as pl

from ..dataset import HITS_DIR, has_qvalues, read_motifs, scan_hits, scan_qc
from ..errors import InputError
from ..matching.labels import LABEL
from ..schema import QVALUE
from ..storage.compressed import READ_ERRORS, compression_of, open_decompressed, read_decompressed
from ..storage.urls import is_url, location
from .formats import (
    EXTRA_HITS_DTYPES,
    FINEMO_HITS_DTYPES,
    FINEMO_QC_COLUMNS,
    HITS_EXTRA_FILE,
    HITS_FILE,
    HITS_UNIQUE_EXTRA_FILE,
    HITS_UNIQUE_FILE,
    NA,
    UNIQUE_KEY,
)

# Sort keys after finemo's (chr_id, start): finemo leaves ties in arbitrary order, we fix one.
# (_mk: a dense id of (motif_name, strand), so that hits_unique's duplicates sort side by side.)
SORT_KEYS = ("chr_id", "start", "_mk", "peak_id", "motif_id")
QC_SORT_KEYS = ("chr_id", "peak_region_start", "peak_id")


def extra_columns(out: str | os.PathLike[str]) -> list[str]:
    """The extra hits columns a run has, in :data:`~.formats.EXTRA_HITS_DTYPES` order:
    ``motif_label`` if it is annotated, ``hit_qvalue`` if it is complete with q-values."""
    extras = []
    if LABEL in read_motifs(out).columns:
        extras.append(LABEL)
    if has_qvalues(out):
        extras.append(QVALUE)
    return extras


def load_hits(source: str | os.PathLike[str], *, unique: bool = False,
              max_qvalue: float | None = None) -> pl.LazyFrame:
    """Hits in finemo's ``hits.tsv`` layout, then any extra columns the source has (plus
    finemo's ``count`` column of 1s), lazily.

    ``source`` is a hits TSV (finemo's, or an export's ``hits_extra.tsv``; plain or
    compressed), a finemo or export directory (its ``hits_extra.tsv`` when there is one, else
    ``hits.tsv``; :mod:`.directory` finds them, plain or compressed), or a nemo_dask
    output directory (hits sorted as finemo sorts them). For directories, ``unique`` picks the
    unique hits. ``max_qvalue`` keeps the hits whose q-value is at most that
    (:func:`filter_qvalue`).
    """
    path = location(source)  # a local Path, or a UPath for an fsspec URL
    if path.is_dir():
        if (path / HITS_DIR).is_dir():
            lf = finemo_hits(path, unique=unique)
            return filter_qvalue(lf, max_qvalue, source).with_columns(
                count=pl.lit(1, pl.Int32))
        name = HITS_UNIQUE_FILE if unique else HITS_FILE
        found = hits_file(path, unique)
        if found is None:
            raise InputError(f"{source} is neither a nemo_dask output directory (no {HITS_DIR}/) "
                             f"nor a finemo one (no {name}, plain or compressed); pass one of "
                             "them or a hits TSV")
        path = found
    elif not path.is_file():
        raise InputError(f"hits file {source} does not exist")
    lf = read_tsv(path, FINEMO_HITS_DTYPES, kind=HITS_FILE, lazy=True)
    return filter_qvalue(lf, max_qvalue, path).with_columns(count=pl.lit(1, pl.Int32))


def hits_file(directory: Any, unique: bool = False) -> Any | None:
    """The hits file of a finemo or export directory, plain or compressed: the extended one
    (``hits_extra.tsv``) when it is there; None when neither is."""
    from .directory import finemo_file

    extended = finemo_file(directory, HITS_UNIQUE_EXTRA_FILE if unique else HITS_EXTRA_FILE)
    if extended is not None:
        return extended
    return finemo_file(directory, HITS_UNIQUE_FILE if unique else HITS_FILE)


def filter_qvalue(lf: pl.LazyFrame, max_qvalue: float | None, source: object) -> pl.LazyFrame:
    """The hits of ``lf`` whose ``hit_qvalue`` is at most ``max_qvalue`` (all when None).

    Raises
    ------
    InputError
        ``max_qvalue`` is not in (0, 1], or the hits have no q-values: no ``hit_qvalue``
        column (a run made with ``--null none``, or not finished; finemo's own files; an
        export's hits.tsv rather than its hits_extra.tsv), or a hit without one.
    """
    if max_qvalue is None:
        return lf
    check_max_qvalue(max_qvalue, QVALUE in lf.collect_schema().names(), source)
    if lf.select(pl.col(QVALUE).null_count()).collect().item():
        raise InputError(f"{source}: some hits have no {QVALUE}; pass the file an export "
                         "wrote, unmodified")
    return lf.filter(pl.col(QVALUE) <= max_qvalue)


def check_max_qvalue(max_qvalue: float, has_qvalues: bool, source: object) -> None:
    """Refuse, in one line, a ``--max-qvalue`` outside (0, 1] or hits without q-values."""
    if not (isinstance(max_qvalue, (int, float)) and 0 < max_qvalue <= 1):
        raise InputError(f"--max-qvalue must lie in (0, 1], got {max_qvalue!r}")
    if not has_qvalues:
        raise InputError(f"{source}: these hits have no {QVALUE}: --max-qvalue needs a run "
                         "with q-values (call-hits without --null none, finished: rerun the "
                         f"same call-hits to finish it) or an export's {HITS_EXTRA_FILE}")


def finemo_hits(out: str | os.PathLike[str], *, unique: bool = False,
                keep_keys: bool = False) -> pl.LazyFrame:
    """The run's hits as ``hits_extra.tsv`` (or ``hits_unique_extra.tsv``) rows: finemo's
    columns, then :func:`extra_columns`; lazily, sorted.

    This sorts everything in one polars query; :func:`nemo_dask.finemo.export.export` writes the same rows in bounded
    memory. ``keep_keys`` keeps ``chr_id`` and ``motif_id`` (the sort keys finemo drops).
    """
    extras = extra_columns(out)
    lf = hits_with_keys(out, extras).sort(SORT_KEYS)
    if unique:
        # finemo drops null chromosomes first; its "NA" placeholder is a string and is kept,
        # keyed by region (not one chromosome across regions, as finemo 0.41 keys it).
        lf = (lf.filter(pl.col("chr").is_not_null())
              .with_columns(_region=pl.when(pl.col("chr") == NA).then(pl.col("peak_id")))
              .unique(subset=[*UNIQUE_KEY, "_region"], keep="first", maintain_order=True)
              .drop("_region"))
    return lf.drop("_mk") if keep_keys else lf.select(*FINEMO_HITS_DTYPES, *extras)


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

    The file may be plain or compressed (gzip/bgzip, bzip2, xz: recognised by content,
    :mod:`nemo_dask.storage.compressed`), local or at a URL. ``kind`` names the file finemo
    writes with these columns (``hits.tsv``, ...), for messages. A hits file may also be an
    export's extended one: finemo's columns, then some of
    :data:`~.formats.EXTRA_HITS_DTYPES` in their order.

    Raises
    ------
    InputError
        The header differs (a file of another kind, or edited), the file cannot be read or
        decompressed, or a value does not parse.
    """
    try:
        with open_decompressed(path) as f:
            first = f.readline()
        packed = compression_of(path)
    except READ_ERRORS as err:
        raise InputError(f"{path}: cannot read this {kind} ({err}); is the compressed file "
                         "truncated?") from None
    header = first.decode("utf-8", errors="replace").rstrip("\r\n").split("\t")
    if kind == HITS_FILE and header[:len(dtypes)] == list(dtypes):
        # An export's extended file: finemo's columns, then extra ones in their fixed order.
        extra = header[len(dtypes):]
        if extra == [c for c in EXTRA_HITS_DTYPES if c in extra]:
            dtypes = {**dtypes, **{c: EXTRA_HITS_DTYPES[c] for c in extra}}
    if header != list(dtypes):
        raise InputError(f"{path}: expected finemo's {kind} columns {list(dtypes)}, found "
                         f"{header[:20]}; pass the {kind} finemo wrote, unmodified (plain or "
                         "compressed)")
    try:
        if packed is not None or is_url(path):
            # Decompressed (and a URL's object fetched) whole: polars' own readers know
            # neither fsspec nor bzip2 and xz.
            frame = pl.read_csv(read_decompressed(path), separator="\t", quote_char=None,
                                schema=dict(dtypes))
            return frame.lazy() if lazy else frame
        if lazy:
            return pl.scan_csv(path, separator="\t", quote_char=None, schema=dict(dtypes))
        return pl.read_csv(path, separator="\t", quote_char=None, schema=dict(dtypes))
    except READ_ERRORS as err:
        raise InputError(f"{path}: cannot read this {kind} ({err}); is the compressed file "
                         "truncated?") from None
    except pl.exceptions.PolarsError as err:
        raise InputError(f"{path}: not a readable finemo {kind} ({err})") from err


def hits_with_keys(out: str | os.PathLike[str], extras: list[str] | None = None
                   ) -> pl.LazyFrame:
    """The stored hits of ``out`` as :func:`finemo_hits_columns` (unsorted, lazily), with the
    run's extra columns (``extras``, default :func:`extra_columns`)."""
    extras = extra_columns(out) if extras is None else extras
    return finemo_hits_columns(scan_hits(out, labels=LABEL in extras), motif_keys(out), extras)


def motif_keys(out: str | os.PathLike[str]) -> dict[int, int]:
    """motif_id -> a dense id of its (motif_name, strand), hits_unique's motif identity."""
    m = read_motifs(out).with_columns(
        _mk=pl.struct("motif_name", "strand").rank("dense").cast(pl.UInt32) - 1)
    return dict(zip(m["motif_id"].to_list(), m["_mk"].to_list(), strict=True))


def finemo_hits_columns(hits: pl.LazyFrame, motif_keys: dict[int, int],
                        extras: list[str] | tuple[str, ...] = ()) -> pl.LazyFrame:
    """Stored hits -> finemo's hits.tsv columns, the ``extras`` among
    :data:`~.formats.EXTRA_HITS_DTYPES`, then the sort keys chr_id, _mk, motif_id."""
    return (
        hits.with_columns(na_fill(), hit_correlation=pl.col("hit_similarity"),
                          _mk=pl.col("motif_id").replace_strict(motif_keys,
                                                                return_dtype=pl.UInt32))
        .select(*FINEMO_HITS_DTYPES, *extras, "chr_id", "_mk", "motif_id")
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
