"""finemo 0.41 output directory (or a nemo_dask export of one) -> nemo_dask's Parquet dataset.

Lets results of a finemo run be exported, collapsed, intersected or reported like our own, and
gives the export a round-trip test (TSV -> dataset -> TSV). The raw keys finemo drops are
recovered from its other files: ``motif_id`` from ``motif_data.tsv`` (motif name and strand),
``hit_start`` = ``start_untrimmed`` - the region's ``peak_region_start`` (``peaks_qc.tsv``), and
``chr_id`` from the chromosome order of ``peaks_qc.tsv`` (finemo sorts that file by chr_id, so
first appearance there is chr_id order, with or without a chromosome-order file). Without
coordinates (chr ``NA``) finemo's chr_id is the region index, i.e. ``peak_id``.

An export directory is read from its ``hits_extra.tsv`` when it has one: its ``hit_qvalue``
goes to the dataset's ``qvalues/`` partitions (recorded in the manifest, so the imported run
has q-values), its ``motif_label`` to the motif table (with the matches of
``motif_matches.tsv`` when that is there).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from .. import config
from ..dataset import (
    HITS_DIR,
    QVALUES_DIR,
    is_output_dir,
    part_name,
    write_manifest,
    write_motifs,
    write_partitions,
    write_stamped,
)
from ..errors import InputError, OutputExistsError
from ..manifest import partition_stamp
from ..matching.labels import LABEL
from ..schema import CONVERGED, QC_STATUS, QVALUE, QVALUES_SCHEMA, TIMEOUT
from ..storage.compressed import read_decompressed
from ..storage.outputs import (
    make_output_dir,
    output_dir,
    remove_owned,
    write_bytes,
    write_json,
)
from ..storage.urls import location
from .directory import finemo_file, finemo_files, read_json_file, read_npy_file
from .formats import (
    CWMS_FILE,
    EXTRA_HITS_DTYPES,
    FINEMO_HITS_DTYPES,
    FINEMO_MOTIFS_DTYPES,
    FINEMO_QC_DTYPES,
    HITS_FILE,
    MOTIF_DATA_FILE,
    MOTIF_MATCHES_FILE,
    NA,
    PARAMS_FILE,
    QC_FILE,
)
from .read import hits_file, read_tsv


class ImportResult(NamedTuple):
    """What :func:`import_finemo` wrote."""

    out: Path
    n_hits: int
    n_regions: int
    n_blocks: int


def import_finemo(finemo_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  regions_per_partition: int | None = None,
                  overwrite: bool = False) -> ImportResult:
    """Turn a finemo ``call-hits`` output directory into a nemo_dask output directory.

    Parameters
    ----------
    finemo_dir : path or URL
        Holds finemo's hits.tsv, peaks_qc.tsv, motif_data.tsv, motif_cwms.npy, parameters.json,
        each plain or compressed (``hits.tsv.gz``, ...; :mod:`.directory`).
    out : path
        The new output directory (must not exist or be empty unless ``overwrite``; with
        ``overwrite`` it may hold nemo_dask's own output, which is replaced, but nothing else).
    regions_per_partition : int, optional
        Regions (by peak_id) per Parquet partition; default
        ``nemo_dask.import.regions-per-partition`` in dask config (1000).
    overwrite : bool
        Replace a non-empty ``out`` that holds nemo_dask's own output.

    Raises
    ------
    InputError
        ``finemo_dir`` lacks a file, a table's header is not finemo's, or hits do not match
        its QC or motif table.
    OutputExistsError
        ``out`` is not empty and ``overwrite`` is False, or it holds something else.
    """
    src, out = location(finemo_dir), Path(out)
    files = finemo_files(src, (HITS_FILE, QC_FILE, MOTIF_DATA_FILE, CWMS_FILE, PARAMS_FILE))
    # An export directory's hits with its extra columns (hits_extra.tsv) when it has them.
    files[HITS_FILE] = hits_file(src) or files[HITS_FILE]
    block_size = (int(config.get("import.regions-per-partition"))
                  if regions_per_partition is None else regions_per_partition)
    if block_size < 1:
        raise InputError("regions_per_partition must be a positive number of regions, got "
                         f"{block_size}")
    real = output_dir(out, "imported dataset directory")
    if real.exists() and any(real.iterdir()):
        if not overwrite:
            advice = ("choose a new directory or pass overwrite=True (it holds nemo-dask's own "
                      "output)" if is_output_dir(real) else "choose a new directory (it is "
                      "not nemo-dask's output, so overwrite=True would not replace it)")
            raise OutputExistsError(f"{out} exists and is not empty; {advice}")
        # Only our own output goes, also when reached through a link (the link stays).
        remove_owned(real, is_output_dir, "output directory")

    params = read_json_file(files[PARAMS_FILE])
    motifs = read_tsv(files[MOTIF_DATA_FILE], FINEMO_MOTIFS_DTYPES, kind=MOTIF_DATA_FILE)
    qc = _qc_table(read_tsv(files[QC_FILE], FINEMO_QC_DTYPES, kind=QC_FILE), params)
    raw = read_tsv(files[HITS_FILE], FINEMO_HITS_DTYPES, kind=HITS_FILE)
    extras = [c for c in EXTRA_HITS_DTYPES if c in raw.columns]
    if LABEL in extras:
        motifs = _labelled(motifs, raw, src)
    hits = _hits_table(raw.drop(LABEL, strict=False), qc, motifs, files)

    n_regions = int(params.get("num_regions") or 0)
    if qc.height:
        n_regions = max(n_regions, int(qc["peak_id"].max()) + 1)  # type: ignore[arg-type]
    make_output_dir(out, "imported dataset directory")
    finished: dict[int, dict[str, int]] = {}
    block_of = pl.col("peak_id") // block_size
    hits_by = hits.with_columns(_b=block_of).partition_by("_b", as_dict=True, include_key=False)
    qc_by = qc.with_columns(_b=block_of).partition_by("_b", as_dict=True, include_key=False)
    n_blocks = max(1, -(-n_regions // block_size))
    qvalues: dict[str, dict] = {}
    for b in range(n_blocks):
        h = hits_by.get((b,), hits.clear())
        q = qc_by.get((b,), qc.clear())
        start = b * block_size
        stop = min(start + block_size, max(n_regions, 1))
        # (the q-values, in the hits partition's row order: conform keeps the rows' order)
        finished[b] = write_partitions(out, b, h, q, run="imported", start=start, stop=stop)
        if QVALUE in extras:
            sha = finished[b]["files"][HITS_DIR]["sha256"]
            rec = write_stamped(out / QVALUES_DIR / part_name(b),
                                pa.table({QVALUE: h[QVALUE].to_arrow()}, schema=QVALUES_SCHEMA),
                                partition_stamp("imported", b, start, stop, QVALUES_DIR,
                                                hits_sha256=sha))
            qvalues[str(b)] = {**rec, "hits_sha256": sha}
    write_motifs(out, motifs)
    write_bytes(out / CWMS_FILE, _npy_bytes(read_npy_file(files[CWMS_FILE])))
    write_json(params | {"nemo_dask": {"imported_from": str(src)}}, out / PARAMS_FILE)
    sections = ({"qvalues": {"calibration": {"imported_from": str(src)},
                             "files": qvalues, "result": {}}} if QVALUE in extras else {})
    write_manifest(out, "imported", n_blocks, finished, complete=True, sections=sections)
    return ImportResult(out=out, n_hits=hits.height, n_regions=qc.height, n_blocks=n_blocks)


def _labelled(motifs: pl.DataFrame, hits: pl.DataFrame, src: Any) -> pl.DataFrame:
    """The motif table with an export's labels (a motif without hits: its name) and, from
    ``motif_matches.tsv`` when it is there, its TOMTOM matches (best first; a reverse-strand
    row's orientations flipped, as :mod:`nemo_dask.matching.annotate` writes them)."""
    labels = dict(hits.select("motif_name", LABEL).unique("motif_name").iter_rows())
    lists = ("match_id", "match_name", "match_pvalue", "match_qvalue", "match_orientation")
    table = motifs.with_columns(pl.col("motif_name").replace_strict(
        labels, default=pl.col("motif_name"), return_dtype=pl.String).alias(LABEL))
    path = finemo_file(src, MOTIF_MATCHES_FILE)
    if path is not None:
        matches = (pl.read_csv(read_decompressed(path), separator="\t", quote_char=None,
                               schema_overrides={"match_id": pl.String, "match_name": pl.String,
                                                 "match_orientation": pl.String})
                   .sort("motif_name", "rank")
                   .group_by("motif_name", maintain_order=True)
                   .agg(*(pl.col(c) for c in lists)))
        table = table.join(matches, on="motif_name", how="left", maintain_order="left")
        flip = pl.col("match_orientation").list.eval(
            pl.element().replace_strict({"+": "-", "-": "+"}, default=pl.element()))
        table = table.with_columns(pl.when(pl.col("strand") == "-").then(flip)
                                   .otherwise(pl.col("match_orientation"))
                                   .alias("match_orientation"))
    else:
        table = table.with_columns(pl.lit([], pl.List(pl.String)).alias(c) for c in lists)
    return table.with_columns(pl.col(c).fill_null([]) for c in lists)


def _qc_table(qc: pl.DataFrame, params: dict) -> pl.DataFrame:
    """peaks_qc.tsv -> QC_SCHEMA rows (status from num_steps, chr_id from the file's order)."""
    no_coords = qc.height > 0 and bool((qc["chr"] == NA).all())
    if no_coords:
        chr_id = pl.col("peak_id")
    else:
        order = qc["chr"].unique(maintain_order=True).to_list()
        chr_id = pl.col("chr").replace_strict(order, list(range(len(order))),
                                              return_dtype=pl.UInt32)
    max_steps = params.get("max_steps")
    timeout = (pl.col("num_steps") >= max_steps) if max_steps is not None else pl.lit(False)
    return qc.with_columns(
        chr_id=chr_id.cast(pl.UInt32),
        status=pl.when(timeout).then(pl.lit(QC_STATUS[TIMEOUT]))
        .otherwise(pl.lit(QC_STATUS[CONVERGED])),
    ).sort("peak_id")


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _hits_table(hits: pl.DataFrame, qc: pl.DataFrame, motifs: pl.DataFrame,
                files: dict[str, Any]) -> pl.DataFrame:
    """hits.tsv -> HITS_SCHEMA rows, with motif_id, hit_start and chr_id recovered."""
    keyed = (
        hits.drop("hit_correlation")
        .join(qc.select("peak_id", "peak_region_start", "chr_id"), on="peak_id", how="left")
        .join(motifs.select("motif_name", "strand", "motif_id"), on=["motif_name", "strand"],
              how="left")
        .with_columns(hit_start=(pl.col("start_untrimmed") - pl.col("peak_region_start"))
                      .cast(pl.Int32))
    )
    for col, other in (("peak_region_start", QC_FILE), ("motif_id", MOTIF_DATA_FILE)):
        n = keyed[col].null_count()
        if n:
            raise InputError(f"{files[HITS_FILE]}: {n} hits have no match in {files[other]} "
                             f"(field {col}); the files must come from the same finemo run")
    return keyed.drop("peak_region_start")


__all__ = ("ImportResult", "import_finemo")
