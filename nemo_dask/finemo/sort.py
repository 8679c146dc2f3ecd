"""finemo's global sort (chr_id, then a position) of a run's partitions, in bounded memory.

The only step of an export that needs more than one row at a time. A streaming pass counts
rows per (chr_id, 1 Mb bin) and packs consecutive bins into buckets of at most ``max_rows``
rows; one pass over the partitions appends each batch's rows to its bucket's temporary Arrow
file; each bucket is then read, sorted in memory and yielded. Peak memory is set by
``max_rows``, not by the number of rows. Duplicates that ``hits_unique.tsv`` drops share
chromosome and start, hence a bucket.

A partition may come with a second, column-only partition read beside it row for row (a
block's ``qvalues/`` partition beside its hits: :mod:`nemo_dask.calibration.assign`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

_BIN_BITS = 20  # 1 Mb bins: fine enough to split a chromosome, coarse enough to be few
_BIN_OFFSET = 1 << (31 - _BIN_BITS)  # shifts the bins of negative starts to >= 0
_READ_BATCH = 65_536
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")

#: A partition file, or a partition and the file of its extra columns (same rows, same order).
Source = Path | tuple[Path, Path]


def partitions(d: Path) -> list[Path]:
    """The partition files of a table directory, in block order."""
    # The glob, as dataset.scan_* use it: hidden temporaries of a running writer are skipped.
    return sorted(d.glob("part-*.parquet"))


def external_sort(sources: Sequence[Source], prepare: Callable[[pl.LazyFrame], pl.LazyFrame],
                  pos: str, sort_keys: Sequence[str], max_rows: int,
                  tmp_dir: str | os.PathLike[str] | None) -> Iterator[pl.DataFrame]:
    """Sort the rows of Parquet ``sources`` by ``sort_keys`` (chr_id first) in bounded memory.

    ``prepare`` turns the raw rows (with the extra columns of a paired source) into the rows
    to sort, which must have ``chr_id`` and ``pos``. Pass 1 counts rows per (chr_id, 1 Mb bin
    of ``pos``) and packs consecutive bins into buckets of at most ``max_rows`` rows. Pass 2
    reads each file once, in batches, and appends every batch's rows to its bucket's Arrow
    file. Each bucket is then read, sorted and yielded.
    """
    if not sources:
        return
    files = [s[0] if isinstance(s, tuple) else s for s in sources]
    key = _bucket_key(pos)
    scan = pl.scan_parquet(files)
    if isinstance(sources[0], tuple):  # the extra columns do not place a row: typed nulls
        extra = pl.read_parquet_schema(sources[0][1])
        scan = scan.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in extra.items())
    counts = (
        prepare(scan).group_by(key.alias("_key")).agg(pl.len().alias("n"))
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
            for batch in _batches(sources):
                frame = prepare(pl.from_arrow(pa.Table.from_batches([batch])).lazy())  # type: ignore[union-attr]
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


def _batches(sources: Sequence[Source]) -> Iterator[pa.RecordBatch]:
    """Every source's rows in batches; a paired source's extra columns appended to its rows
    (its extra file is one column per hit of a block: read whole)."""
    for source in sources:
        if not isinstance(source, tuple):
            yield from pq.ParquetFile(source).iter_batches(batch_size=_READ_BATCH)
            continue
        rows, extra_path = source
        extra = pq.read_table(extra_path)
        offset = 0
        for batch in pq.ParquetFile(rows).iter_batches(batch_size=_READ_BATCH):
            part = extra.slice(offset, batch.num_rows)
            offset += batch.num_rows
            columns = [part.column(i).combine_chunks() for i in range(part.num_columns)]
            yield pa.RecordBatch.from_arrays([*batch.columns, *columns],
                                             names=[*batch.schema.names, *part.column_names])
        if offset != extra.num_rows:
            raise ValueError(f"{extra_path} holds {extra.num_rows} rows for the {offset} of "
                             f"{rows}")


def _bucket_key(pos: str) -> pl.Expr:
    """chr_id and the 1 Mb bin of column ``pos`` as one Int64, ordered as (chr_id, pos)."""
    bin_ = (pl.col(pos).cast(pl.Int64) // (1 << _BIN_BITS)).clip(-_BIN_OFFSET, _BIN_OFFSET - 1)
    return pl.col("chr_id").cast(pl.Int64) * (2 * _BIN_OFFSET) + bin_ + _BIN_OFFSET


__all__ = ("Source", "external_sort", "partitions")
