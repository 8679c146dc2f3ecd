"""The whole pipeline as a user runs it: convert -> call-hits -> export -> report, on the CLI.

Our own call-hits run, exported, must reproduce finemo 0.41's files for the fixture.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import max_rel

from nemo_dask.cli import main

# The whole pipeline (convert, call-hits on a cluster, export, report): `-m 'not slow'` skips it.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, data_dir) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("e2e")
    paths = {"store": d / "regions.zarr", "out": d / "out", "export": d / "export",
             "report": d / "report"}
    assert main(["convert", "npz", "-r", str(data_dir / "regions.npz"), "-o", str(paths["store"]),
                 "--chunk-size", "50", "--no-progress"]) == 0
    assert main(["call-hits", "-r", str(paths["store"]), "-m", str(data_dir / "modisco.h5"),
                 "-o", str(paths["out"]), "--workers", "2", "--no-progress"]) == 0
    assert main(["export", "-H", str(paths["out"]), "-o", str(paths["export"])]) == 0
    return paths


def _tsv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t", infer_schema_length=None)


@pytest.mark.parametrize("name", ["hits.tsv", "hits_unique.tsv"])
def test_exported_hits_equal_finemo(pipeline, data_dir, name):
    ours, ref = _tsv(pipeline["export"] / name), _tsv(data_dir / "finemo_out" / name)
    assert ours.columns == ref.columns
    assert ours.dtypes == ref.dtypes
    assert ours.height == ref.height
    key = ["chr", "start", "end", "motif_name", "strand"]
    assert ours.select(["chr", "start"]).equals(ref.select(["chr", "start"])), "sort order"
    assert sorted(ours.select(key).rows()) == sorted(ref.select(key).rows())
    # hits_unique keeps one of several identical hits of overlapping regions and finemo's pick
    # is arbitrary: each of our rows must be finemo's hit of the same region.
    ref_all = _tsv(data_dir / "finemo_out" / "hits.tsv")
    joined = ours.join(ref_all, on=[*key, "peak_id"], how="inner", suffix="_ref")
    assert joined.height == ours.height
    assert max_rel(joined["hit_coefficient"], joined["hit_coefficient_ref"]) < 1e-3
    assert max_rel(joined["hit_coefficient_global"], joined["hit_coefficient_global_ref"]) < 1e-3
    for col in ("hit_similarity", "hit_correlation", "hit_importance", "hit_importance_sq"):
        assert max_rel(joined[col], joined[f"{col}_ref"]) < 1e-5, col


def test_exported_bed_qc_and_motifs_equal_finemo(pipeline, data_dir):
    ref_dir = data_dir / "finemo_out"
    bed = pl.read_csv(pipeline["export"] / "hits.bed", separator="\t", has_header=False)
    ref_bed = pl.read_csv(ref_dir / "hits.bed", separator="\t", has_header=False)
    assert sorted(bed.rows()) == sorted(ref_bed.rows())
    for name in ("motif_data.tsv", "motif_cwms.npy"):
        assert (pipeline["export"] / name).read_bytes() == (ref_dir / name).read_bytes(), name
    qc, ref_qc = _tsv(pipeline["export"] / "peaks_qc.tsv"), _tsv(ref_dir / "peaks_qc.tsv")
    assert qc.columns == ref_qc.columns and qc.height == ref_qc.height == 350
    assert qc["peak_id"].to_list() == ref_qc["peak_id"].to_list()
    assert (qc["num_steps"] == ref_qc["num_steps"]).all()
    assert max_rel(qc["global_scale"], ref_qc["global_scale"]) < 1e-6


def test_report_on_our_run_matches_finemo(pipeline, data_dir):
    assert main(["report", "-r", str(pipeline["store"]), "-H", str(pipeline["out"]), "-o",
                 str(pipeline["report"]), "-m", str(data_dir / "modisco.h5"), "-W", "400"]) == 0
    assert (pipeline["report"] / "report.html").exists()
    ours = _tsv(pipeline["report"] / "motif_report.tsv")
    ref = _tsv(data_dir / "finemo_report_tables" / "motif_report.tsv")
    assert ours.height == ref.height
    joined = ours.join(ref, on="motif_name", suffix="_ref")
    for col in ref.columns:
        if col == "motif_name" or col not in ours.columns:
            continue
        if ref[col].dtype.is_integer():
            assert (joined[col] == joined[f"{col}_ref"]).all(), col
        elif ref[col].dtype.is_float():
            # finemo computes CWM similarities from float16 regions (see report tests)
            tol = 5e-3 if "cwm" in col else 1e-6
            diff = (joined[col] - joined[f"{col}_ref"]).abs().max()
            assert diff is None or diff < tol, col
