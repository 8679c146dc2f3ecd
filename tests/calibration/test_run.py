"""A calibrated call-hits run end to end: q-values in the dataset, resume and block layout,
edge cases, and every verb that reads them (finemo 0.41's own tools included)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from nemo_dask import call_hits
from nemo_dask.calibration.planted import make_planted, write_modisco_h5
from nemo_dask.dataset import read_parameters
from nemo_dask.errors import InputError

pytest.importorskip("distributed")
KEY = ["peak_id", "motif_id", "hit_start"]


@pytest.fixture(scope="module")
def client():
    from nemo_dask.clusters.connect import ClusterOptions, connect

    with connect(ClusterOptions(n_workers=2, dashboard_address=None), announce=False) as c:
        yield c


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("planted")
    planted = make_planted(seed=4, n_regions=150, width=400)
    np.savez(d / "regions.npz", **planted.npz_arrays())
    write_modisco_h5(planted, d / "modisco.h5")
    return d


@pytest.fixture(scope="module")
def runs(client, inputs, tmp_path_factory):
    """The same regions: calibrated in blocks of 40 and of 64, and uncalibrated."""
    d = tmp_path_factory.mktemp("runs")
    # pattern_3 gets lambda 5 (> any similarity): a motif with no hits at all.
    kw = dict(client=client, motif_lambdas={"pos_patterns.pattern_3": 5.0}, progress=False)
    a = call_hits(inputs / "regions.npz", inputs / "modisco.h5", d / "a", calibrate=True,
                  block_size=40, **kw)
    b = call_hits(inputs / "regions.npz", inputs / "modisco.h5", d / "b", calibrate=True,
                  block_size=64, **kw)
    plain = call_hits(inputs / "regions.npz", inputs / "modisco.h5", d / "plain",
                      block_size=40, **kw)
    return a, b, plain


def _hits(result) -> pl.DataFrame:
    return result.hits.collect().sort(KEY)


def test_every_hit_has_a_qvalue_and_the_hits_stay_finemos(runs):
    a, _, plain = runs
    hits, ref = _hits(a), _hits(plain)
    assert hits.height > 100 and hits["hit_qvalue"].null_count() == 0
    assert ((hits["hit_qvalue"] > 0) & (hits["hit_qvalue"] <= 1)).all()
    assert hits.drop("hit_qvalue").equals(ref.drop("hit_qvalue"))  # the null only adds q
    assert ref["hit_qvalue"].null_count() == ref.height
    calib = read_parameters(a.out)["nemo_dask"]["calibration"]
    assert calib["null"] == "decoy" and calib["score_column"] == "hit_importance_sq"
    assert calib["result"]["complete"] and calib["result"]["n_target_hits"] == hits.height
    assert calib["result"]["n_null_hits"] == pl.scan_parquet(a.out / "null/*.parquet").select(
        pl.len()).collect().item()
    assert all(v["similarity"] < 0.5 for v in calib["decoys"].values())
    # The motif without hits has no group; one without null hits has q >= 1/(its hits).
    assert "pos_patterns.pattern_3" not in calib["result"]["groups"]
    for group, counts in calib["result"]["group_counts"].items():
        if counts["null"] == 0 and counts["targets"]:
            members = [m for m, g in calib["result"]["groups"].items() if g == group]
            q = hits.filter(pl.col("motif_name").is_in(members))["hit_qvalue"]
            assert q.min() == pytest.approx(1 / counts["targets"], rel=1e-6)


def test_block_size_does_not_change_qvalues(runs):
    a, b, _ = runs
    assert a.n_blocks != b.n_blocks
    assert _hits(a).equals(_hits(b))


def test_resume_keeps_qvalues(client, runs, inputs, tmp_path):
    a = runs[0]
    out = tmp_path / "resumed"
    shutil.copytree(a.out, out)
    for sub in ("hits", "qc", "null"):  # as if killed before block 1 finished
        (out / sub / "part-000001.parquet").unlink()
    (out / "null" / "part-000002.parquet").unlink()  # block 2 lacks only its null hits
    r = call_hits(inputs / "regions.npz", inputs / "modisco.h5", out, client=client,
                  calibrate=True, motif_lambdas={"pos_patterns.pattern_3": 5.0},
                  progress=False)
    assert r.n_skipped == a.n_blocks - 2
    assert _hits(r).equals(_hits(a))
    again = call_hits(inputs / "regions.npz", inputs / "modisco.h5", out, client=client,
                      calibrate=True, motif_lambdas={"pos_patterns.pattern_3": 5.0},
                      progress=False)
    assert again.n_skipped == a.n_blocks and _hits(again).equals(_hits(a))


def test_a_run_of_one_region(client, inputs, tmp_path):
    with np.load(inputs / "regions.npz") as z:
        np.savez(tmp_path / "one.npz", **{k: z[k][:1] for k in z.files})
    r = call_hits(tmp_path / "one.npz", inputs / "modisco.h5", tmp_path / "out", client=client,
                  calibrate=True, progress=False)
    hits = r.hits.collect()
    assert hits["hit_qvalue"].null_count() == 0
    # Too few hits for any confidence: the +1 of the estimate keeps every q >= 1/hits.
    assert (hits["hit_qvalue"] >= 1 / max(1, hits.height) - 1e-7).all()


def _finemo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finemo", *args], capture_output=True,
                          text=True, timeout=600)


def test_export_and_finemos_own_tools(runs, inputs, tmp_path):
    pytest.importorskip("finemo")
    from nemo_dask.finemo.export import export

    a = runs[0]
    res = export(a.out, tmp_path / "exp")
    names = {p.name for p in res.files}
    assert {"hits_calibrated.tsv", "hits_unique_calibrated.tsv"} <= names
    full = pl.read_csv(tmp_path / "exp" / "hits_calibrated.tsv", separator="\t")
    plain = pl.read_csv(tmp_path / "exp" / "hits.tsv", separator="\t")
    assert full.columns == [*plain.columns, "hit_qvalue"] and full.height == plain.height
    # finemo 0.41 reads hits with a fixed schema: hits.tsv keeps exactly its columns.
    from finemo import data_io

    assert data_io.load_hits(str(tmp_path / "exp" / "hits_unique.tsv")).height > 0  # intersect
    p = _finemo("collapse-hits", "-i", str(tmp_path / "exp" / "hits.tsv"), "-o",
                str(tmp_path / "collapsed.tsv"))
    assert p.returncode == 0, p.stderr[-2000:]
    p = _finemo("report", "-r", str(inputs / "regions.npz"), "-H", str(tmp_path / "exp"),
                "-o", str(tmp_path / "report"))
    assert p.returncode == 0, p.stderr[-2000:]
    # --max-qvalue: fewer rows, all at most the level, and finemo-readable.
    kept = export(a.out, tmp_path / "kept", max_qvalue=0.02)
    q = pl.read_csv(tmp_path / "kept" / "hits_calibrated.tsv", separator="\t")["hit_qvalue"]
    assert kept.n_hits == int((_hits(a)["hit_qvalue"] <= 0.02).sum()) == q.len()
    assert (q <= 0.02).all()


def test_max_qvalue_in_every_verb(runs, tmp_path):
    from nemo_dask.finemo.export import export
    from nemo_dask.finemo.postprocess import write_collapsed, write_intersection
    from nemo_dask.tracks import scores

    a, _, plain = runs
    n = int((_hits(a)["hit_qvalue"] <= 0.03).sum())
    write_collapsed(a.out, tmp_path / "c.tsv", max_qvalue=0.03)
    c = pl.read_csv(tmp_path / "c.tsv", separator="\t")
    assert c.height == n and c.columns[-2:] == ["hit_qvalue", "is_primary"]
    write_intersection([a.out, a.out], tmp_path / "i.tsv", max_qvalue=0.03)
    assert pl.read_csv(tmp_path / "i.tsv", separator="\t").height == n
    with pytest.raises(InputError, match="--calibrate"):
        export(plain.out, tmp_path / "e", max_qvalue=0.05)
    with pytest.raises(InputError, match="--calibrate"):
        write_collapsed(plain.out, tmp_path / "c2.tsv", max_qvalue=0.05)
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        write_collapsed(a.out, tmp_path / "c3.tsv", max_qvalue=0)
    # JASPAR's track score: min(1000, round(-100 log10 q)).
    s = scores(pl.DataFrame({"hit_qvalue": [1.0, 0.05, 0.01, 1e-12]}), "qvalue")
    assert s.tolist() == [0, 130, 200, 1000]


def test_report_counts_hits_per_level(runs, inputs, tmp_path):
    from nemo_dask.report import write_report

    a = runs[0]
    result = write_report(a.out / "regions.zarr", a.out, tmp_path / "rep", compute_recall=False,
                          max_qvalue=0.1)
    table = pl.read_csv(tmp_path / "rep" / "motif_qvalues.tsv", separator="\t")
    hits = _hits(a)
    for row in table.iter_rows(named=True):
        sub = hits.filter(pl.col("motif_name") == row["motif_name"])
        assert row["num_hits"] == sub.height
        assert row["num_hits_q<=0.05"] == int((sub["hit_qvalue"] <= 0.05).sum())
    assert "Calibrated hits" in (tmp_path / "rep" / "report.html").read_text()
    assert (tmp_path / "rep" / "figures" / "qvalue_levels.png").is_file()
    assert result.hits.select(pl.col("hit_qvalue").max()).collect().item() <= 0.1


def test_background_null_run_and_resume(client, inputs, tmp_path):
    from nemo_dask.regions.convert.npz import convert_npz

    # Background regions of the same motif set: nothing planted, noise only.
    bg = make_planted(seed=1004, motif_seed=4, n_regions=60, width=400, null_fraction=1.0,
                      decoy_rate=0.0)
    np.savez(tmp_path / "bg.npz", **bg.npz_arrays())
    store = convert_npz(tmp_path / "bg.npz", tmp_path / "bg.zarr", chunk_size=16,
                        progress=False)
    kw = dict(client=client, background=store.url, block_size=40, progress=False)
    r = call_hits(inputs / "regions.npz", inputs / "modisco.h5", tmp_path / "out", **kw)
    calib = read_parameters(r.out)["nemo_dask"]["calibration"]
    assert calib["null"] == "background"
    assert calib["result"]["null_count_ratio"] == pytest.approx(150 / 60)
    assert sorted(p.name for p in (r.out / "null").iterdir()) == [
        f"part-background-{b:06d}.parquet" for b in range(2)]
    hits = _hits(r)
    assert hits["hit_qvalue"].null_count() == 0
    (r.out / "null" / "part-background-000001.parquet").unlink()  # killed before it finished
    again = call_hits(inputs / "regions.npz", inputs / "modisco.h5", tmp_path / "out", **kw)
    assert again.n_skipped == again.n_blocks and _hits(again).equals(hits)
    with pytest.raises(InputError, match="cannot be combined"):
        call_hits(inputs / "regions.npz", inputs / "modisco.h5", tmp_path / "o2", null="shuffle",
                  **kw)
