"""The derived hit and QC columns (calling/columns.py) and the status codes (schema.py)."""

from __future__ import annotations

import numpy as np
import polars as pl

from nemo_dask.calling.columns import status_counts, status_words, stored_tables
from nemo_dask.motifs import load_motifs
from nemo_dask.schema import CONVERGED, FAILED, QC_STATUS, TIMEOUT
from nemo_dask.solver import stream


def test_status_codes_are_stated_once() -> None:
    assert (QC_STATUS[CONVERGED], QC_STATUS[TIMEOUT], QC_STATUS[FAILED]) == (
        "converged", "timeout", "failed")
    assert (stream.CONVERGED, stream.TIMEOUT, stream.FAILED) == (CONVERGED, TIMEOUT, FAILED)
    codes = np.array([CONVERGED, TIMEOUT, TIMEOUT, FAILED, CONVERGED], np.uint8)
    assert status_counts(codes) == (2, 1)
    words = pl.DataFrame({"s": codes}).select(status_words(pl.col("s")))["s"].to_list()
    assert words == ["converged", "timeout", "timeout", "failed", "converged"]


def test_stored_columns_follow_finemos_writer(modisco_h5) -> None:
    """finemo's writer: genome coordinates from peak_region_start + hit_start (+ trim offsets),
    the global coefficient c s^2, importances s and s^2 times the normalised ones."""
    motifs = load_motifs(modisco_h5)
    hits = pl.DataFrame({"region": [7], "motif_id": [1], "hit_start": [10],
                         "hit_coefficient": [0.5], "hit_similarity": [0.9],
                         "hit_importance": [2.0], "hit_importance_sq": [3.0]})
    qc = pl.DataFrame({"region": [7], "nll": [0.1], "dual_gap": [1e-4], "num_steps": [5],
                       "step_size": [1.0], "global_scale": [2.0],
                       "status": [TIMEOUT]}).with_columns(pl.col("status").cast(pl.UInt8))
    peaks = pl.DataFrame({"peak_id": [70], "chr": ["chr1"], "chr_id": [0],
                          "peak_region_start": [1000], "peak_name": ["p"]})
    h, q = stored_tables(hits, qc, peaks, motifs, start=7)
    row = h.row(0, named=True)
    m = motifs.table.row(1, named=True)
    assert row["start_untrimmed"] == 1010 and row["end_untrimmed"] == 1010 + motifs.width
    assert (row["start"], row["end"]) == (1010 + m["motif_start"], 1010 + m["motif_end"])
    assert (row["hit_coefficient_global"], row["hit_importance"], row["hit_importance_sq"]) == (
        2.0, 4.0, 12.0)
    assert row["peak_id"] == 70 and row["motif_name"] == m["motif_name"]
    assert q["status"].to_list() == ["timeout"]
