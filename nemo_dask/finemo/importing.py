"""finemo 0.41 output directory -> nemo_dask's Parquet dataset.

Lets results of a finemo run be exported, collapsed, intersected or reported like our own, and
gives the export a round-trip test (TSV -> dataset -> TSV). The raw keys finemo drops are
recovered from its other files: ``motif_id`` from ``motif_data.tsv`` (motif name and strand),
``hit_start`` = ``start_untrimmed`` - the region's ``peak_region_start`` (``peaks_qc.tsv``), and
``chr_id`` from the chromosome order of ``peaks_qc.tsv`` (finemo sorts that file by chr_id, so
first appearance there is chr_id order, with or without a chromosome-order file). Without
coordinates (chr ``NA``) finemo's chr_id is the region index, i.e. ``peak_id``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

import polars as pl

from ..dataset import (
    CWMS_FILE,
    PARAMS_FILE,
    read_json,
    write_block,
    write_json_atomic,
    write_motifs,
)
from ..errors import InputError, OutputExistsError
from ..schema import FINEMO_HITS_DTYPES, MOTIFS_SCHEMA, polars_schema
from .export import HITS_FILE, MOTIF_DATA_FILE, NA, QC_FILE

#: finemo's ``peaks_qc.tsv`` dtypes.
_QC_DTYPES: dict[str, pl.DataType] = {
    "nll": pl.Float32, "dual_gap": pl.Float32, "num_steps": pl.Int32, "step_size": pl.Float32,
    "global_scale": pl.Float32, "peak_id": pl.UInt32, "chr": pl.String,
    "peak_region_start": pl.Int32, "peak_name": pl.String,
}
DEFAULT_BLOCK_SIZE = 1000


class ImportResult(NamedTuple):
    """What :func:`import_finemo` wrote."""

    out: Path
    n_hits: int
    n_regions: int
    n_blocks: int


def import_finemo(finemo_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  block_size: int = DEFAULT_BLOCK_SIZE, overwrite: bool = False) -> ImportResult:
    """Turn a finemo ``call-hits`` output directory into a nemo_dask output directory.

    Parameters
    ----------
    finemo_dir : path
        Holds finemo's hits.tsv, peaks_qc.tsv, motif_data.tsv, motif_cwms.npy, parameters.json.
    out : path
        The new output directory (must not exist or be empty unless ``overwrite``).
    block_size : int
        Regions (by peak_id) per partition.
    """
    src, out = Path(finemo_dir), Path(out)
    missing = [n for n in (HITS_FILE, QC_FILE, MOTIF_DATA_FILE, CWMS_FILE, PARAMS_FILE)
               if not (src / n).is_file()]
    if missing:
        raise InputError(f"{src} is not a finemo call-hits output directory: it lacks "
                         f"{', '.join(missing)}")
    if block_size < 1:
        raise InputError(f"block_size must be a positive number of regions, got {block_size}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out} exists and is not empty; choose a new directory or "
                                    "pass overwrite=True")
        shutil.rmtree(out)

    params = read_json(src / PARAMS_FILE)
    motifs = _read_tsv(src / MOTIF_DATA_FILE, polars_schema(MOTIFS_SCHEMA))
    qc = _qc_table(_read_tsv(src / QC_FILE, _QC_DTYPES), params)
    hits = _hits_table(_read_tsv(src / HITS_FILE, FINEMO_HITS_DTYPES), qc, motifs, src)

    n_regions = int(params.get("num_regions") or 0)
    if qc.height:
        n_regions = max(n_regions, int(qc["peak_id"].max()) + 1)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    finished: dict[int, dict[str, int]] = {}
    block_of = pl.col("peak_id") // block_size
    hits_by = hits.with_columns(_b=block_of).partition_by("_b", as_dict=True, include_key=False)
    qc_by = qc.with_columns(_b=block_of).partition_by("_b", as_dict=True, include_key=False)
    n_blocks = max(1, -(-n_regions // block_size))
    for b in range(n_blocks):
        h = hits_by.get((b,), hits.clear())
        q = qc_by.get((b,), qc.clear())
        n_h, n_q = write_block(out, b, h, q)
        start = b * block_size
        finished[b] = {"start": start, "stop": min(start + block_size, max(n_regions, 1)),
                       "hits": n_h, "regions": n_q}
    write_motifs(out, motifs)
    shutil.copyfile(src / CWMS_FILE, out / CWMS_FILE)
    write_json_atomic(params | {"nemo_dask": {"imported_from": str(src.resolve())}},
                      out / PARAMS_FILE)
    from ..calling.output import write_manifest

    write_manifest(out, "imported", n_blocks, finished, complete=True)
    return ImportResult(out=out, n_hits=hits.height, n_regions=qc.height, n_blocks=n_blocks)


def _read_tsv(path: Path, schema: dict[str, pl.DataType] | pl.Schema) -> pl.DataFrame:
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
    if header != list(schema):
        raise InputError(f"{path}: expected finemo's columns {list(schema)}, found {header}; "
                         "pass the files finemo call-hits wrote, unmodified")
    try:
        return pl.read_csv(path, separator="\t", quote_char=None, schema=dict(schema))
    except pl.exceptions.PolarsError as err:
        raise InputError(f"{path}: not a readable finemo table ({err})") from err


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
        status=pl.when(timeout).then(pl.lit("timeout")).otherwise(pl.lit("converged")),
    ).sort("peak_id")


def _hits_table(hits: pl.DataFrame, qc: pl.DataFrame, motifs: pl.DataFrame,
                src: Path) -> pl.DataFrame:
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
            raise InputError(f"{src / HITS_FILE}: {n} hits have no match in {src / other} "
                             f"(field {col}); the files must come from the same finemo run")
    return keyed.drop("peak_region_start")


__all__ = ("DEFAULT_BLOCK_SIZE", "ImportResult", "import_finemo")
