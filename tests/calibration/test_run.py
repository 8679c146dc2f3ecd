"""q-values in call-hits runs end to end: the dataset and its manifest, resume and block
layout, a driver killed during the q-value pass, damaged null partitions, edge cases, and
every verb that reads them (finemo 0.41's own tools included)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from nemo_dask import call_hits
from nemo_dask.calibration.flank import zone_positions
from nemo_dask.calibration.planted import make_planted, write_modisco_h5
from nemo_dask.dataset import read_motifs, read_parameters, scan_hits
from nemo_dask.errors import CorruptDataError, InputError, OutputExistsError
from nemo_dask.manifest import read_manifest

pytest.importorskip("distributed")
KEY = ["peak_id", "motif_id", "hit_start"]
NO_HITS = {"pos_patterns.pattern_3": 5.0}  # lambda 5 (> any similarity): a motif with no hits


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("planted")
    planted = make_planted(seed=4, n_regions=120, width=600)
    np.savez(d / "regions.npz", **planted.npz_arrays())
    write_modisco_h5(planted, d / "modisco.h5")
    return d


def _call(inputs, out, client, **kw):
    kw = {"motif_lambdas": NO_HITS, "progress": False, "block_size": 40, **kw}
    return call_hits(inputs / "regions.npz", inputs / "modisco.h5", out, client=client, **kw)


@pytest.fixture(scope="module")
def runs(threads_client, inputs, tmp_path_factory):
    """The same regions with the default (flank) null in blocks of 40 and of 64, with the
    decoy null (null/ partitions) and without q-values."""
    d = tmp_path_factory.mktemp("runs")
    return {"a": _call(inputs, d / "a", threads_client),
            "b": _call(inputs, d / "b", threads_client, block_size=64),
            "decoy": _call(inputs, d / "decoy", threads_client, null="decoy"),
            "plain": _call(inputs, d / "plain", threads_client, null="none")}


def _hits(result_or_out) -> pl.DataFrame:
    out = getattr(result_or_out, "out", result_or_out)
    return scan_hits(out).collect().sort(KEY)


def test_every_hit_has_a_qvalue_and_the_hits_stay_finemos(runs):
    a, plain = runs["a"], runs["plain"]
    hits, ref = _hits(a), _hits(plain)
    assert hits.height > 100 and hits["hit_qvalue"].null_count() == 0
    assert ((hits["hit_qvalue"] > 0) & (hits["hit_qvalue"] <= 1)).all()
    assert hits.drop("hit_qvalue").equals(ref.drop("hit_qvalue"))  # the null only adds q
    assert ref["hit_qvalue"].null_count() == ref.height and not (plain.out / "qvalues").exists()
    assert a.hits.collect().columns[-2:] == ["hit_qvalue", "motif_label"]
    # Hits partitions are the ones the blocks wrote: the q-values sit beside them, recorded.
    manifest = read_manifest(a.out)
    assert manifest["complete"] and set(manifest["qvalues"]["files"]) == set(manifest["blocks"])
    for b, rec in manifest["qvalues"]["files"].items():
        assert rec["hits_sha256"] == manifest["blocks"][b]["files"]["hits"]["sha256"]
    calib = read_parameters(a.out)["nemo_dask"]["calibration"]
    assert calib["null"] == "flank" and calib["score_column"] == "hit_importance_sq"
    assert calib["result"]["n_target_hits"] == hits.height
    assert "pos_patterns.pattern_3" not in calib["result"]["groups"]  # no hits, no group


def test_strata_without_null_hits_and_the_flanks(runs):
    # In a stratum whose motif has no flank hit every q is the +1 over its hits; a hit in the
    # flanks is the null itself (q = 1).
    a = runs["a"]
    hits = _hits(a).join(read_motifs(a.out).select("motif_id", "motif_start", "motif_end"),
                         on="motif_id")
    from nemo_dask.calibration.flank import stratum_expr

    hits = hits.with_columns(stratum_expr(600, 0.7, 4).alias("z"))
    assert (hits.filter(pl.col("z") == 4)["hit_qvalue"] == 1).all()
    counts = zone_positions(read_motifs(a.out), 600, 30, 0.7, 4)
    result = read_parameters(a.out)["nemo_dask"]["calibration"]["result"]
    checked = 0
    for key, c in result["group_counts"].items():
        group, z = key.rsplit("|", 1)
        if c["null"] == 0 and int(z) < 4:
            unit = max(v[int(z)] / v[4] for v in counts.values())
            q = hits.filter((pl.col("motif_name") == group) & (pl.col("z") == int(z)))
            assert q.height == c["targets"]
            assert np.allclose(q["hit_qvalue"], min(1.0, unit / c["targets"]), rtol=1e-6)
            checked += 1
    assert checked


def test_block_size_does_not_change_qvalues(runs):
    assert runs["a"].n_blocks != runs["b"].n_blocks
    assert _hits(runs["a"]).equals(_hits(runs["b"]))


def test_resume_and_a_driver_killed_in_the_qvalue_pass(threads_client, runs, inputs, tmp_path,
                                                       monkeypatch):
    a = runs["a"]
    out = tmp_path / "resumed"
    shutil.copytree(a.out, out)
    for sub in ("hits", "qc"):  # as if killed before block 1 finished
        (out / sub / "part-000001.parquet").unlink()
    from nemo_dask.calibration import assign

    written = []
    real = assign.write_stamped

    def dies(*args, **kwargs):
        if written:
            raise KeyboardInterrupt  # the driver stops after one q-values partition
        written.append(real(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(assign, "write_stamped", dies)
    with pytest.raises(KeyboardInterrupt):
        _call(inputs, out, threads_client)
    monkeypatch.undo()
    # Its blocks are done, its q-values are not: no hit shows one, export refuses the run.
    assert read_manifest(out)["complete"] is False
    assert scan_hits(out).collect()["hit_qvalue"].null_count() == a.hits.collect().height
    from nemo_dask.finemo.export import export

    with pytest.raises(InputError, match=r"incomplete \(\d+ of \d+ blocks finished, their q-values not computed yet\)"):
        export(out, tmp_path / "exp")
    r = _call(inputs, out, threads_client)
    assert r.n_skipped == a.n_blocks
    assert _hits(r).equals(_hits(a))
    again = _call(inputs, out, threads_client)  # current q-values: kept as they are
    assert again.n_skipped == a.n_blocks and _hits(again).equals(_hits(a))
    # A q-values partition changed afterwards: readers refuse it, a rerun computes it again.
    q = out / "qvalues" / "part-000002.parquet"
    q.write_bytes(q.read_bytes()[:-9] + b"\0" * 9)
    with pytest.raises(CorruptDataError, match="qvalues/part-000002.parquet"):
        scan_hits(out)
    with pytest.warns(UserWarning, match="q-values are computed again"):
        fixed = _call(inputs, out, threads_client)
    assert _hits(fixed).equals(_hits(a))


def test_null_partitions_are_part_of_a_block(threads_client, runs, inputs, tmp_path):
    d = runs["decoy"]
    assert sorted(p.name for p in (d.out / "null").iterdir()) == [
        f"part-{b:06d}.parquet" for b in range(d.n_blocks)]
    manifest = read_manifest(d.out)
    assert manifest["tables"] == ["hits", "null", "qc"]
    assert all("null" in rec["files"] for rec in manifest["blocks"].values())
    out = tmp_path / "decoy"
    shutil.copytree(d.out, out)
    bad = out / "null" / "part-000001.parquet"  # block 1's null hits damaged
    bad.write_bytes(bad.read_bytes()[:40] + b"\xff" * 20 + bad.read_bytes()[60:])
    from nemo_dask.finemo.export import export

    with pytest.raises(CorruptDataError, match="null/part-000001.parquet is not the file"):
        export(out, tmp_path / "exp")
    (out / "null" / "part-000002.parquet").unlink()  # block 2 lacks only its null hits
    with pytest.warns(UserWarning) as caught:
        r = _call(inputs, out, threads_client, null="decoy")
    lines = [str(w.message) for w in caught if "computed again" in str(w.message)]
    assert any(x.startswith("block 1 ") and "null partition" in x for x in lines)
    assert any(x.startswith("block 2 ") and "null partition is missing" in x for x in lines)
    assert r.n_skipped == d.n_blocks - 2 and _hits(r).equals(_hits(d))
    # Another null is another run: its null partitions would not be this run's.
    with pytest.raises(OutputExistsError, match="calibration"):
        _call(inputs, out, threads_client, null="shuffle")


def test_a_run_of_one_region(threads_client, runs, inputs, tmp_path):
    busiest = _hits(runs["a"])["peak_id"].mode().sort()[0]  # (a region with hits)
    with np.load(inputs / "regions.npz") as z:
        np.savez(tmp_path / "one.npz", **{k: z[k][busiest:busiest + 1] for k in z.files})
    r = call_hits(tmp_path / "one.npz", inputs / "modisco.h5", tmp_path / "out",
                  client=threads_client, progress=False)
    hits = r.hits.collect()
    assert hits.height and hits["hit_qvalue"].null_count() == 0
    # Too few hits for any confidence: q >= the +1 over the hits of a stratum.
    assert (hits["hit_qvalue"] >= 1 / hits.height - 1e-7).all()


def _finemo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finemo", *args], capture_output=True,
                          text=True, timeout=600)


def test_export_files_and_finemos_own_tools(runs, inputs, tmp_path):
    pytest.importorskip("finemo")
    from finemo import data_io

    from nemo_dask.finemo.export import export
    from nemo_dask.finemo.formats import FINEMO_HITS_DTYPES

    a = runs["a"]
    res = export(a.out, tmp_path / "exp")
    assert {"hits_extra.tsv", "hits_unique_extra.tsv"} <= {p.name for p in res.files}
    full = pl.read_csv(tmp_path / "exp" / "hits_extra.tsv", separator="\t")
    plain = pl.read_csv(tmp_path / "exp" / "hits.tsv", separator="\t")
    assert plain.columns == list(FINEMO_HITS_DTYPES)
    assert full.columns == [*plain.columns, "hit_qvalue"] and full.drop("hit_qvalue").equals(plain)
    # finemo 0.41 reads hits with a fixed schema: hits.tsv keeps exactly its columns.
    assert data_io.load_hits(str(tmp_path / "exp" / "hits_unique.tsv")).height > 0  # intersect
    p = _finemo("collapse-hits", "-i", str(tmp_path / "exp" / "hits.tsv"), "-o",
                str(tmp_path / "collapsed.tsv"))
    assert p.returncode == 0, p.stderr[-2000:]
    p = _finemo("report", "-r", str(inputs / "regions.npz"), "-H", str(tmp_path / "exp"),
                "-o", str(tmp_path / "report"))
    assert p.returncode == 0, p.stderr[-2000:]
    # --max-qvalue: fewer rows in every file, all at most the level, finemo-readable.
    kept = export(a.out, tmp_path / "kept", max_qvalue=0.05)
    q = pl.read_csv(tmp_path / "kept" / "hits_extra.tsv", separator="\t")["hit_qvalue"]
    assert 0 < kept.n_hits == int((_hits(a)["hit_qvalue"] <= 0.05).sum()) == q.len() < full.height
    assert (q <= 0.05).all()
    # A later export of a run without q-values into the same place leaves no extended file
    # behind that a reader would take for its own.
    export(runs["plain"].out, tmp_path / "kept")
    assert not (tmp_path / "kept" / "hits_extra.tsv").exists()


def test_readers_take_an_exports_extended_files(runs, inputs, tmp_path):
    from nemo_dask.cli import main
    from nemo_dask.compare import compare_hits
    from nemo_dask.finemo.export import export
    from nemo_dask.finemo.postprocess import write_collapsed, write_intersection
    from nemo_dask.report import write_report

    a = runs["a"]
    exp = tmp_path / "exp"
    export(a.out, exp)
    n = int((_hits(a)["hit_qvalue"] <= 0.05).sum())
    for source in (exp, exp / "hits_extra.tsv", a.out):
        write_collapsed(source, tmp_path / "c.tsv", max_qvalue=0.05)
        c = pl.read_csv(tmp_path / "c.tsv", separator="\t")
        assert c.height == n and c.columns[-2:] == ["hit_qvalue", "is_primary"], source
    write_intersection([exp, a.out], tmp_path / "i.tsv", max_qvalue=0.05)
    assert pl.read_csv(tmp_path / "i.tsv", separator="\t").height == n
    assert compare_hits(exp, a.out).agrees
    # export -H of an export directory: imported with its q-values, exported alike.
    export(exp, tmp_path / "again")
    assert (tmp_path / "again" / "hits_extra.tsv").read_bytes() == (
        exp / "hits_extra.tsv").read_bytes()
    assert main(["export", "-H", str(exp), "-o", str(tmp_path / "k"), "--max-qvalue",
                 "0.05"]) == 0
    assert pl.read_csv(tmp_path / "k" / "hits_extra.tsv", separator="\t").height == n
    result = write_report(inputs / "regions.npz", exp, tmp_path / "rep", compute_recall=False,
                          max_qvalue=0.05)
    assert result.hits.select(pl.len()).collect().item() == n
    with pytest.raises(InputError, match="hit_qvalue"):
        write_collapsed(exp / "hits.tsv", tmp_path / "c2.tsv", max_qvalue=0.05)
    # The export compressed (gzip -r): its extended files are still found and read.
    packed = tmp_path / "packed"
    packed.mkdir()
    for f in exp.iterdir():
        (packed / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    for source in (packed, packed / "hits_extra.tsv.gz"):
        write_collapsed(source, tmp_path / "cz.tsv", max_qvalue=0.05)
        assert pl.read_csv(tmp_path / "cz.tsv", separator="\t").height == n, source
    export(packed, tmp_path / "unpacked")
    assert (tmp_path / "unpacked" / "hits_extra.tsv").read_bytes() == (
        exp / "hits_extra.tsv").read_bytes()


def test_max_qvalue_refusals_and_the_track_score(runs, tmp_path):
    from nemo_dask.finemo.export import export
    from nemo_dask.finemo.postprocess import write_collapsed
    from nemo_dask.tracks import scores

    a, plain = runs["a"], runs["plain"]
    with pytest.raises(InputError, match="no hit_qvalue"):
        export(plain.out, tmp_path / "e", max_qvalue=0.05)
    with pytest.raises(InputError, match="no hit_qvalue"):
        write_collapsed(plain.out, tmp_path / "c2.tsv", max_qvalue=0.05)
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        write_collapsed(a.out, tmp_path / "c3.tsv", max_qvalue=0)
    # JASPAR's track score: min(1000, round(-100 log10 q)).
    s = scores(pl.DataFrame({"hit_qvalue": [1.0, 0.05, 0.01, 1e-12]}), "qvalue")
    assert s.tolist() == [0, 130, 200, 1000]


def test_report_counts_hits_per_level(runs, tmp_path):
    from nemo_dask.report import write_report

    a = runs["a"]
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


def test_background_null_run_and_resume(threads_client, inputs, tmp_path):
    from nemo_dask.regions.convert.npz import convert_npz

    # Background regions of the same motif set: nothing planted, noise only.
    bg = make_planted(seed=1004, motif_seed=4, n_regions=48, width=600, null_fraction=1.0,
                      decoy_rate=0.0)
    np.savez(tmp_path / "bg.npz", **bg.npz_arrays())
    store = convert_npz(tmp_path / "bg.npz", tmp_path / "bg.zarr", chunk_size=16,
                        progress=False)
    r = _call(inputs, tmp_path / "out", threads_client, background=store.url)
    calib = read_parameters(r.out)["nemo_dask"]["calibration"]
    assert calib["null"] == "background"
    assert calib["result"]["null_count_ratio"] == pytest.approx(120 / 48)
    assert sorted(p.name for p in (r.out / "null_background").iterdir()) == [
        f"part-{b:06d}.parquet" for b in range(2)]
    assert set(read_manifest(r.out)["background"]["blocks"]) == {"0", "1"}
    hits = _hits(r)
    assert hits["hit_qvalue"].null_count() == 0
    (r.out / "null_background" / "part-000001.parquet").unlink()  # killed before it finished
    with pytest.warns(UserWarning, match="background block 1"):
        again = _call(inputs, tmp_path / "out", threads_client, background=store.url)
    assert again.n_skipped == again.n_blocks and _hits(again).equals(hits)
    record = json.loads((r.out / "manifest.json").read_text())
    assert record["complete"] and set(record["background"]["blocks"]) == {"0", "1"}
    with pytest.raises(InputError, match="needs a background"):
        _call(inputs, tmp_path / "o2", threads_client, null="shuffle", background=store.url)
