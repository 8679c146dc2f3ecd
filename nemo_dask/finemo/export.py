"""finemo-compatible files from a run's Parquet dataset, written without holding all hits.

(File names and columns: :mod:`.formats`; the rows themselves: :mod:`.read`.)

``export(OUT, DIR)`` writes finemo 0.41's ``hits.tsv``, ``hits_unique.tsv``, ``hits.bed``,
``peaks_qc.tsv``, ``motif_data.tsv``, ``motif_cwms.npy`` and ``parameters.json``. The stored hits
already carry finemo's values (coordinates, global-scale factors), so exporting is a selection,
a global sort and a text writer.

The global sort (finemo's chr_id, start) is the only step that needs more than one row at a
time; it is an external sort (:mod:`.sort`), whose sorted buckets are appended to the text
files: peak memory is set by ``max_rows``, not by the number of hits.

finemo 0.41 reads hits TSVs with a fixed schema and refuses any other column, so hits.tsv,
hits_unique.tsv, hits.bed and motif_data.tsv are exactly finemo's. A run with extra hits
columns (``motif_label`` when annotated, ``hit_qvalue`` with q-values) also gets
``hits_extra.tsv`` and ``hits_unique_extra.tsv``: the same rows, finemo's columns, then every
extra column in that fixed order.

Regions without coordinates (finemo's placeholder chromosome "NA") are keyed by region:
finemo 0.41 treats "NA" as one chromosome and drops distinct hits of different regions that sit
at the same offset; here a hit is a duplicate only of a hit of the same region (chr_id of such a
region is its peak_id, so the sort keys already keep regions apart).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import polars as pl
import pyarrow as pa

from .. import config
from ..dataset import (
    CWMS_FILE,
    HITS_DIR,
    PARAMS_FILE,
    QC_DIR,
    QVALUES_DIR,
    part_name,
    read_motifs,
    read_parameters,
    scan_qc,
    table_records,
)
from ..errors import InputError
from ..manifest import read_manifest
from ..matching.labels import LABEL, motif_labels, with_labels
from ..schema import QVALUE
from ..storage.outputs import (
    install,
    make_output_dir,
    output_dir,
    output_file,
    remove_temporaries,
    staged_output,
)
from ..storage.temporary import temporary_name
from ..storage.urls import is_url, localize, location, remote_input
from .directory import as_dataset
from .formats import (
    CALL_HITS_FILES,
    EXTRA_HITS_DTYPES,
    FINEMO_HITS_DTYPES,
    FINEMO_MOTIFS_DTYPES,
    FINEMO_PARAMETER_KEYS,
    FINEMO_QC_COLUMNS,
    HITS_BED_FILE,
    HITS_EXTRA_FILE,
    HITS_FILE,
    HITS_UNIQUE_EXTRA_FILE,
    HITS_UNIQUE_FILE,
    MOTIF_DATA_FILE,
    MOTIF_MATCHES_FILE,
    QC_FILE,
)
from .read import (
    QC_SORT_KEYS,
    SORT_KEYS,
    check_max_qvalue,
    extra_columns,
    finemo_hits_columns,
    finemo_qc_columns,
    motif_keys,
)
from .runcheck import changed, check_run, still_same
from .sort import Source, external_sort, partitions

#: The extended hits files, written when a run has extra hits columns.
EXTRA_FILES = (HITS_EXTRA_FILE, HITS_UNIQUE_EXTRA_FILE)


class ExportResult(NamedTuple):
    """What :func:`export` wrote."""

    dest: Path
    n_hits: int
    n_unique: int
    n_regions: int
    n_buckets: int
    files: tuple[Path, ...]


def export(out: str | os.PathLike[str], dest_dir: str | os.PathLike[str], *,
           max_rows: int | None = None, allow_incomplete: bool = False,
           labels: bool = False, max_qvalue: float | None = None) -> ExportResult:
    """Write finemo 0.41's output files for the run in ``out`` into ``dest_dir``.

    Parameters
    ----------
    out : path
        A call-hits output directory (``hits/``, ``qc/``, ``motifs.parquet``, ...), or a finemo
        call-hits or export directory (its files plain or compressed; imported into a temporary
        dataset first, :func:`.directory.as_dataset`: an export's extended files keep their
        labels and q-values), which is then rewritten in finemo's order.
    dest_dir : path
        Where the finemo files go (created; files of the same names are replaced, each as
        :func:`nemo_dask.storage.outputs.open_output` says: a symlink's target is written, a
        device or FIFO receives the bytes; a directory of such a name is refused before any
        work).
    max_rows : int, optional
        Largest number of hits sorted in memory at once (peak memory grows by roughly 0.7 kB
        per hit of bucket); default ``nemo_dask.export.max-rows`` in dask config (500000).
    allow_incomplete : bool
        Export a run whose manifest says blocks are missing (their regions are then absent).
    labels : bool
        hits.bed's name is the motif's label (``motif_label``, :mod:`nemo_dask.matching`)
        instead of its name. hits.tsv and hits_unique.tsv keep finemo's columns either way
        (finemo 0.41's readers refuse any other); an annotated run's labels are in
        ``hits_extra.tsv`` and its matches in ``motif_matches.tsv``.
    max_qvalue : float, optional
        Write only hits whose ``hit_qvalue`` is at most this (every hits file); the run must
        have q-values.

    A run with extra hits columns also gets ``hits_extra.tsv`` and ``hits_unique_extra.tsv``
    (module docstring); extended files of an earlier export into ``dest_dir`` that this one
    does not write are removed, so that a reader never takes them for this run's.

    Every file is written into a hidden temporary directory inside ``dest_dir`` and moved into
    place only when all are complete.

    Raises
    ------
    InputError
        ``out`` is not a complete run, or ``max_rows`` < 1.
    OutputExistsError
        ``dest_dir`` is (or links to) a file or device, or one of the file names in it is a
        directory.
    """
    out_given, dest_given = localize(out), localize(dest_dir)
    if max_rows is None:
        max_rows = int(config.get("export.max-rows"))
    if max_rows < 1:
        raise InputError(f"max_rows must be a positive number of hits, got {max_rows}")
    if str(out_given).rstrip("/") == str(dest_given).rstrip("/"):
        raise InputError(f"export destination {dest_dir} is the run directory itself; its "
                         "parameters.json would lose the nemo_dask settings: choose another "
                         "directory")
    if max_qvalue is not None:  # the range, before any work (the run's q-values: below)
        check_max_qvalue(max_qvalue, True, out)
    options = (labels, max_qvalue)
    if is_url(dest_given):
        # An object store: staged locally, each file uploaded whole once all are complete.
        with remote_input(out_given, "call-hits output directory") as fetched, \
                as_dataset(fetched) as local, \
                staged_output(dest_given, "export directory") as (stage, _):
            counts = _export_into(Path(local), Path(stage), max_rows, allow_incomplete, out,
                                  options)
            names = _file_names(Path(local))
        _remove_stale(dest_given, names)
        dest_text = str(dest_given).rstrip("/")
        return ExportResult(dest=dest_text, n_hits=counts[0], n_unique=counts[1],  # type: ignore[arg-type]
                            n_regions=counts[2], n_buckets=counts[3],
                            files=tuple(f"{dest_text}/{n}" for n in names))  # type: ignore[misc]
    dest = Path(dest_given)
    real = output_dir(dest, "export directory")
    with remote_input(out_given, "call-hits output directory") as fetched, \
            as_dataset(fetched) as local:
        check_run(Path(local), dest, allow_incomplete, out)
        names = _file_names(Path(local))
        for name in names:
            output_file(real / name, "export file")
        make_output_dir(real, "export directory")
        remove_temporaries(real, ("export", *names))  # left by a killed export; only ours
        tmp = real / temporary_name("export")
        tmp.mkdir()
        try:
            n_hits, n_unique, n_regions, n_buckets = _export_into(Path(local), tmp, max_rows,
                                                                  allow_incomplete, out, options)
            for name in names:
                install(tmp / name, real / name, "export file")
            _remove_stale(real, names)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(dest=dest, n_hits=n_hits, n_unique=n_unique, n_regions=n_regions,
                        n_buckets=n_buckets, files=tuple(dest / n for n in names))


def _file_names(out: Path) -> tuple[str, ...]:
    """The files an export of the (local) run ``out`` writes: finemo's, the extended hits
    files of a run with extra columns, and the matches of an annotated run."""
    annotated = LABEL in read_motifs(out).columns
    return (CALL_HITS_FILES + (EXTRA_FILES if extra_columns(out) else ())
            + ((MOTIF_MATCHES_FILE,) if annotated else ()))


def _remove_stale(dest: Any, names: tuple[str, ...]) -> None:
    """Remove an earlier export's extended files that this export did not write."""
    for name in (*EXTRA_FILES, MOTIF_MATCHES_FILE):
        if name in names:
            continue
        target = location(dest) / name
        if is_url(target):
            from ..storage.urls import filesystem

            fs, root = filesystem(str(target))
            if fs.exists(root):
                fs.rm(root)
        elif target.is_file() and not target.is_symlink():
            target.unlink()


def _export_into(out: Path, tmp: Path, max_rows: int, allow_incomplete: bool,
                 shown: Any, options: tuple[bool, float | None] = (False, None)
                 ) -> tuple[int, int, int, int]:
    """Write every finemo file of the (local) run ``out`` into the directory ``tmp``.

    The run is checked against its manifest first, and its manifest is read again at the end:
    a run rewritten meanwhile (``call-hits --overwrite`` into it) is refused in one line, and
    nothing is installed.
    """
    before = check_run(out, None, allow_incomplete, shown)
    labels, max_qvalue = options
    extras = extra_columns(out)
    if max_qvalue is not None:
        check_max_qvalue(max_qvalue, QVALUE in extras, shown)
    try:
        motifs = read_motifs(out)
        n_hits, n_unique, n_buckets = _write_hits(out, tmp, max_rows, extras,
                                                  motif_labels(motifs) if labels else None,
                                                  max_qvalue)
        n_regions = _write_qc(out, tmp, max_rows)
        # finemo's columns only (finemo's report reads this file with exactly these).
        motifs.select(list(FINEMO_MOTIFS_DTYPES)).write_csv(tmp / MOTIF_DATA_FILE,
                                                             separator="\t")
        if LABEL in motifs.columns:
            match_table(motifs).write_csv(tmp / MOTIF_MATCHES_FILE, separator="\t")
        shutil.copyfile(out / CWMS_FILE, tmp / CWMS_FILE)
        _write_finemo_parameters(read_parameters(out), tmp / PARAMS_FILE)
    except (OSError, ValueError, pl.exceptions.PolarsError, pa.ArrowException) as err:
        if still_same(out, before):
            raise  # not a change of the run under us: a fault of its own kind
        raise InputError(changed(shown, f"{type(err).__name__}: {err}")) from None
    if read_manifest(out) != before:
        raise InputError(changed(shown, "its manifest.json changed"))
    return n_hits, n_unique, n_regions, n_buckets


def finemo_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """finemo's keys of a run's parameters, in finemo's order (nemo_dask's own are dropped)."""
    return {k: params[k] for k in FINEMO_PARAMETER_KEYS if k in params}


def sorted_hit_buckets(out: str | os.PathLike[str], max_rows: int,
                       tmp_dir: str | os.PathLike[str] | None = None,
                       extras: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """The run's hits in finemo's order, as consecutive in-memory frames of bounded size.

    Frames carry the finemo columns, the run's extra columns (``extras``, default
    :func:`~.read.extra_columns`: ``motif_label``, ``hit_qvalue``), then the sort keys
    ``chr_id``, ``_mk`` (a dense id of motif_name and strand) and ``motif_id``. A frame holds
    at most ``max_rows`` hits unless one (chromosome, 1 Mb bin) alone holds more. Buckets are
    spilled to temporary Arrow files in ``tmp_dir`` (a new temporary directory by default).
    """
    out = Path(out)
    extras = extra_columns(out) if extras is None else extras
    sources: list[Source] = list(partitions(out / HITS_DIR))
    if QVALUE in extras:
        # Each block's q-values beside its hits, row for row (the manifest's blocks).
        blocks = sorted(table_records(read_manifest(out) or {}, QVALUES_DIR) or {})
        sources = [(out / HITS_DIR / part_name(b), out / QVALUES_DIR / part_name(b))
                   for b in blocks]
    keys = motif_keys(out)
    motifs = read_motifs(out) if LABEL in extras else None

    def prepare(lf: pl.LazyFrame) -> pl.LazyFrame:
        if motifs is not None:
            lf = with_labels(lf, motifs)
        return finemo_hits_columns(lf, keys, extras)

    yield from external_sort(sources, prepare, "start", SORT_KEYS, max_rows, tmp_dir)


def _unique_mask(bucket: pl.DataFrame) -> pl.Series:
    """Which rows of a sorted bucket hits_unique.tsv keeps (finemo: first of each key)."""
    # Sorted by (chr_id, start, _mk, ...): a duplicate follows its first occurrence directly.
    # chr_id stands for chr (one id per name) and, for the "NA" placeholder of regions without
    # coordinates, for the region (its peak_id), so such hits are keyed by region.
    new = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1))
                            for c in ("chr_id", "start", "_mk"))
    mask = bucket.select(new.fill_null(True).alias("m")).to_series()
    return mask & bucket["chr"].is_not_null()


def _bed(frame: pl.DataFrame, labelled: bool = False) -> pl.DataFrame:
    return frame.select("chr", "start", "end",
                        pl.col("_label").alias(LABEL) if labelled else "motif_name",
                        score=pl.lit(0, pl.Int32), strand="strand")


def match_table(motifs: pl.DataFrame) -> pl.DataFrame:
    """``motif_matches.tsv``: one row per (pattern, rank) of an annotated motif table, with the
    orientation of the pattern's forward matrix."""
    lists = ["match_id", "match_name", "match_pvalue", "match_qvalue", "match_orientation"]
    return (motifs.filter(pl.col("strand") == "+")
            .select("motif_name", LABEL, *lists)
            .with_columns(rank=pl.int_ranges(1, pl.col("match_id").list.len() + 1,
                                             dtype=pl.UInt32))
            .explode("rank", *lists)
            .drop_nulls("match_id")
            .select("motif_name", LABEL, "rank", *lists))


def _write_hits(out: Path, tmp: Path, max_rows: int, extras: list[str],
                labels: dict[int, str] | None = None,
                max_qvalue: float | None = None) -> tuple[int, int, int]:
    """Append each sorted bucket to the hits files; returns (hits, unique, buckets).

    hits.tsv, hits_unique.tsv and hits.bed are finemo's; with ``extras`` (the run's extra
    columns) the same rows go to hits_extra.tsv and hits_unique_extra.tsv with them after
    finemo's columns. With ``labels`` (motif_id -> label), hits.bed's name is the label.
    ``max_qvalue`` drops the hits above it before duplicates are removed."""
    n_hits = n_unique = n_buckets = 0
    columns = list(FINEMO_HITS_DTYPES)
    with contextlib.ExitStack() as stack:
        f_all, f_unique, f_bed = (stack.enter_context(open(tmp / n, "wb"))
                                  for n in (HITS_FILE, HITS_UNIQUE_FILE, HITS_BED_FILE))
        extended = [stack.enter_context(open(tmp / n, "wb")) for n in EXTRA_FILES] \
            if extras else []
        # The header alone, so that a run without hits still gives finemo's header-only files.
        header = pl.DataFrame(schema=FINEMO_HITS_DTYPES)
        for f in (f_all, f_unique):
            _append(header, f, header=True)
        for f in extended:
            _append(pl.DataFrame(schema=FINEMO_HITS_DTYPES | {c: EXTRA_HITS_DTYPES[c]
                                                              for c in extras}), f, header=True)
        for bucket in sorted_hit_buckets(out, max_rows, tmp, extras):
            if max_qvalue is not None:
                bucket = bucket.filter(pl.col(QVALUE) <= max_qvalue)
            if labels is not None:
                bucket = bucket.with_columns(pl.col("motif_id").replace_strict(
                    labels, return_dtype=pl.String).alias("_label"))
            mask = _unique_mask(bucket)
            _append(bucket.select(columns), f_all)
            _append(bucket.select(columns).filter(mask), f_unique)
            _append(_bed(bucket, labels is not None).filter(mask), f_bed)
            if extended:
                _append(bucket.select(*columns, *extras), extended[0])
                _append(bucket.select(*columns, *extras).filter(mask), extended[1])
            n_hits += bucket.height
            n_unique += int(mask.sum())
            del bucket
            n_buckets += 1
    return n_hits, n_unique, n_buckets


def _write_qc(out: Path, tmp: Path, max_rows: int) -> int:
    """Write peaks_qc.tsv bucket by bucket, as the hits; returns the number of regions."""
    n = 0
    with open(tmp / QC_FILE, "wb") as f:
        _append(pl.DataFrame(schema=finemo_qc_columns(scan_qc(out)).select(FINEMO_QC_COLUMNS)
                             .collect_schema()), f, header=True)
        for bucket in external_sort(partitions(Path(out) / QC_DIR), finemo_qc_columns,
                                     "peak_region_start", QC_SORT_KEYS, max_rows, tmp):
            _append(bucket.select(FINEMO_QC_COLUMNS), f)
            n += bucket.height
    return n


def _append(frame: pl.DataFrame, f: IO[bytes], header: bool = False) -> None:
    if frame.height or header:
        frame.write_csv(f, separator="\t", include_header=header)


def _write_finemo_parameters(params: dict[str, Any], path: Path) -> None:
    import json

    # finemo's json.dump(indent=4), without a final newline, so equal values give equal bytes.
    with open(path, "w") as f:
        json.dump(finemo_parameters(params), f, indent=4)


__all__ = ("ExportResult", "export", "finemo_parameters", "sorted_hit_buckets")
