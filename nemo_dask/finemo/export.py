"""finemo-compatible files from a run's Parquet dataset, written without holding all hits.

(File names and columns: :mod:`.formats`; the rows themselves: :mod:`.read`.)

``export(OUT, DIR)`` writes finemo 0.41's ``hits.tsv``, ``hits_unique.tsv``, ``hits.bed``,
``peaks_qc.tsv``, ``motif_data.tsv``, ``motif_cwms.npy`` and ``parameters.json``. The stored hits
already carry finemo's values (coordinates, global-scale factors), so exporting is a selection,
a global sort and a text writer.

The global sort (finemo's chr_id, start) is the only step that needs more than one row at a
time; it is an external sort. A streaming pass counts hits per (chr_id, 1 Mb bin) and packs
consecutive bins into buckets of at most ``max_rows`` hits; one pass over the partitions appends
each batch's rows to its bucket's temporary Arrow file; each bucket is then read, sorted in
memory and appended to the text files. Peak memory is set by ``max_rows``, not by the number of
hits. Duplicates that ``hits_unique.tsv`` drops share chromosome and start, hence a bucket.

Regions without coordinates (finemo's placeholder chromosome "NA") are keyed by region:
finemo 0.41 treats "NA" as one chromosome and drops distinct hits of different regions that sit
at the same offset; here a hit is a duplicate only of a hit of the same region (chr_id of such a
region is its peak_id, so the sort keys already keep regions apart).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .. import config
from ..dataset import (
    CWMS_FILE,
    HITS_DIR,
    MANIFEST_FILE,
    PARAMS_FILE,
    QC_DIR,
    read_json,
    read_motifs,
    read_parameters,
    scan_qc,
)
from ..errors import CorruptDataError, InputError
from ..manifest import check_dataset, read_manifest
from ..matching.labels import LABEL, motif_labels
from ..storage.lock import describe, lock_holder
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
    FINEMO_HITS_DTYPES,
    FINEMO_MOTIFS_DTYPES,
    FINEMO_PARAMETER_KEYS,
    FINEMO_QC_COLUMNS,
    HITS_BED_FILE,
    HITS_FILE,
    HITS_UNIQUE_FILE,
    MOTIF_DATA_FILE,
    MOTIF_MATCHES_FILE,
    QC_FILE,
)
from .read import (
    QC_SORT_KEYS,
    SORT_KEYS,
    finemo_hits_columns,
    finemo_qc_columns,
    motif_keys,
)

_BIN_BITS = 20  # 1 Mb bins: fine enough to split a chromosome, coarse enough to be few
_BIN_OFFSET = 1 << (31 - _BIN_BITS)  # shifts the bins of negative starts to >= 0
_READ_BATCH = 65_536
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


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
           labels: bool = False) -> ExportResult:
    """Write finemo 0.41's output files for the run in ``out`` into ``dest_dir``.

    Parameters
    ----------
    out : path
        A call-hits output directory (``hits/``, ``qc/``, ``motifs.parquet``, ...), or a finemo
        call-hits output directory (its files plain or compressed; imported into a temporary
        dataset first, :func:`.directory.as_dataset`), which is then rewritten in finemo's
        order.
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
        Add ``motif_label`` after finemo's columns of hits.tsv and hits_unique.tsv, and use it
        as hits.bed's name. Off by default: finemo 0.41's readers (``finemo report``,
        ``collapse-hits``, ``intersect-hits``) refuse a hits file with a column they do not
        know. An annotated run's matches are written to ``motif_matches.tsv`` either way.

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
    if is_url(dest_given):
        # An object store: staged locally, each file uploaded whole once all are complete.
        with remote_input(out_given, "call-hits output directory") as fetched, \
                as_dataset(fetched) as local, \
                staged_output(dest_given, "export directory") as (stage, _):
            counts = _export_into(Path(local), Path(stage), max_rows, allow_incomplete, out,
                                  labels)
            names = _file_names(Path(local))
        dest_text = str(dest_given).rstrip("/")
        return ExportResult(dest=dest_text, n_hits=counts[0], n_unique=counts[1],  # type: ignore[arg-type]
                            n_regions=counts[2], n_buckets=counts[3],
                            files=tuple(f"{dest_text}/{n}" for n in names))  # type: ignore[misc]
    dest = Path(dest_given)
    real = output_dir(dest, "export directory")
    with remote_input(out_given, "call-hits output directory") as fetched, \
            as_dataset(fetched) as local:
        _check_run(Path(local), dest, allow_incomplete, out)
        names = _file_names(Path(local))
        for name in names:
            output_file(real / name, "export file")
        make_output_dir(real, "export directory")
        remove_temporaries(real, ("export", *names))  # left by a killed export; only ours
        tmp = real / temporary_name("export")
        tmp.mkdir()
        try:
            n_hits, n_unique, n_regions, n_buckets = _export_into(Path(local), tmp, max_rows,
                                                                  allow_incomplete, out, labels)
            for name in names:
                install(tmp / name, real / name, "export file")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(dest=dest, n_hits=n_hits, n_unique=n_unique, n_regions=n_regions,
                        n_buckets=n_buckets, files=tuple(dest / n for n in names))


def _file_names(out: Path) -> tuple[str, ...]:
    """The files an export of the (local) run ``out`` writes: finemo's, and the matches of an
    annotated run."""
    annotated = LABEL in read_motifs(out).columns
    return CALL_HITS_FILES + ((MOTIF_MATCHES_FILE,) if annotated else ())


def _export_into(out: Path, tmp: Path, max_rows: int, allow_incomplete: bool,
                 shown: Any, labels: bool = False) -> tuple[int, int, int, int]:
    """Write every finemo file of the (local) run ``out`` into the directory ``tmp``.

    The run is checked against its manifest first, and its manifest is read again at the end:
    a run rewritten meanwhile (``call-hits --overwrite`` into it) is refused in one line, and
    nothing is installed.
    """
    before = _check_run(out, None, allow_incomplete, shown)
    try:
        motifs = read_motifs(out)
        n_hits, n_unique, n_buckets = _write_hits(out, tmp, max_rows,
                                                  motif_labels(motifs) if labels else None)
        n_regions = _write_qc(out, tmp, max_rows)
        # finemo's columns only (finemo's report reads this file with exactly these).
        motifs.select(list(FINEMO_MOTIFS_DTYPES)).write_csv(tmp / MOTIF_DATA_FILE,
                                                             separator="\t")
        if LABEL in motifs.columns:
            match_table(motifs).write_csv(tmp / MOTIF_MATCHES_FILE, separator="\t")
        shutil.copyfile(out / CWMS_FILE, tmp / CWMS_FILE)
        _write_finemo_parameters(read_parameters(out), tmp / PARAMS_FILE)
    except (OSError, ValueError, pl.exceptions.PolarsError, pa.ArrowException) as err:
        if _still_same(out, before):
            raise  # not a change of the run under us: a fault of its own kind
        raise InputError(_changed(shown, f"{type(err).__name__}: {err}")) from None
    if read_manifest(out) != before:
        raise InputError(_changed(shown, "its manifest.json changed"))
    return n_hits, n_unique, n_regions, n_buckets


def _still_same(out: Path, before: dict[str, Any] | None) -> bool:
    """Whether the run still has the manifest ``before`` and matches it."""
    try:
        check_dataset(out)
    except (OSError, ValueError):
        return False
    return read_manifest(out) == before


def _changed(shown: Any, what: str) -> str:
    text = " ".join(what.split())
    return (f"{shown} changed while export read it ({text[:120]}): another call-hits wrote "
            "into it (--overwrite, or a resume); nothing was exported: export again once that "
            "run has finished")


def finemo_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """finemo's keys of a run's parameters, in finemo's order (nemo_dask's own are dropped)."""
    return {k: params[k] for k in FINEMO_PARAMETER_KEYS if k in params}


def sorted_hit_buckets(out: str | os.PathLike[str], max_rows: int,
                       tmp_dir: str | os.PathLike[str] | None = None) -> Iterator[pl.DataFrame]:
    """The run's hits in finemo's order, as consecutive in-memory frames of bounded size.

    Frames carry the finemo columns plus the sort keys ``chr_id``, ``_mk`` (a dense id of
    motif_name and strand) and ``motif_id``. A frame holds at most
    ``max_rows`` hits unless one (chromosome, 1 Mb bin) alone holds more. Buckets are spilled
    to temporary Arrow files in ``tmp_dir`` (a new temporary directory by default).
    """
    files = _partitions(Path(out) / HITS_DIR)
    prepare = partial(finemo_hits_columns, motif_keys=motif_keys(out))
    yield from _external_sort(files, prepare, "start", SORT_KEYS, max_rows, tmp_dir)


def _external_sort(files: list[Path], prepare: Callable[[pl.LazyFrame], pl.LazyFrame],
                   pos: str, sort_keys: Sequence[str], max_rows: int,
                   tmp_dir: str | os.PathLike[str] | None) -> Iterator[pl.DataFrame]:
    """Sort the rows of Parquet ``files`` by ``sort_keys`` (chr_id first) in bounded memory.

    Pass 1 counts rows per (chr_id, 1 Mb bin of column ``pos``) and packs consecutive bins into
    buckets of at most ``max_rows`` rows. Pass 2 reads each file once, in batches, and appends
    every batch's rows to its bucket's Arrow file. Each bucket is then read, sorted and yielded.
    """
    if not files:
        return
    key = _bucket_key(pos)
    counts = (
        prepare(pl.scan_parquet(files)).group_by(key.alias("_key")).agg(pl.len().alias("n"))
        .collect(engine="streaming").sort("_key")
    )
    if counts.height == 0:
        return
    keys = counts["_key"].to_numpy()
    # Greedy packing of consecutive keys: a bucket closes where it would pass max_rows.
    firsts, total = [], 0
    for i, n in enumerate(counts["n"].to_list()):
        if not firsts or total + n > max_rows:
            firsts.append(i)
            total = 0
        total += n
    lo_keys = keys[firsts]
    with tempfile.TemporaryDirectory(prefix=".tmp-sort-", dir=tmp_dir) as tmp:
        paths = [Path(tmp) / f"bucket-{b:06d}.arrow" for b in range(len(lo_keys))]
        writers: list[pa.ipc.RecordBatchFileWriter | None] = [None] * len(paths)
        try:
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=_READ_BATCH):
                    frame = prepare(pl.from_arrow(pa.Table.from_batches([batch])).lazy())
                    frame = frame.with_columns(key.alias("_key")).collect()
                    bucket = np.searchsorted(lo_keys, frame["_key"].to_numpy(), side="right") - 1
                    frame = frame.drop("_key").with_columns(_b=pl.Series(bucket, dtype=pl.Int64))
                    for (b,), part in frame.partition_by("_b", as_dict=True,
                                                         include_key=False).items():
                        table = part.to_arrow()
                        if writers[b] is None:
                            writers[b] = pa.ipc.new_file(paths[b], table.schema,
                                                         options=_IPC_OPTIONS)
                        writers[b].write_table(table)  # type: ignore[union-attr]
        finally:
            for w in writers:
                if w is not None:
                    w.close()
            # Arrow's pool keeps freed blocks; hand them back before the buckets are sorted.
            pa.default_memory_pool().release_unused()
        for b, path in enumerate(paths):
            if writers[b] is None:
                continue
            # Read by polars itself: no intermediate Arrow copy of the bucket.
            frame = pl.read_ipc(path).sort(sort_keys)
            path.unlink()
            yield frame
            del frame


def _partitions(d: Path) -> list[Path]:
    # The glob, as dataset.scan_* use it: hidden temporaries of a running writer are skipped.
    return sorted(d.glob("part-*.parquet"))


def _bucket_key(pos: str) -> pl.Expr:
    """chr_id and the 1 Mb bin of column ``pos`` as one Int64, ordered as (chr_id, pos)."""
    bin_ = (pl.col(pos).cast(pl.Int64) // (1 << _BIN_BITS)).clip(-_BIN_OFFSET, _BIN_OFFSET - 1)
    return pl.col("chr_id").cast(pl.Int64) * (2 * _BIN_OFFSET) + bin_ + _BIN_OFFSET


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
    return frame.select("chr", "start", "end", LABEL if labelled else "motif_name",
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


def _write_hits(out: Path, tmp: Path, max_rows: int,
                labels: dict[int, str] | None = None) -> tuple[int, int, int]:
    """Append each sorted bucket to the three hits files; returns (hits, unique, buckets).

    With ``labels`` (motif_id -> label), hits.tsv and hits_unique.tsv end with ``motif_label``
    and hits.bed's name is the label."""
    n_hits = n_unique = n_buckets = 0
    columns = list(FINEMO_HITS_DTYPES) + ([LABEL] if labels is not None else [])
    with open(tmp / HITS_FILE, "wb") as f_all, open(tmp / HITS_UNIQUE_FILE, "wb") as f_unique, \
            open(tmp / HITS_BED_FILE, "wb") as f_bed:
        # The header alone, so that a run without hits still gives finemo's header-only files.
        header = pl.DataFrame(schema=FINEMO_HITS_DTYPES | (
            {LABEL: pl.String} if labels is not None else {}))
        for f in (f_all, f_unique):
            _append(header, f, header=True)
        for bucket in sorted_hit_buckets(out, max_rows, tmp):
            if labels is not None:
                bucket = bucket.with_columns(pl.col("motif_id").replace_strict(
                    labels, return_dtype=pl.String).alias(LABEL))
            mask = _unique_mask(bucket)
            _append(bucket.select(columns), f_all)
            _append(bucket.select(columns).filter(mask), f_unique)
            _append(_bed(bucket, labels is not None).filter(mask), f_bed)
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
        for bucket in _external_sort(_partitions(Path(out) / QC_DIR), finemo_qc_columns,
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


def _check_run(out: Path, dest: Path | None, allow_incomplete: bool,
               shown: Any = None) -> dict[str, Any] | None:
    shown = out if shown is None else shown
    missing = [name for name in (HITS_DIR, QC_DIR, "motifs.parquet", CWMS_FILE, PARAMS_FILE)
               if not (out / name).exists()]
    if missing:
        raise InputError(f"{shown} is not a call-hits output directory: it lacks "
                         f"{', '.join(missing)}; pass the -o directory of `nemo-dask call-hits` "
                         "or of `finemo call-hits`")
    if dest is not None and dest.resolve() == out.resolve():
        raise InputError(f"export destination {dest} is the run directory itself; its "
                         "parameters.json would lose the nemo_dask settings: choose another "
                         "directory")
    manifest = out / MANIFEST_FILE
    if manifest.exists() and not allow_incomplete:
        info = read_json(manifest)
        if not info.get("complete", True):
            done = len(info.get("blocks", {}))
            holder = lock_holder(shown)
            advice = (f"it is being written now ({describe(holder)}): export it when that run "
                      "has finished" if holder else "resume it with call-hits, or export what "
                      "exists with --allow-incomplete")
            raise InputError(f"{location(shown) / MANIFEST_FILE}: the run is incomplete ({done} of "
                             f"{info.get('n_blocks', '?')} blocks finished); {advice}")
    try:
        # Every partition must be the one the manifest records (one line naming any other).
        check_dataset(out)
    except CorruptDataError as err:
        raise CorruptDataError(str(err).replace(str(out), str(shown))) from None
    return read_manifest(out)


__all__ = ("ExportResult", "export", "finemo_parameters", "sorted_hit_buckets")
