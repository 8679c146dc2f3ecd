"""The peak table of a conversion, read in row batches: narrowPeak files and chromosome orders.

Values follow finemo's ``load_peaks`` and ``write_regions_npz`` exactly: the same polars CSV
options and dtypes, ``peak_region_start = start + summit - half_width`` in Int32, ``peak_id`` = row
number, ``chr_id`` by the ``-C`` order then by first appearance, and a null peak name (``.``,
``NA``, ``null``, ``NaN``) written as the string ``"None"`` as finemo's regions.npz holds it.
chr_id of a row depends only on the rows before it, so one pass in batches gives finemo's ids.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import polars as pl

from ...errors import InputError
from ...schema import PEAKS_DTYPES

#: ENCODE narrowPeak columns and the dtypes finemo parses them with.
NARROWPEAK_COLUMNS: dict[str, pl.DataType] = {
    "chr": pl.String, "peak_start": pl.Int32, "peak_end": pl.Int32, "peak_name": pl.String,
    "peak_score": pl.UInt32, "peak_strand": pl.String, "peak_signal": pl.Float32,
    "peak_pval": pl.Float32, "peak_qval": pl.Float32, "peak_summit": pl.Int32,
}
NARROWPEAK_NULLS = [".", "NA", "null", "NaN"]
_REQUIRED = {"chr": 1, "peak_start": 2, "peak_summit": 10}


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


class NarrowPeaks:
    """A narrowPeak file read in increasing row batches, giving finemo's peak-table rows.

    Construction makes one cheap pass over the file (row count, chromosome names) so that
    counts and chromosomes can be validated before any output is written.

    Parameters
    ----------
    path : str or PathLike
        ENCODE narrowPeak (10 tab-separated columns, no header).
    chrom_order : str or PathLike, optional
        finemo's ``-C`` file: chromosomes listed first get the first chr_ids.
    half_width : int
        Half the region width; regions start at ``start + summit - half_width``.
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
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    n += 1
                    names.setdefault(line.split(b"\t", 1)[0].rstrip(b"\r\n").decode(
                        "utf-8", "replace"), None)
        except FileNotFoundError:
            raise InputError(f"{self.path}: peaks file (-p) not found") from None
        except OSError as err:
            raise InputError(f"{self.path}: cannot read the peaks file (-p) ({err})") from None
        if n == 0:
            raise InputError(f"{self.path}: the peaks file (-p) is empty; expected one "
                             "narrowPeak row per region")
        self.n_rows = n
        # Blank and null names fail later with their line number; only real names are listed.
        self.chromosomes = [c for c in names if c and c not in NARROWPEAK_NULLS]
        self._fh: io.BufferedReader | None = None
        self._row = 0

    def read(self, start: int, stop: int) -> pl.DataFrame:
        """Rows ``start:stop`` of the peak table (``schema.PEAKS_DTYPES``); call in order."""
        if start != self._row:
            raise RuntimeError("NarrowPeaks.read must be called with consecutive row ranges")
        if self._fh is None:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        lines = [self._fh.readline() for _ in range(stop - start)]
        if any(not line for line in lines):
            raise InputError(f"{self.path}: the peaks file changed while it was read; "
                             "do not modify it during conversion")
        data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
        self._row = stop
        try:
            table = pl.read_csv(io.BytesIO(data), has_header=False,
                                new_columns=list(NARROWPEAK_COLUMNS), separator="\t",
                                quote_char=None, schema_overrides=NARROWPEAK_COLUMNS,
                                null_values=NARROWPEAK_NULLS)
        except (pl.exceptions.PolarsError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise InputError(f"{self.path}: lines {start + 1}-{stop} are not valid narrowPeak "
                             f"({first}); expected 10 tab-separated columns (chr, start, end, "
                             "name, score, strand, signal, p, q, summit), no header") from None
        if table.height != stop - start:
            raise InputError(f"{self.path}: lines {start + 1}-{stop} gave {table.height} rows; "
                             "expected one narrowPeak row per line")
        for col, number in _REQUIRED.items():
            nulls = table.get_column(col).is_null()
            if nulls.any():
                line = start + 1 + int(nulls.arg_true()[0])
                raise InputError(f"{self.path}: line {line}: column {number} ({col}) is empty or "
                                 "missing; every line needs 10 tab-separated narrowPeak columns "
                                 "(remove blank, header or track lines)")
        chr_ids = []
        for name in table.get_column("chr").to_list():
            cid = self._chr_ids.get(name)
            if cid is None:
                cid = self._chr_ids[name] = self._next_id
                self._next_id += 1
            chr_ids.append(cid)
        return table.select(
            chr=pl.col("chr"),
            peak_region_start=pl.col("peak_start") + pl.col("peak_summit") - self.half_width,
            peak_name=pl.col("peak_name").fill_null("None"),
            peak_id=pl.int_range(start, stop, dtype=pl.UInt32),
            chr_id=pl.Series(chr_ids, dtype=pl.UInt32),
        ).cast(PEAKS_DTYPES)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
