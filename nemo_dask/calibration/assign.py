"""The end-of-run pass of a run with q-values: every hit's q-value, in its own partitions.

A q-value of a motif's hit depends on all of that motif's hits and null hits in the run, so
it is computed once every block is finished, from what the blocks stored (``hits/``, and
``null/`` or ``null_background/`` for a fitted null), never from a worker's memory: a resume
recomputes the same q-values from the same files, and another block layout (the solver's hits
do not depend on it, nor do the nulls: :mod:`.nulls`) gives the same ones.

Finished hits partitions are never rewritten (a block's output is complete or absent, and
the manifest's SHA-256 of each stays true): the q-values go to ``qvalues/part-<block>``, one
float per hit in its hits partition's row order, each stamped with the SHA-256 of the hits
file it belongs to. Then the manifest records them (its ``qvalues`` section; the run is
``complete`` only from here), and last ``parameters.json`` says how they were made
(``nemo_dask.calibration``). A driver killed in between leaves a run whose manifest does not
list the q-values: readers show none, export refuses it as incomplete, and the rerun of the
same command computes them again (identically) and finishes it.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ..dataset import (
    BACKGROUND_DIR,
    HITS_DIR,
    NULL_DIR,
    PARAMS_FILE,
    QVALUES_DIR,
    part_name,
    read_json,
    write_stamped,
)
from ..errors import CorruptDataError
from ..manifest import partition_stamp, read_bytes
from ..motifs import Motifs
from ..schema import QVALUE, QVALUES_SCHEMA
from ..storage.outputs import write_json
from ..storage.urls import location
from .estimate import run_qvalues
from .params import CalibrationParams

#: Levels reported per motif in parameters.json and by ``nemo-dask report``.
LEVELS = (0.01, 0.05, 0.1)
#: Columns of a hits (or null) partition the pass reads.
_COLUMNS = ("motif_id", "motif_name", "hit_start")


def calibration_record(motifs: Motifs, params: CalibrationParams) -> dict[str, Any]:
    """The method and its parameters, for ``parameters.json`` (``nemo_dask.calibration``)."""
    from .decoys import make_decoys

    record: dict[str, Any] = {
        **params.identity(), "score_column": params.column,
        "method": "per-motif (and, with the flank null, per-stratum) target-null FDR: q = min "
                  "over thresholds s <= score of min(1, (weighted null hits >= s + one) / "
                  "(target hits >= s)); several nulls: the largest estimate",
    }
    if params.fitted == "decoy":
        decoys = make_decoys(motifs, seed=params.seed, max_similarity=params.decoy_max_similarity)
        names = motifs.table.filter(pl.col("strand") == "+")["motif_name"]
        record["decoys"] = {
            name: {"similarity": round(float(sim), 4), "draws": int(n)}
            for name, sim, n in zip(names.to_list(), decoys.similarity, decoys.draws,
                                    strict=True)}
    return record


def _read(out: Any, table: str, block: int, rec: dict[str, Any] | None,
          columns: tuple[str, ...]) -> pl.DataFrame:
    """``columns`` of one partition, checked against its manifest record first."""
    path = location(out) / table / part_name(block)
    data = read_bytes(path)
    if data is None:
        raise CorruptDataError(f"{path} is missing: rerun the same call-hits to compute its "
                               "block again")
    if rec is not None and hashlib.sha256(data).hexdigest() != rec.get("sha256"):
        raise CorruptDataError(f"{path} changed after it was written (its SHA-256 is not the "
                               "manifest's): rerun the same call-hits to compute its block again")
    return pl.from_arrow(pq.ParquetFile(io.BytesIO(data)).read(columns=list(columns)))  # type: ignore[return-value]


def assign_qvalues(out: str | os.PathLike[str], run: str, blocks: list[tuple[int, int, int]],
                   finished: dict[int, dict[str, Any]], params: CalibrationParams, *,
                   motifs: Motifs, width: int,
                   background: dict[int, dict[str, Any]] | None = None,
                   n_background: int | None = None) -> dict[str, Any]:
    """Compute every hit's q-value and write the ``qvalues/`` partitions.

    Parameters
    ----------
    out : path
        A call-hits output directory whose blocks (and background blocks) are all finished.
    run : str
        The run's fingerprint (stamped into each partition).
    blocks, finished
        The run's layout and each block's manifest entry (its files' records).
    params : CalibrationParams
        The run's calibration.
    motifs : Motifs
        The run's motifs; ``width`` is the region width L.
    background, n_background
        A background null's finished background blocks (their entries) and its regions.

    Returns
    -------
    dict
        The manifest's ``qvalues`` section: ``calibration`` (what the q-values are of),
        ``files`` (block -> rows, bytes, SHA-256 and the hits file's SHA-256) and ``result``
        (counts, also written to parameters.json).
    """
    out = location(out)
    column = params.column
    parts, sizes = [], []
    for block, _, _ in blocks:
        rec = (finished[block].get("files") or {}).get(HITS_DIR)
        frame = _read(out, HITS_DIR, block, rec, (*_COLUMNS, column))
        parts.append(frame)
        sizes.append(frame.height)
    hits = pl.concat(parts) if parts else pl.DataFrame()
    fitted, ratio = None, 1.0
    if params.fitted in ("decoy", "shuffle"):
        fitted = pl.concat([_read(out, NULL_DIR, b, (finished[b].get("files") or {}).get(
            NULL_DIR), (*_COLUMNS, column)) for b, _, _ in blocks])
    elif params.fitted == "background":
        bg = background or {}
        fitted = pl.concat([_read(out, BACKGROUND_DIR, b, (bg[b].get("files") or {}).get(
            BACKGROUND_DIR), (*_COLUMNS, column)) for b in sorted(bg)])
        ratio = sum(e - s for _, s, e in blocks) / max(1, n_background or 0)
    est = run_qvalues(hits, fitted, params, motifs=motifs.table, width=width,
                      motif_width=motifs.width, ratio=ratio)
    files: dict[str, dict[str, Any]] = {}
    offset = 0
    for (block, start, stop), n in zip(blocks, sizes, strict=True):
        q = pa.array(est.q[offset:offset + n].astype(np.float32), type=pa.float32())
        offset += n
        hits_sha = ((finished[block].get("files") or {}).get(HITS_DIR) or {}).get("sha256")
        stamp = partition_stamp(run, block, start, stop, QVALUES_DIR, hits_sha256=hits_sha)
        rec = write_stamped(out / QVALUES_DIR / part_name(block),
                            pa.Table.from_arrays([q], schema=QVALUES_SCHEMA), stamp)
        files[str(block)] = {**rec, "hits_sha256": hits_sha}
    kept = {str(level): int(np.sum(est.q <= level)) for level in LEVELS}
    result = {"n_target_hits": hits.height, "n_null_hits": est.n_null,
              "null_count_ratio": ratio, "kept": kept, **est.record()}
    return {"calibration": params.identity(), "files": files, "result": result}


def record_calibration(out: str | os.PathLike[str], record: dict[str, Any] | None) -> None:
    """Write (or, with None, remove) ``nemo_dask.calibration`` of ``parameters.json``."""
    path = location(out) / PARAMS_FILE
    params = read_json(path)
    section = params.setdefault("nemo_dask", {})
    if record is None and "calibration" not in section:
        return
    if record is None:
        del section["calibration"]
    else:
        section["calibration"] = record
    write_json(params, path)


def calibration_state(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A run's calibration record from parameters.json (None for a run without one)."""
    try:
        record = read_json(location(out) / PARAMS_FILE)
    except (OSError, ValueError):
        return None
    calib = record.get("nemo_dask", {}).get("calibration") if isinstance(record, dict) else None
    return calib if isinstance(calib, dict) else None


__all__ = ("LEVELS", "QVALUE", "assign_qvalues", "calibration_record", "calibration_state",
           "record_calibration")
