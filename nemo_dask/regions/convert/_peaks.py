"""The peak table of a conversion, read in row batches: narrowPeak files and chromosome orders.

Values follow finemo's ``load_peaks`` and ``write_regions_npz``: the same polars CSV options and
dtypes, ``peak_region_start = start + summit - half_width`` in Int32, ``peak_id`` = row number,
``chr_id`` by the ``-C`` order then by first appearance, and a null peak name (``.``, ``NA``,
``null``, ``NaN``) written as the string ``"None"`` as finemo's regions.npz holds it.
chr_id of a row depends only on the rows before it, so one pass in batches gives finemo's ids.

Where finemo's reader falls short, a real BED reader's behaviour is kept instead:

* gzip/bgzip (and bzip2, xz) compressed files are recognised by their first bytes, whatever
  their name, and read exactly as the plain file;
* UCSC ``track`` and ``browser`` lines and ``#`` comment lines are skipped (they are not peaks);
  any other line that is not a 10-column narrowPeak row (a column header, a blank line, a row
  with too few or too many columns, a non-integer start, end or summit) is refused naming its
  line, before the number of rows is compared with the regions;
* a summit of -1 (narrowPeak's "no point source", written by peak callers run without a summit
  model and by BED-to-narrowPeak conversions) centres the region on the peak's midpoint
  ``(start + end) // 2`` (the floor of the midpoint of the half-open interval, the same base
  MACS2 reports as the summit of a flat peak) instead of at ``start - 1``; a warning counts
  such rows.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import polars as pl

from ...errors import InputError
from ...schema import PEAKS_DTYPES
from ...storage.compressed import open_decompressed

#: ENCODE narrowPeak columns and the dtypes finemo parses them with.
NARROWPEAK_COLUMNS: dict[str, pl.DataType] = {
    "chr": pl.String, "peak_start": pl.Int32, "peak_end": pl.Int32, "peak_name": pl.String,
    "peak_score": pl.UInt32, "peak_strand": pl.String, "peak_signal": pl.Float32,
    "peak_pval": pl.Float32, "peak_qval": pl.Float32, "peak_summit": pl.Int32,
}
NARROWPEAK_NULLS = [".", "NA", "null", "NaN"]
_N_COLUMNS = len(NARROWPEAK_COLUMNS)
_LAYOUT = ("10 tab-separated columns (chr, start, end, name, score, strand, signal, p, q, "
           "summit)")
_INT32 = (-(2**31), 2**31 - 1)


def open_text_lines(path: str | os.PathLike[str], role: str) -> IO[bytes]:
    """Open ``path`` for reading bytes, decompressing gzip/bgzip, bzip2 or xz by content.

    Raises
    ------
    InputError
        When the file is missing or unreadable (``role`` names the option in the message).
    """
    try:
        return open_decompressed(path)  # the caller closes it
    except FileNotFoundError:
        raise InputError(f"{path}: {role} not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read the {role} ({err})") from None


def is_skipped_line(line: bytes) -> bool:
    """Whether a BED line is a UCSC ``track``/``browser`` line or a ``#`` comment."""
    if line.startswith(b"#"):
        return True
    for word in (b"track", b"browser"):
        if line.startswith(word) and (len(line) == len(word) or line[len(word)] in b" \t\r\n"):
            return True
    return False


def load_chrom_order(path: str | os.PathLike[str] | None) -> list[str]:
    """First tab-separated field of every line of a chromosome-order file (finemo's ``load_txt``)."""
    if path is None:
        return []
    try:
        with open(path) as f:
            return [line.rstrip("\n").split("\t")[0] for line in f]
    except FileNotFoundError:
        raise InputError(f"{path}: chromosome order file (-C) not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the chromosome order file (-C) ({err})") from None


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_int(field: bytes) -> int | None:
    try:
        value = int(field)
    except ValueError:
        return None
    return value if _INT32[0] <= value <= _INT32[1] else None


class NarrowPeaks:
    """A narrowPeak file (plain or compressed) read in increasing row batches.

    Construction makes one pass over the file that checks every line's layout and collects the
    row count and chromosome names, so that bad rows, counts and chromosomes are reported before
    any output is written.

    Parameters
    ----------
    path : str or PathLike
        ENCODE narrowPeak (10 tab-separated columns), optionally gzip/bgzip/bzip2/xz
        compressed; ``track``, ``browser`` and ``#`` lines are skipped.
    chrom_order : str or PathLike, optional
        finemo's ``-C`` file: chromosomes listed first get the first chr_ids.
    half_width : int
        Half the region width; regions start at ``centre - half_width`` where the centre is
        ``start + summit``, or ``(start + end) // 2`` for a summit of -1.

    Raises
    ------
    InputError
        Missing, unreadable or empty file, or a line that is not a narrowPeak row.
    """

    def __init__(self, path: str | os.PathLike[str], chrom_order: str | os.PathLike[str] | None,
                 half_width: int) -> None:
        self.path = Path(path)
        self.half_width = half_width
        order = load_chrom_order(chrom_order)
        # finemo maps with a dict comprehension: a name listed twice keeps its last index.
        self._chr_ids = {name: i for i, name in enumerate(order)}
        self._next_id = len(order)
        names: dict[str, None] = {}
        n = 0
        self.n_no_summit = 0
        digest = hashlib.sha256("\n".join(order).encode() + b"\0")
        for _, fields in self._rows():
            n += 1
            digest.update(b"\t".join(fields) + b"\n")
            names.setdefault(fields[0].decode("utf-8", "replace"), None)
            if fields[9] == b"-1":
                self.n_no_summit += 1
        if n == 0:
            raise InputError(f"{self.path}: the peaks file (-p) holds no peak rows; expected "
                             "one narrowPeak row per region")
        self.n_rows = n
        #: SHA-256 of the chromosome order and the peak rows (not of the file's bytes: the same
        #: peaks compressed or with other comment lines have the same digest).
        self.content_sha256 = digest.hexdigest()
        self.chromosomes = list(names)
        self._iter: Iterator[tuple[int, list[bytes]]] | None = None
        self._fh: IO[bytes] | None = None
        self._row = 0
        self._warned = False

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        fh = open_text_lines(self.path, "peaks file (-p)")
        self._fh = fh
        try:
            yield from enumerate(fh, start=1)
        except (OSError, EOFError, gzip.BadGzipFile, lzma.LZMAError) as err:
            raise InputError(f"{self.path}: cannot read the peaks file (-p) ({err}); is the "
                             "compressed file truncated?") from None
        finally:
            fh.close()

    def _rows(self) -> Iterator[tuple[int, list[bytes]]]:
        """(line number, 10 fields) of every data line, after checking its layout."""
        for number, raw in self._lines():
            line = raw.rstrip(b"\r\n")
            if is_skipped_line(line):
                continue
            yield number, self._check_line(number, line)

    def _check_line(self, number: int, line: bytes) -> list[bytes]:
        where = f"{self.path}: line {number}"
        if not line.strip():
            raise InputError(f"{where} is blank; every line must be a narrowPeak row of "
                             f"{_LAYOUT} (only track, browser and # lines are skipped)")
        if b"\0" in line or not _is_utf8(line):
            raise InputError(f"{where} is binary, not text: this is not a narrowPeak file (or "
                             "it is compressed with other than gzip, bgzip, bzip2 or xz); "
                             f"expected {_LAYOUT}")
        fields = line.split(b"\t")
        if len(fields) != _N_COLUMNS:
            shown = line[:60].decode("utf-8", "replace")
            raise InputError(f"{where} has {len(fields)} tab-separated columns ({shown!r}); "
                             f"expected {_LAYOUT}")
        if fields[0] in (b"", *(v.encode() for v in NARROWPEAK_NULLS)):
            raise InputError(f"{where}: column 1 (chr) is empty or null; every row needs a "
                             "chromosome name")
        for col, name in ((1, "start"), (2, "end"), (9, "summit")):
            if _parse_int(fields[col]) is None:
                shown = fields[col][:30].decode("utf-8", "replace")
                hint = (" (a column header? remove it, or start it with #)" if number == 1
                        or not shown.lstrip("-").isdigit() else "")
                raise InputError(f"{where}: column {col + 1} ({name}) is {shown!r}, expected "
                                 f"an integer{hint}")
        start, end, summit = int(fields[1]), int(fields[2]), int(fields[9])
        if summit < -1:
            raise InputError(f"{where}: column 10 (summit) is {summit}; a summit is an offset "
                             "from the peak start (>= 0), or -1 for none")
        if end < start:
            raise InputError(f"{where}: end {end} is before start {start}")
        return fields

    def read(self, start: int, stop: int) -> pl.DataFrame:
        """Rows ``start:stop`` of the peak table (``schema.PEAKS_DTYPES``); call in order."""
        if start != self._row:
            raise RuntimeError("NarrowPeaks.read must be called with consecutive row ranges")
        if self._iter is None:
            self._iter = self._rows()
        rows = []
        for _ in range(stop - start):
            row = next(self._iter, None)
            if row is None:
                raise InputError(f"{self.path}: the peaks file changed while it was read; do "
                                 "not modify it during conversion")
            rows.append(row)
        self._row = stop
        data = b"".join(b"\t".join(fields) + b"\n" for _, fields in rows)
        try:
            table = pl.read_csv(io.BytesIO(data), has_header=False,
                                new_columns=list(NARROWPEAK_COLUMNS), separator="\t",
                                quote_char=None, schema_overrides=NARROWPEAK_COLUMNS,
                                null_values=NARROWPEAK_NULLS)
        except (pl.exceptions.PolarsError, ValueError):
            raise self._bad_value(rows) from None
        if table.height != stop - start:
            raise InputError(f"{self.path}: lines {rows[0][0]}-{rows[-1][0]} gave {table.height} "
                             f"rows; expected one narrowPeak row per line")
        chr_ids = []
        for name in table.get_column("chr").to_list():
            cid = self._chr_ids.get(name)
            if cid is None:
                cid = self._chr_ids[name] = self._next_id
                self._next_id += 1
            chr_ids.append(cid)
        summit = pl.col("peak_summit")
        centre = (pl.when(summit == -1)
                  .then((pl.col("peak_start").cast(pl.Int64) + pl.col("peak_end")) // 2)
                  .otherwise(pl.col("peak_start") + summit))
        if self.n_no_summit and not self._warned:
            self._warned = True
            warnings.warn(f"{self.path}: {self.n_no_summit} peak(s) have summit -1 (no point "
                          "source); their regions are centred on the peak midpoint "
                          "(start + end) // 2", stacklevel=4)
        return table.select(
            chr=pl.col("chr"),
            peak_region_start=(centre - self.half_width).cast(pl.Int32),
            peak_name=pl.col("peak_name").fill_null("None"),
            peak_id=pl.int_range(start, stop, dtype=pl.UInt32),
            chr_id=pl.Series(chr_ids, dtype=pl.UInt32),
        ).cast(PEAKS_DTYPES)  # type: ignore[arg-type]

    def _bad_value(self, rows: list[tuple[int, list[bytes]]]) -> InputError:
        """The first line whose values polars cannot parse with finemo's dtypes, by name."""
        for number, fields in rows:
            for (name, dtype), value in zip(NARROWPEAK_COLUMNS.items(), fields, strict=True):
                if value.decode("utf-8", "replace") in NARROWPEAK_NULLS or dtype == pl.String:
                    continue
                try:
                    parsed = float(value) if dtype == pl.Float32 else int(value)
                except ValueError:
                    parsed = None
                if parsed is None or (dtype == pl.UInt32 and not 0 <= parsed < 2**32):
                    col = list(NARROWPEAK_COLUMNS).index(name) + 1
                    kind = {pl.Float32: "a number", pl.UInt32: "an integer >= 0"}.get(
                        dtype, "an integer")
                    return InputError(f"{self.path}: line {number}: column {col} ({name}) is "
                                      f"{value[:30].decode('utf-8', 'replace')!r}, expected "
                                      f"{kind}")
        return InputError(f"{self.path}: lines {rows[0][0]}-{rows[-1][0]} are not valid "
                          f"narrowPeak; expected {_LAYOUT}")

    def close(self) -> None:
        if self._iter is not None:
            self._iter.close()  # type: ignore[attr-defined]
            self._iter = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


__all__ = ("NARROWPEAK_COLUMNS", "NarrowPeaks", "is_skipped_line", "load_chrom_order",
           "open_text_lines")

