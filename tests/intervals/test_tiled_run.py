"""A tiled run end to end: genomic coordinates, resume, exports, and the fixed global scale."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from intervals_synth import pattern_cwm, write_genome

from nemo_dask.calling.api import call_hits
from nemo_dask.errors import InputError
from nemo_dask.regions.convert import convert_intervals
from nemo_dask.regions.scale import peak_scale, window_scales

pytest.importorskip("distributed")
STRONG = [300, 1111, 2600, 4480]   # on chrP (the "peaks")
WEAK = [700, 2950]                 # on chrQ, 100x weaker, in equally weak noise


@pytest.fixture(scope="module")
def genome(tmp_path_factory, modisco_h5):
    where = tmp_path_factory.mktemp("tiled")
    cwm = pattern_cwm(modisco_h5)
    fasta, bw = write_genome(where, {"chrP": 5200}, {"chrP": STRONG}, cwm, seed=1)
    # chrQ: the same genome layout but 100x quieter: background that a per-window RMS magnifies.
    fasta_q, bw_q = write_genome(where / "..", {"chrQ": 3600}, {"chrQ": WEAK}, cwm, seed=2,
                                 noise=0.00002, strength=0.01, bw_name="q.bw")
    return where, cwm, (fasta, bw), (fasta_q, bw_q)


def _planted(hits: pl.DataFrame) -> pl.DataFrame:
    return hits.filter((pl.col("motif_name") == "pos_patterns.pattern_0")
                       & (pl.col("strand") == "+"))


def test_tiled_run_resume_and_exports(client1, tmp_path, genome, modisco_h5):
    where, cwm, (fasta, bw), _ = genome
    bed = tmp_path / "iv.bed"
    bed.write_text("chrP\t200\t2000\tfirst\nchrP\t2500\t5200\tsecond\n")
    store = convert_intervals(fasta, bw, tmp_path / "iv.zarr", intervals=bed, region_width=400,
                              overlap=100, chunk_size=2, progress=False)
    out = tmp_path / "out"
    # Tiled windows have no summit: by default no q-values (one warning); the flank null,
    # which needs summits, is refused before anything is written.
    with pytest.raises(InputError, match="no summit"):
        call_hits(store.url, modisco_h5, out, client=client1, null="flank", progress=False)
    assert not out.exists()
    with pytest.warns(UserWarning, match="no summit"):
        first = call_hits(store.url, modisco_h5, out, client=client1, block_size=2,
                          progress=False)
    hits = first.hits.collect()
    assert hits["hit_qvalue"].null_count() == hits.height and not (out / "qvalues").exists()
    planted = _planted(hits).sort("start_untrimmed")
    # Genomic coordinates and the interval's name on every hit.
    assert planted["start_untrimmed"].to_list() == STRONG
    assert planted["peak_name"].to_list() == ["first", "first", "second", "second"]
    assert (hits["chr"] == "chrP").all()
    assert hits.select("chr", "start", "motif_name", "strand").is_duplicated().sum() == 0
    # Resume: a finished run is skipped; a lost partition is recomputed alone.
    again = call_hits(store.url, modisco_h5, out, client=client1, block_size=2, progress=False)
    assert again.n_skipped == again.n_blocks
    part = sorted((out / "hits").glob("*.parquet"))[1]
    part.unlink()
    third = call_hits(store.url, modisco_h5, out, client=client1, block_size=2, progress=False)
    assert third.n_skipped == third.n_blocks - 1
    assert third.hits.collect().sort("start", "motif_name").equals(hits.sort("start", "motif_name"))

    def cli(*args: str) -> None:
        run = subprocess.run([sys.executable, "-m", "nemo_dask", *args], capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stderr

    cli("export", "-H", str(out), "-o", str(tmp_path / "fm"))
    tsv = pl.read_csv(tmp_path / "fm" / "hits.tsv", separator="\t")
    assert sorted(_planted(tsv)["start_untrimmed"].to_list()) == STRONG
    assert tsv.height == hits.height
    bed_rows = (tmp_path / "fm" / "hits.bed").read_text().splitlines()
    assert len(bed_rows) == hits.height
    starts = {int(r.split("\t")[1]) for r in bed_rows if r.split("\t")[3].endswith("pattern_0")}
    trim0 = int(_planted(hits)["start"][0] - _planted(hits)["start_untrimmed"][0])
    assert {s + trim0 for s in STRONG} <= starts
    cli("collapse-hits", "-i", str(out), "-o", str(tmp_path / "collapsed.tsv"))
    collapsed = pl.read_csv(tmp_path / "collapsed.tsv", separator="\t")
    assert collapsed.height == hits.height and "is_primary" in collapsed.columns
    cli("report", "-r", store.url, "-H", str(out), "-o", str(tmp_path / "report"))
    report = pl.read_csv(tmp_path / "report" / "motif_report.tsv", separator="\t")
    assert report.height > 0
    assert (tmp_path / "report" / "report.html").is_file()


def test_fixed_global_scale_silences_quiet_windows(client1, tmp_path, genome, modisco_h5):
    where, cwm, (fasta, bw), (fasta_q, bw_q) = genome
    peaks = convert_intervals(fasta, bw, tmp_path / "p.zarr", whole_genome=True,
                              region_width=400, overlap=100, progress=False)
    quiet = convert_intervals(fasta_q, bw_q, tmp_path / "q.zarr", whole_genome=True,
                              region_width=400, overlap=100, progress=False)
    scales = window_scales(peaks)
    scale = peak_scale(peaks.url, 50)
    assert scale == pytest.approx(float(np.median(scales[scales > 0])))
    # finemo's per-window scale: the 100x weaker instances are found as well as the strong.
    per_window = call_hits(quiet.url, modisco_h5, tmp_path / "a", client=client1, progress=False)
    assert sorted(_planted(per_window.hits.collect())["start_untrimmed"]) == WEAK
    # The peaks' median scale: nothing in the quiet chromosome, the strong ones still there.
    fixed = call_hits(quiet.url, modisco_h5, tmp_path / "b", client=client1, progress=False,
                      global_scale=scale)
    assert fixed.hits.collect().height == 0
    assert np.allclose(fixed.qc.collect()["global_scale"].to_numpy(), scale, rtol=1e-6)
    strong = call_hits(peaks.url, modisco_h5, tmp_path / "c", client=client1, progress=False,
                       global_scale=scale)
    # (Windows louder than the median are magnified: shifted echoes of an instance may be added.)
    assert set(STRONG) <= set(_planted(strong.hits.collect())["start_untrimmed"])


def test_global_scale_from_cli(tmp_path, genome, modisco_h5):
    where, cwm, (fasta, bw), _ = genome
    store = convert_intervals(fasta, bw, tmp_path / "p.zarr", whole_genome=True,
                              region_width=400, overlap=100, progress=False)
    run = subprocess.run([sys.executable, "-m", "nemo_dask", "call-hits", "-r", store.url, "-m",
                          str(modisco_h5), "-o", str(tmp_path / "o"), "--global-scale-from",
                          f"{store.url}:90", "--workers", "1", "--no-progress"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    expected = peak_scale(store.url, 90)
    assert f"global scale: {expected:.6g}" in run.stdout
    import json

    params = json.loads((tmp_path / "o" / "parameters.json").read_text())
    assert params["global_scale"] == pytest.approx(expected)
    bad = subprocess.run([sys.executable, "-m", "nemo_dask", "call-hits", "-r", store.url, "-m",
                          str(modisco_h5), "-o", str(tmp_path / "o2"), "--global-scale", "-1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "global_scale must be a finite number > 0" in bad.stderr
