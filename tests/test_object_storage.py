"""Every path option on object storage: the whole chain on a local S3 server (moto, loopback
only) equals a local run; a driver killed mid-run on S3 resumes; file:// URLs are local paths;
nothing named ``s3:`` or ``file:`` appears in the working directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyBigWig
import pytest
from conftest import moto_s3

from nemo_dask.cli import main

pytestmark = pytest.mark.slow

D = Path(__file__).parent / "data"
C = D / "convert"
EXPORT_SAME = ("hits.tsv", "hits_unique.tsv", "hits.bed", "peaks_qc.tsv", "motif_data.tsv",
               "motif_cwms.npy")
REPORT_TABLES = ("motif_report.tsv", "motif_occurrences.tsv")


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and the environment that points s3fs/botocore at it."""
    with moto_s3() as server:
        yield {"fs": server.fs, "bucket": server.bucket, "env": server.env}


def _chain(store: str, out: str, exp: str, trk: str, rep: str) -> None:
    assert main(["convert", "bigwig", "-p", str(C / "peaks_bw.narrowPeak"), "-f",
                 str(C / "genome.fa"), "-b", str(C / "contribs.bw"), "-o", store,
                 "--chunk-size", "8", "--no-progress"]) == 0
    assert main(["call-hits", "-r", store, "-m", str(D / "modisco.h5"), "-o", out,
                 "--workers", "1", "--block-size", "8", "--no-progress"]) == 0
    assert main(["export", "-H", out, "-o", exp]) == 0
    assert main(["tracks", "-H", out, "-o", trk]) == 0
    # (-n: the fixture's modisco seqlets index the 350-region fixture, not these 30 regions)
    assert main(["report", "-r", store, "-H", out, "-o", rep, "-n"]) == 0


def _no_stray(cwd: Path) -> None:
    stray = [p.name for p in cwd.iterdir() if p.name.rstrip(":") in ("s3", "file")
             or p.name.startswith(("s3:", "file:"))]
    assert stray == []


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("local")
    p = {k: d / k for k in ("s.zarr", "out", "exp", "trk", "rep")}
    _chain(*(str(v) for v in p.values()))
    return p


def _frame(out: str) -> pl.DataFrame:
    from nemo_dask.dataset import scan_hits

    return scan_hits(out).collect().sort("peak_id", "motif_id", "hit_start")


def _same_run_files(local: dict[str, Path], remote: dict[str, str], get) -> None:
    """Compare the remote chain's outputs (fetched with ``get(url) -> bytes``) with local."""
    assert _frame(remote["out"]).equals(_frame(str(local["out"])))
    for name in EXPORT_SAME:
        assert get(f"{remote['exp']}/{name}") == (local["exp"] / name).read_bytes(), name
    for name in REPORT_TABLES:
        assert get(f"{remote['rep']}/{name}") == (local["rep"] / name).read_bytes(), name
    assert b"<html" in get(f"{remote['rep']}/report.html").lower()
    for f in sorted(local["trk"].iterdir()):
        assert get(f"{remote['trk']}/{f.name}") == f.read_bytes(), f.name


def test_chain_on_s3_equals_local(s3, local_run, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    fs, base = s3["fs"], f"s3://{s3['bucket']}/chain"
    remote = {k: f"{base}/{k}" for k in ("s.zarr", "out", "exp", "trk", "rep")}
    _chain(*remote.values())
    _same_run_files(local_run, remote, lambda u: fs.cat_file(u))
    # The bigBed read back from the bucket with pyBigWig (through a local copy).
    fs.get_file(f"{remote['trk']}/hits.bb", str(tmp_path / "hits.bb"))
    bb = pyBigWig.open(str(tmp_path / "hits.bb"))
    n = sum(len(bb.entries(c, 0, s) or []) for c, s in bb.chroms().items())
    bed = fs.cat_file(f"{remote['exp']}/hits.bed").decode().splitlines()
    assert n == len(bed) > 0
    # Each partition is one object; no temporaries; the manifest says complete.
    import json

    parts = fs.glob(f"{remote['out']}/hits/*")
    assert parts and all(p.rsplit("/", 1)[1].startswith("part-") for p in parts)
    assert json.loads(fs.cat_file(f"{remote['out']}/manifest.json"))["complete"] is True
    # collapse / intersect read from and write to s3 too.
    assert main(["collapse-hits", "-i", remote["out"], "-o", f"{base}/collapsed.tsv"]) == 0
    assert main(["collapse-hits", "-i", str(local_run["out"]), "-o",
                 str(tmp_path / "c.tsv")]) == 0
    assert fs.cat_file(f"{base}/collapsed.tsv") == (tmp_path / "c.tsv").read_bytes()
    assert main(["intersect-hits", "-i", f"{remote['exp']}/hits.tsv", remote["out"], "-o",
                 f"{base}/inter.tsv"]) == 0
    assert len(fs.cat_file(f"{base}/inter.tsv").decode().splitlines()) > 1
    # compare-hits on two remote inputs (a run and a TSV), and the run's CWMs from the bucket.
    assert main(["compare-hits", remote["out"], f"{remote['exp']}/hits.tsv"]) == 0
    from nemo_dask.dataset import read_cwms

    np.testing.assert_array_equal(read_cwms(remote["out"]), read_cwms(local_run["out"]))
    # Another run into the same S3 OUT: refused, then replaced with --overwrite.
    again = ["call-hits", "-r", remote["s.zarr"], "-m", str(D / "modisco.h5"), "-o",
             remote["out"], "--workers", "1", "--block-size", "8", "--no-progress",
             "--global-lambda", "0.9"]
    assert main(again) == 2
    assert main([*again, "--overwrite"]) == 0
    fs.invalidate_cache()
    params = json.loads(fs.cat_file(f"{remote['out']}/parameters.json"))
    assert params["lambda_default"] == 0.9
    assert json.loads(fs.cat_file(f"{remote['out']}/manifest.json"))["complete"] is True
    _no_stray(tmp_path)


def test_input_files_at_urls_are_fetched(s3, local_run, tmp_path, monkeypatch,
                                         capsys) -> None:
    """Every input file (peaks, FASTA and its index, bigWig, modisco H5, a regions.npz) may be
    an s3:// URL too: the same store and hits as from local files."""
    monkeypatch.chdir(tmp_path)
    fs, base = s3["fs"], f"s3://{s3['bucket']}/inputs"
    for f in (C / "peaks_bw.narrowPeak", C / "genome.fa", C / "genome.fa.fai",
              C / "contribs.bw", D / "modisco.h5"):
        fs.put_file(str(f), f"{base}/{f.name}")
    store, out = f"{base}/s.zarr", f"{base}/out"
    assert main(["convert", "bigwig", "-p", f"{base}/peaks_bw.narrowPeak", "-f",
                 f"{base}/genome.fa", "-b", f"{base}/contribs.bw", "-o", store,
                 "--chunk-size", "8", "--no-progress"]) == 0
    from nemo_dask.regions.store import open_store

    # The store records the URLs it was made from, not the temporary local copies.
    assert open_store(store).attrs["source"] | {"format": "bigwig"} == {
        "format": "bigwig", "peaks": f"{base}/peaks_bw.narrowPeak", "fasta": f"{base}/genome.fa",
        "bigwigs": [f"{base}/contribs.bw"], "chrom_order": None}
    assert main(["call-hits", "-r", store, "-m", f"{base}/modisco.h5", "-o", out,
                 "--workers", "1", "--block-size", "8", "--no-progress"]) == 0
    assert _frame(out).equals(_frame(str(local_run["out"])))
    # finemo's regions.npz at a URL: fetched, then converted into OUT/regions.zarr as usual.
    with np.load(D / "regions.npz") as d:
        np.savez(tmp_path / "r24.npz", **{k: d[k][:24] for k in d.files})
    fs.put_file(str(tmp_path / "r24.npz"), f"{base}/r24.npz")
    assert main(["call-hits", "-r", f"{base}/r24.npz", "-m", f"{base}/modisco.h5", "-o",
                 str(tmp_path / "npz_out"), "--workers", "1", "--no-progress"]) == 0
    assert main(["call-hits", "-r", str(tmp_path / "r24.npz"), "-m", str(D / "modisco.h5"),
                 "-o", str(tmp_path / "npz_local"), "--workers", "1", "--no-progress"]) == 0
    assert _frame(str(tmp_path / "npz_out")).equals(_frame(str(tmp_path / "npz_local")))
    # parameters.json names the URLs given, not the temporary local copies.
    params = json.loads((tmp_path / "npz_out" / "parameters.json").read_text())
    assert params["regions_path"] == f"{base}/r24.npz"
    assert params["modisco_h5_path"] == f"{base}/modisco.h5"
    fs.invalidate_cache()
    assert json.loads(fs.cat_file(f"{out}/parameters.json"))["modisco_h5_path"] == \
        f"{base}/modisco.h5"
    # A damaged input at a URL: the error names the URL.
    fs.pipe_file(f"{base}/bad.h5", b"not HDF5" * 100)
    capsys.readouterr()
    assert main(["call-hits", "-r", f"{base}/r24.npz", "-m", f"{base}/bad.h5", "-o",
                 str(tmp_path / "bad_out"), "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{base}/bad.h5" in err and "nemo-dask-inputs-" not in err, err
    _no_stray(tmp_path)


def test_file_urls_are_local_paths(local_run, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "f"
    remote = {k: f"file://{d / k}" for k in ("s.zarr", "out", "exp", "trk", "rep")}
    _chain(*remote.values())
    _same_run_files(local_run, remote, lambda u: Path(u[len("file://"):]).read_bytes())
    _no_stray(tmp_path)


def test_convert_overwrite_on_s3_keeps_old_store_until_new_is_complete(s3, monkeypatch,
                                                                        tmp_path) -> None:
    from nemo_dask.regions.convert import _writer
    from nemo_dask.regions.store import open_store

    monkeypatch.chdir(tmp_path)
    fs, url = s3["fs"], f"s3://{s3['bucket']}/ow/s.zarr"
    args = ["convert", "bigwig", "-p", str(C / "peaks_bw.narrowPeak"), "-f",
            str(C / "genome.fa"), "-b", str(C / "contribs.bw"), "-o", url, "--no-progress"]
    assert main([*args, "--chunk-size", "8"]) == 0
    before = open_store(url).attrs["created_at"], sorted(fs.find(url))
    assert main([*args, "--chunk-size", "4"]) == 2  # exists, no --overwrite
    # A conversion that fails mid-way leaves the old store complete and untouched.
    real_write = _writer.StoreWriter.write
    calls = {"n": 0}

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real_write(self, *a, **k)

    monkeypatch.setattr(_writer.StoreWriter, "write", failing)
    with pytest.raises(OSError):
        main([*args, "--chunk-size", "4", "--overwrite"])
    monkeypatch.setattr(_writer.StoreWriter, "write", real_write)
    fs.invalidate_cache()
    assert sorted(fs.find(url)) == before[1]
    assert open_store(url).chunk_size == 8
    assert not [p for p in fs.ls(f"{s3['bucket']}/ow") if ".tmp-" in p]
    # A successful replacement: the new store complete, no staging prefix left.
    assert main([*args, "--chunk-size", "4", "--overwrite"]) == 0
    fs.invalidate_cache()
    store = open_store(url)
    assert store.chunk_size == 4 and store.attrs["complete"] is True
    assert not [p for p in fs.ls(f"{s3['bucket']}/ow") if ".tmp-" in p]
    _no_stray(tmp_path)


def test_killed_driver_on_s3_resumes_to_identical_hits(s3, local_run, tmp_path) -> None:
    fs, base = s3["fs"], f"s3://{s3['bucket']}/kill"
    store, out = f"{base}/s.zarr", f"{base}/out"
    assert main(["convert", "bigwig", "-p", str(C / "peaks_bw.narrowPeak"), "-f",
                 str(C / "genome.fa"), "-b", str(C / "contribs.bw"), "-o", store,
                 "--chunk-size", "8", "--no-progress"]) == 0
    cmd = [sys.executable, "-m", "nemo_dask", "call-hits", "-r", store, "-m",
           str(D / "modisco.h5"), "-o", out, "--workers", "1", "--threads-per-worker", "1",
           "--block-size", "1", "--no-progress"]
    env = {**os.environ, **s3["env"]}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    done: list[str] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            fs.invalidate_cache()
            done = fs.glob(f"{out}/qc/part-*.parquet")
            if len(done) >= 3:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 3 <= len(done) < 30, (len(done), proc.stderr.read().decode()[-2000:])
    fs.invalidate_cache()
    kept = {p: fs.info(p)["ETag"] for p in fs.glob(f"{out}/qc/part-*.parquet")}
    import json

    assert json.loads(fs.cat_file(f"{out}/manifest.json"))["complete"] is False
    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    fs.invalidate_cache()
    # The finished partitions were trusted (not rewritten), and the hits equal a local run's.
    assert {p: fs.info(p)["ETag"] for p in kept} == kept
    assert json.loads(fs.cat_file(f"{out}/manifest.json"))["complete"] is True
    assert _frame(out).equals(_frame(str(local_run["out"])))
    _no_stray(tmp_path)


def _error_line(capsys) -> str:
    """The one line of a refusal (besides the cluster's address line)."""
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if not x.startswith("nemo-dask: local cluster")]
    assert len(lines) == 1 and "error: " in lines[0] and "Traceback" not in err, err
    return lines[0]


def test_npz_into_an_s3_out_a_lost_object_and_a_held_lock(s3, tmp_path, monkeypatch,
                                                          capsys) -> None:
    """finemo's regions.npz with an object-store OUT: converted into OUT/regions.zarr, then
    run (it once refused its own store); an object lost from a store on S3 is one line naming
    the chunk; an OUT whose lock (a conditional-PUT marker) another run holds is one line."""
    monkeypatch.chdir(tmp_path)
    fs, base = s3["fs"], f"s3://{s3['bucket']}/npz"
    with np.load(D / "regions.npz") as d:
        np.savez(tmp_path / "r24.npz", **{k: d[k][:24] for k in d.files})
    args = ["-m", str(D / "modisco.h5"), "--workers", "1", "--no-progress", "--block-size", "8"]
    out = f"{base}/out"
    assert main(["call-hits", "-r", str(tmp_path / "r24.npz"), "-o", out, *args]) == 0
    assert main(["call-hits", "-r", str(tmp_path / "r24.npz"), "-o", str(tmp_path / "local"),
                 *args]) == 0
    assert _frame(out).equals(_frame(str(tmp_path / "local")))
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(out)) == [
        "hits", "manifest.json", "motif_cwms.npy", "motifs.parquet", "parameters.json", "qc",
        "qvalues", "regions.zarr"]
    capsys.readouterr()
    assert main(["call-hits", "-r", str(tmp_path / "r24.npz"), "-o", out, *args]) == 0
    assert "(3 already done)" in capsys.readouterr().out
    # An object lost from the store: the first read names it; nothing is solved as zeros.
    fs.rm(f"{out}/regions.zarr/sequences/c/0/0/0")  # (one chunk of 24 regions)
    assert main(["call-hits", "-r", f"{out}/regions.zarr", "-o", f"{base}/again", *args]) == 2
    err = _error_line(capsys)
    assert err.endswith(
        f"error: {out}/regions.zarr: array 'sequences' chunk 0 (sequences/c/0/0/0, regions "
        "0-23) is missing (its file or object is gone; zarr would read it as zeros); the "
        "regions store is damaged: convert the inputs again (nemo-dask convert ... "
        "--overwrite) or restore the store from a copy"), err
    # Another run holds OUT (its marker object): refused in one line, --overwrite too.
    from nemo_dask.storage.lock import OutputLock

    with OutputLock(out) as held:
        assert fs.exists(f"{out}/.nemo-dask.lock")
        for extra in ([], ["--overwrite", "-l", "0.8"]):
            assert main(["call-hits", "-r", str(tmp_path / "r24.npz"), "-o", out, *args,
                         *extra]) == 2
            assert f"pid {held.record['pid']}" in _error_line(capsys)
    fs.invalidate_cache()
    assert not fs.exists(f"{out}/.nemo-dask.lock")
    assert _frame(out).equals(_frame(str(tmp_path / "local")))
    _no_stray(tmp_path)


def test_missing_filesystem_package_is_one_line(tmp_path) -> None:
    code = ("import sys; sys.modules['s3fs'] = None\n"
            "from nemo_dask.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    for args in (["export", "-H", "s3://b/run", "-o", str(tmp_path / "e")],
                 ["call-hits", "-r", str(D / "regions.npz"), "-m", str(D / "modisco.h5"),
                  "-o", "s3://b/run"],
                 ["tracks", "-H", "s3://b/run", "-o", str(tmp_path / "t")],
                 ["convert", "npz", "-r", str(D / "regions.npz"), "-o", "s3://b/s.zarr"],
                 ["report", "-r", "s3://b/s.zarr", "-H", "s3://b/run", "-o",
                  str(tmp_path / "r"), "-n"],
                 ["collapse-hits", "-i", "s3://b/run", "-o", str(tmp_path / "c.tsv")]):
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "s3fs" in lines[0] and "nemo_dask[s3]" in lines[0], lines
    _no_stray(tmp_path)


def test_tracks_values_from_s3_match_dataset(s3, local_run, tmp_path) -> None:
    """bigWig values read back (pyBigWig) equal the summed coefficients of the dataset."""
    fs = s3["fs"]
    trk = f"s3://{s3['bucket']}/chain/trk"
    if not fs.exists(trk):
        pytest.skip("needs test_chain_on_s3_equals_local")
    hits = _frame(str(local_run["out"]))
    for f in fs.glob(f"{trk}/*.bw"):
        local = tmp_path / f.rsplit("/", 1)[1]
        fs.get_file(f, str(local))
        bw = pyBigWig.open(str(local))
        total = sum(np.nansum(np.asarray(bw.values(c, 0, n, numpy=True)))
                    for c, n in bw.chroms().items())
        motif = [m for m in hits["motif_name"].unique() if local.name == f"{m}.bw"]
        assert len(motif) == 1
        mine = hits.filter(pl.col("motif_name") == motif[0])
        want = float((mine["hit_coefficient_global"].cast(pl.Float64)
                      * (mine["end"] - mine["start"])).sum())
        assert abs(total - want) <= 1e-4 * max(1.0, abs(want))


def test_a_sheet_of_runs_on_s3(s3, tmp_path, monkeypatch, threads_client) -> None:
    """A sheet at a URL: its relative paths are taken from the URL's folder, its input files
    fetched, its OUTs and summary written to the bucket; the same hits as a local run."""
    from nemo_dask.calling.api import call_hits
    from nemo_dask.calling.many import call_hits_many

    monkeypatch.chdir(tmp_path)
    fs, base = s3["fs"], f"s3://{s3['bucket']}/sheet"
    with np.load(D / "regions.npz") as d:
        np.savez(tmp_path / "r24.npz", **{k: d[k][:24] for k in d.files})
    fs.put_file(str(tmp_path / "r24.npz"), f"{base}/data/r24.npz")
    fs.put_file(str(D / "modisco.h5"), f"{base}/modisco.h5")
    fs.pipe_file(f"{base}/RUNS.tsv", b"name\tregions\tmotifs\tout\tmode\n"
                 b"pp\tdata/r24.npz\tmodisco.h5\tout_pp\t\nhh\tdata/r24.npz\tmodisco.h5\tout_hh\thh\n")
    result = call_hits_many(f"{base}/RUNS.tsv", client=threads_client, progress=False)
    assert result.ok and result.summary == f"{base}/RUNS.summary.tsv"
    fs.invalidate_cache()
    summary = fs.cat_file(f"{base}/RUNS.summary.tsv").decode().splitlines()
    assert [line.split("\t")[1] for line in summary[1:]] == ["done", "done"]
    for mode in ("pp", "hh"):
        call_hits(tmp_path / "r24.npz", D / "modisco.h5", tmp_path / mode, mode=mode,
                  client=threads_client, progress=False)
        assert _frame(f"{base}/out_{mode}").equals(_frame(str(tmp_path / mode))), mode
        params = json.loads(fs.cat_file(f"{base}/out_{mode}/parameters.json"))
        assert params["regions_path"] == f"{base}/data/r24.npz"
    _no_stray(tmp_path)
