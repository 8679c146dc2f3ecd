"""The whole pipeline as a user runs it: convert -> call-hits -> export -> report, on the CLI.

Our own call-hits run, exported, must reproduce finemo 0.41's files recorded for the fixture,
under the parity rule of nemo_dask.compare (knife-edge regions: see tests/parity/).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import max_rel

from nemo_dask.cli import main
from nemo_dask.compare import HitComparison, compare_hits

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


KEY = ["chr", "start", "end", "motif_name", "strand"]
BED_COLUMNS = ["chr", "start", "end", "motif_name", "score", "strand"]


@pytest.fixture(scope="module")
def parity(pipeline, data_dir) -> HitComparison:
    """Our exported files against finemo's recorded ones, under the one parity rule."""
    return compare_hits(pipeline["export"], data_dir / "finemo_out")


def _outside_knife_edges(frame: pl.DataFrame, parity: HitComparison, *runs: Path) -> pl.DataFrame:
    """``frame`` without rows at the positions of any hit of a knife-edge region in ``runs``."""
    knife = parity.knife_edge_regions
    edge = pl.concat([_tsv(r / "hits.tsv").filter(pl.col("peak_id").is_in(knife)).select(KEY)
                      for r in runs])
    return frame.join(edge, on=KEY, how="anti")


def test_exported_hits_equal_finemo(pipeline, data_dir, parity):
    ours, ref = _tsv(pipeline["export"] / "hits.tsv"), _tsv(data_dir / "finemo_out" / "hits.tsv")
    assert ours.columns == ref.columns
    assert ours.dtypes == ref.dtypes
    assert parity.agrees, parity.format()
    assert parity.n_a == parity.n_b == ref.height == 1721
    assert ours.select(["chr", "start"]).equals(ref.select(["chr", "start"])), "sort order"
    # hit_correlation is a copy of hit_similarity, which compare_hits checks.
    assert (ours["hit_correlation"] == ours["hit_similarity"]).all()


def test_exported_unique_hits_equal_finemo(pipeline, data_dir, parity):
    ours = _tsv(pipeline["export"] / "hits_unique.tsv")
    ref = _tsv(data_dir / "finemo_out" / "hits_unique.tsv")
    assert ours.columns == ref.columns and ours.dtypes == ref.dtypes
    assert ours.select(["chr", "start"]).equals(ref.select(["chr", "start"])), "sort order"
    runs = (pipeline["export"], data_dir / "finemo_out")
    assert sorted(_outside_knife_edges(ours, parity, *runs).select(KEY).rows()) == sorted(
        _outside_knife_edges(ref, parity, *runs).select(KEY).rows())
    # hits_unique keeps one of several identical hits of overlapping regions and finemo's pick
    # is arbitrary: each of our rows must be one of our own hits (whose values compare_hits
    # held against finemo's) with the same peak_id.
    all_ours = _tsv(pipeline["export"] / "hits.tsv")
    assert ours.join(all_ours, on=ours.columns, how="semi", nulls_equal=True).height == ours.height


def test_exported_bed_qc_and_motifs_equal_finemo(pipeline, data_dir, parity):
    ref_dir = data_dir / "finemo_out"
    runs = (pipeline["export"], ref_dir)
    bed, ref_bed = (pl.read_csv(d / "hits.bed", separator="\t", has_header=False,
                                new_columns=BED_COLUMNS) for d in runs)
    assert bed.height == _tsv(pipeline["export"] / "hits_unique.tsv").height
    assert sorted(_outside_knife_edges(bed, parity, *runs).rows()) == sorted(
        _outside_knife_edges(ref_bed, parity, *runs).rows())
    for name in ("motif_data.tsv", "motif_cwms.npy"):
        assert (pipeline["export"] / name).read_bytes() == (ref_dir / name).read_bytes(), name
    qc, ref_qc = _tsv(pipeline["export"] / "peaks_qc.tsv"), _tsv(ref_dir / "peaks_qc.tsv")
    assert qc.columns == ref_qc.columns and qc.height == ref_qc.height == 350
    assert qc["peak_id"].to_list() == ref_qc["peak_id"].to_list()
    # num_steps: equal outside knife-edge regions (compare_hits read both peaks_qc.tsv)
    assert parity.n_regions == 350 and all(r.knife_edge for r in parity.steps_differ)
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
