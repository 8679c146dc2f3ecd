"""FASTA + bigWig(s) + narrowPeak -> regions store (finemo's ``extract-regions-bw``).

Sequences come from the FASTA, projected contributions (compact (N, L)) from the bigWigs, values
exactly as finemo computes them: missing bigWig values are 0, each file's values are rounded to
float16 and averaged (with float32 intermediates, ``np.mean`` of a float16 buffer). Where finemo
differs from its own docstring this module keeps the docstring's promise or finemo's output:

* a region running past the END of its chromosome is zero-padded (finemo 0.41 crashes there);
* a region starting before position 0 is zero-padded the same way at its start and keeps the
  sequence and contributions that lie inside the chromosome (finemo 0.41 writes the whole region
  as zeros, because pyfaidx returns no sequence for a negative start, and loses its hits);
  warnings count both kinds of region.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ...errors import InputError
from ...storage.urls import recorded_path
from ..store import Regions
from ._peaks import NarrowPeaks
from ._pipeline import Source, crop_bounds, run_conversion

PathLike = str | os.PathLike[str]
_ALPHABET = np.frombuffer(b"ACGT", dtype="S1")


def one_hot(sequence: str) -> np.ndarray:
    """(4, len) int8 one-hot of a DNA string (A, C, G, T; anything else an all-zero column)."""
    chars = np.frombuffer(sequence.upper().encode("utf-8"), dtype="S1")
    return (chars[None, :] == _ALPHABET[:, None]).astype(np.int8)


def _open_fasta(path: Path, chromosomes: list[str], role: str = "the peaks file") -> Any:
    import pyfaidx

    if not path.is_file():
        raise InputError(f"{path}: FASTA file (-f) not found")
    try:
        genome = pyfaidx.Fasta(str(path), one_based_attributes=False)
    except Exception as err:  # pyfaidx raises many types (index, format, permission errors)
        raise InputError(f"{path}: cannot read the FASTA (-f) ({type(err).__name__}: {err}); "
                         "check the file, and that its .fai index is current or can be "
                         "written beside it") from None
    missing = [c for c in chromosomes if c not in genome.keys()]
    if missing:
        genome.close()
        raise InputError(f"{path}: chromosome(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}"
                         f" of {role} are absent from the FASTA (it has "
                         f"{list(genome.keys())[:5]}...); use the genome the peaks were called on "
                         "(check chr prefixes)")
    return genome


#: bigWig's magic number and the sizes of the structures libBigWig reads when it opens a file
#: (UCSC's bigWig/bigBed format, Kent et al. 2010, Bioinformatics 26:2204, supplement).
_BIGWIG_MAGIC = 0x888FFC26
_HEADER, _ZOOM_HEADER, _CHROM_TREE_HEADER, _INDEX_HEADER, _SUMMARY = 64, 24, 32, 48, 40


def _header_fits(path: Path) -> bool:
    """Whether ``path`` starts with a bigWig header whose sections all lie inside the file.

    libBigWig reads them without checking the file's size, and a file cut short inside them
    (64 to 111 bytes, for one) crashes the process; such a file is refused before it opens.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEADER)
    if len(head) < _HEADER:
        return False
    for order in "<>":
        if struct.unpack(f"{order}I", head[:4])[0] == _BIGWIG_MAGIC:
            break
    else:
        return False
    zooms, chrom_tree, data, index = struct.unpack(f"{order}H3Q", head[6:32])
    summary = struct.unpack(f"{order}Q", head[44:52])[0]
    ends = [_HEADER + zooms * _ZOOM_HEADER, chrom_tree + _CHROM_TREE_HEADER, data + 4,
            index + _INDEX_HEADER, summary + _SUMMARY if summary else 0]
    return max(ends) <= size


@contextmanager
def _c_stderr_held() -> Iterator[None]:
    """Hold what C code writes to file descriptor 2 while the block runs; replay it if the
    block succeeds, drop it if it raises.

    libBigWig reports a file it cannot open on stderr (``[bwHdrRead] ...``) as well as by
    failing; our one-line error replaces those lines rather than following them.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok and os.lseek(held.fileno(), 0, os.SEEK_CUR):  # the C code wrote something
                held.seek(0)
                os.write(2, held.read())


def _open_bigwigs(paths: list[Path], chromosomes: list[str],
                  role: str = "the peaks file") -> list[Any]:
    import pyBigWig

    bws: list[Any] = []
    try:
        for p in paths:
            if not p.is_file():
                raise InputError(f"{p}: bigWig file (-b) not found")
            bw = None
            if _header_fits(p):
                try:
                    with _c_stderr_held():
                        bw = pyBigWig.open(str(p))
                        if bw is None:  # failed without raising: drop what it printed too
                            raise RuntimeError
                except RuntimeError:
                    bw = None
            if bw is None or not bw.isBigWig():
                raise InputError(f"{p}: not a readable bigWig file (damaged, truncated or another "
                                 "format); re-create it")
            bws.append(bw)
            sizes = bw.chroms()
            missing = [c for c in chromosomes if c not in sizes]
            if missing:
                raise InputError(f"{p}: chromosome(s) {missing[:5]} of {role} are absent "
                                 f"from the bigWig (it has {list(sizes)[:5]}...); use a bigWig "
                                 "made on the same genome as the FASTA")
    except BaseException:
        for bw in bws:
            bw.close()
        raise
    return bws


def fill_window(genome: Any, bws: list[Any], chrom: str, begin: int, seq: np.ndarray,
                contrib: np.ndarray, buffer: np.ndarray, notes: dict[str, int],
                label: str) -> None:
    """Read ``chrom:[begin, begin + L)`` into ``seq`` (4, L) and ``contrib`` (L,), in place.

    The part inside the chromosome goes to its place in the window; the parts before 0 and
    past the end stay zero (both ends padded alike, counted in ``notes``). Missing bigWig
    values are 0; several bigWigs are averaged as finemo does (``np.mean`` of the float16
    ``buffer`` (n_bigwigs, L), float32 intermediates).

    Raises
    ------
    InputError
        The FASTA or a bigWig cannot be read there.
    """
    width = seq.shape[1]
    length = len(genome[chrom])
    lo, hi = max(begin, 0), min(begin + width, length)
    if begin < 0:
        notes["regions_before_chromosome_start"] += 1
    if begin + width > length:
        notes["regions_past_chromosome_end"] += 1
    if hi <= lo:
        return
    a, b = lo - begin, hi - begin
    try:
        seq[:, a:b] = one_hot(genome[chrom][lo:hi].seq)
        buffer[:] = 0
        for j, bw in enumerate(bws):
            bw_end = min(hi, bw.chroms(chrom))
            if bw_end > lo:
                values = np.asarray(bw.values(chrom, lo, bw_end, numpy=True))
                buffer[j, : bw_end - lo] = np.nan_to_num(values, nan=0.0)
    except (RuntimeError, OSError, ValueError) as err:
        raise InputError(f"reading {chrom}:{lo}-{hi} ({label}) failed "
                         f"({type(err).__name__}: {err}); the FASTA or a bigWig is "
                         "damaged or its index is stale") from None
    contrib[a:b] = np.mean(buffer[:, : b - a], axis=0)


def window_reader(genome: Any, bws: list[Any], width: int, contrib_dtype: str, label: str
                  ) -> tuple[Callable[..., tuple[np.ndarray, list[np.ndarray]]], dict[str, int]]:
    """The converter pipeline's ``read`` for windows of ``width`` bp at the peak table's
    (chr, peak_region_start), filled by :func:`fill_window`, and the counts it keeps of windows
    that reach past either chromosome end (for the warnings). ``label`` names a window in
    messages ("region", "window")."""
    notes = {"regions_past_chromosome_end": 0, "regions_before_chromosome_start": 0}
    buf_dtype = np.float16 if contrib_dtype == "float16" else np.float32
    buffer = np.zeros((len(bws), width), dtype=buf_dtype)

    def read(start: int, stop: int, chunk: pl.DataFrame | None) -> tuple[np.ndarray,
                                                                       list[np.ndarray]]:
        assert chunk is not None
        seqs = np.zeros((stop - start, 4, width), dtype=np.int8)
        contribs = np.zeros((stop - start, width), dtype=buf_dtype)
        rows = zip(chunk.get_column("chr").to_list(),
                   chunk.get_column("peak_region_start").to_list(), strict=True)
        for i, (chrom, begin) in enumerate(rows):
            fill_window(genome, bws, chrom, int(begin), seqs[i], contribs[i], buffer, notes,
                        f"{label} {start + i}")
        return seqs, [contribs]

    return read, notes


def convert_bigwig(
    peaks: PathLike,
    fasta: PathLike,
    bigwigs: PathLike | Sequence[PathLike],
    out: PathLike,
    *,
    chrom_order: PathLike | None = None,
    region_width: int = 1000,
    chunk_size: int | None = None,
    contrib_dtype: str = "float16",
    overwrite: bool = False,
    progress: bool | None = None,
) -> Regions:
    """Extract sequences and projected contributions around peak summits into a regions store.

    Parameters
    ----------
    peaks : path
        narrowPeak file (``-p``); regions are ``[start + summit - L/2, start + summit + L/2)``.
    fasta : path
        Genome FASTA (``-f``); a missing ``.fai`` index is created beside it (as pyfaidx does).
    bigwigs : path or list of paths
        bigWigs of projected contributions (``-b``), averaged.
    out : path or URL
        The store to create; contributions are compact (N, L).
    chrom_order, region_width, chunk_size, contrib_dtype, overwrite, progress
        As :func:`nemo_dask.regions.convert.convert_chrombpnet_h5`.
    """
    bw_paths = [Path(p) for p in ([bigwigs] if isinstance(bigwigs, (str, os.PathLike))
                                  else bigwigs)]
    if not bw_paths:
        raise InputError("bigwig: give at least one bigWig file with -b")
    crop_bounds(region_width, region_width, "bigwig")  # only validates -w
    table = NarrowPeaks(peaks, chrom_order, region_width // 2)
    genome = _open_fasta(Path(fasta), table.chromosomes)
    try:
        bws = _open_bigwigs(bw_paths, table.chromosomes)
    except BaseException:
        genome.close()
        raise
    width = region_width
    read, notes = window_reader(genome, bws, width, contrib_dtype, "region")

    def close() -> None:
        genome.close()
        for bw in bws:
            bw.close()

    source = Source(
        n_regions=table.n_rows, width=width, contrib_kind="projected", read=read,
        seq_label=f"{fasta} (sequences)", contrib_labels=[f"bigWig(s) {[str(p) for p in bw_paths]}"],
        attrs={"source": {"format": "bigwig", "peaks": recorded_path(peaks),
                          "fasta": recorded_path(fasta),
                          "bigwigs": [recorded_path(p) for p in bw_paths],
                          "chrom_order": recorded_path(chrom_order)},
               # The genome's sizes, for browser tracks of the hits (nemo-dask tracks).
               "chrom_sizes": {str(k): len(genome[k]) for k in genome.keys()},
               "parameters": {"region_width": region_width, "contrib_dtype": contrib_dtype,
                              "chunk_size": chunk_size}},
        combine=lambda arrays, dtype: arrays[0].astype(dtype, copy=False),
        close=close, notes=notes,
    )
    regions = run_conversion(source, out, peaks=table, chunk_size=chunk_size,
                             contrib_dtype=contrib_dtype, overwrite=overwrite,
                             progress=progress, desc="convert bigwig")
    if notes["regions_past_chromosome_end"]:
        warnings.warn(f"{notes['regions_past_chromosome_end']} region(s) run past the end of "
                      "their chromosome and were zero-padded there (finemo 0.41 crashes on "
                      "them)", stacklevel=2)
    if notes["regions_before_chromosome_start"]:
        warnings.warn(f"{notes['regions_before_chromosome_start']} region(s) start before "
                      "position 0 and were zero-padded before it (finemo 0.41 writes them all "
                      f"zero); their summits are closer than {width // 2} bp to the chromosome "
                      "start", stacklevel=2)
    return regions
