"""The end-of-run pass of a calibrated run: q-values for every hit, written into its partition.

A q-value of a motif's hit depends on all of that motif's hits and null hits in the run, so
it is computed once every block is finished, from what the blocks stored (``hits/`` and
``null/``), never from a worker's memory: a resume recomputes the same q-values from the same
files, and another block layout (the solver's hits do not depend on it, nor do the nulls:
:mod:`.nulls`) gives the same ones. Each hits partition is rewritten whole with its
``hit_qvalue`` (a temporary, then a rename); ``parameters.json`` records the result last, so
``calibration.result.complete`` says the q-values are those of the finished run.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from ..dataset import (
    HITS_DIR,
    NULL_DIR,
    PARAMS_FILE,
    partition_rows,
    read_json,
    scan_hits,
    scan_null,
    write_table_atomic,
)
from ..errors import InputError
from ..motifs import Motifs
from ..schema import HITS_SCHEMA, conform
from ..storage.outputs import write_json
from ..storage.urls import location, open_input
from .decoys import make_decoys
from .params import CalibrationParams
from .qvalues import lookup, qvalue_tables

#: Levels reported per motif in parameters.json and by ``nemo-dask report``.
LEVELS = (0.01, 0.05, 0.1)


def calibration_record(motifs: Motifs, params: CalibrationParams) -> dict[str, Any]:
    """The method and its parameters, for ``parameters.json`` (``nemo_dask.calibration``)."""
    record: dict[str, Any] = {
        **params.identity(), "score_column": params.column,
        "method": "per-motif target-null FDR, q = min over thresholds s <= score of "
                  "min(1, ratio * (null hits >= s + 1) / (target hits >= s))",
    }
    if params.null == "decoy":
        decoys = make_decoys(motifs, seed=params.seed, max_similarity=params.decoy_max_similarity)
        names = motifs.table.filter(pl.col("strand") == "+")["motif_name"]
        record["decoys"] = {
            name: {"similarity": round(float(sim), 4), "draws": int(n)}
            for name, sim, n in zip(names.to_list(), decoys.similarity, decoys.draws,
                                    strict=True)}
    return record


def background_part_name(block: int) -> str:
    """File name of background block ``block``'s null partition."""
    return f"part-background-{block:06d}.parquet"


def finished_background(out: Any, blocks: list[tuple[int, int, int]]) -> set[int]:
    """Background blocks whose null partition is complete."""
    d = location(out) / NULL_DIR
    return {b for b, _, _ in blocks if partition_rows(d / background_part_name(b)) is not None}


def assign_qvalues(out: str | os.PathLike[str], params: CalibrationParams,
                   n_regions: int, n_background: int | None = None) -> dict[str, Any]:
    """Compute every hit's q-value and rewrite the hits partitions with it.

    Parameters
    ----------
    out : path
        A call-hits output directory whose blocks (and background blocks) are all finished.
    params : CalibrationParams
        The run's calibration.
    n_regions, n_background : int
        Regions called, and background regions fitted (background null only): null counts
        are scaled by ``n_regions / n_background``.

    Returns
    -------
    dict
        What was assigned (also written to parameters.json as ``calibration.result``): null
        and target hit counts, the count ratio, each motif's group and per-group counts, and
        hits kept at each of :data:`LEVELS`.
    """
    out = location(out)
    column = params.column
    ratio = 1.0
    if params.null == "background":
        if not n_background:
            raise InputError(f"{params.background}: the background store has no regions")
        ratio = n_regions / n_background
    targets = (scan_hits(out).select(motif=pl.col("motif_name"), score=pl.col(column))
               .collect())
    nulls = scan_null(out).select(motif=pl.col("motif_name"), score=pl.col(column)).collect()
    groups, tables = qvalue_tables(targets, nulls, ratio=ratio, min_hits=params.min_hits)
    kept = {str(level): 0 for level in LEVELS}
    for path in sorted((out / HITS_DIR).glob("part-*.parquet")):
        with open_input(path) as f:
            hits = pl.from_arrow(pq.ParquetFile(f).read())
        q = np.full(hits.height, np.nan)
        names = hits.get_column("motif_name").to_numpy()
        scores = hits.get_column(column).to_numpy().astype(np.float64)
        for motif in np.unique(names) if hits.height else []:
            rows = names == motif
            q[rows] = lookup(tables[groups[motif]], scores[rows])
        for level in LEVELS:
            kept[str(level)] += int(np.sum(q <= level))
        hits = hits.with_columns(hit_qvalue=pl.Series(q, dtype=pl.Float32))
        write_table_atomic(conform(hits, HITS_SCHEMA), path)  # type: ignore[arg-type]
    result = {
        "complete": True, "n_target_hits": targets.height, "n_null_hits": nulls.height,
        "null_count_ratio": ratio, "kept": kept,
        "groups": {m: g for m, g in sorted(groups.items())},
        "group_counts": {g: {"targets": t.n_targets, "null": t.n_null}
                         for g, t in sorted(tables.items())},
    }
    params_path = out / PARAMS_FILE
    record = read_json(params_path)
    record.setdefault("nemo_dask", {}).setdefault("calibration", {})["result"] = result
    write_json(record, params_path)
    return result


def calibration_state(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A run's calibration record from parameters.json (None for a run without one)."""
    try:
        record = read_json(location(out) / PARAMS_FILE)
    except (OSError, ValueError):
        return None
    calib = record.get("nemo_dask", {}).get("calibration") if isinstance(record, dict) else None
    return calib if isinstance(calib, dict) else None
