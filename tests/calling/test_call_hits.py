"""call_hits on a real LocalCluster: parity, invariance, resume, fault tolerance, read-back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.dataset as pads
import pytest
from conftest import finemo_hits, max_rel

from nemo_dask.calling.api import call_hits
from nemo_dask.calling.task import annotate
from nemo_dask.dataset import scan_hits, scan_qc
from nemo_dask.errors import OutputExistsError
from nemo_dask.motifs import load_motifs
from nemo_dask.solver.stream import fit_block

distributed = pytest.importorskip("distributed")

SORT = ["peak_id", "motif_id", "hit_start"]


@pytest.fixture(scope="module")
def client():
    """The embedded cluster users get (workers forked from a server on Linux)."""
    from nemo_dask.clusters.connect import ClusterOptions, connect

    with connect(ClusterOptions(n_workers=2, dashboard_address=None), announce=False) as c:
        yield c


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkserver is the Linux default")
def test_embedded_workers_start_with_the_solver_imported(client):
    loaded = client.run(lambda: all(m in sys.modules for m in ("torch", "nemo_dask.solver.stream")))
    assert list(loaded.values()) == [True, True]


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory, regions_npz) -> Path:
    """The first 120 regions of the fixture, as finemo's regions.npz."""
    path = tmp_path_factory.mktemp("npz") / "regions120.npz"
    np.savez(path, **{k: v[:120] for k, v in regions_npz.items()})
    return path


def _hits(out: Path) -> pl.DataFrame:
    return scan_hits(out).collect().sort(SORT)


def test_full_fixture_matches_finemo_and_in_process_solver(client, tmp_path, data_dir, regions_npz,
                                                           modisco_h5):
    res = call_hits(data_dir / "regions.npz", modisco_h5, tmp_path / "out", client=client,
                    progress=False)
    ours = res.hits.collect()
    assert res.n_hits == ours.height == 1721
    ref = finemo_hits(data_dir / "finemo_out")
    key = ["peak_id", "motif_name", "strand", "start"]
    joined = ours.with_columns(pl.col("peak_id").cast(pl.Int64)).join(
        ref, on=key, how="inner", suffix="_ref")
    assert joined.height == ref.height == ours.height
    for col in ("end", "start_untrimmed", "end_untrimmed", "chr", "peak_name"):
        assert (joined[col] == joined[f"{col}_ref"]).all(), col
    assert max_rel(joined["hit_coefficient"], joined["hit_coefficient_ref"]) < 1e-3
    for col in ("hit_similarity", "hit_importance", "hit_importance_sq", "hit_coefficient_global"):
        tol = 1e-3 if col == "hit_coefficient_global" else 1e-5
        assert max_rel(joined[col], joined[f"{col}_ref"]) < tol, col

    # The distributed path is the in-process solver: bit-identical values.
    motifs = load_motifs(modisco_h5)
    direct = fit_block(regions_npz["sequences"], regions_npz["contributions"], motifs)
    peaks = pl.DataFrame({"peak_id": regions_npz["peak_id"], "chr": regions_npz["chr"],
                          "chr_id": regions_npz["chr_id"].astype(np.uint32),
                          "peak_region_start": regions_npz["start"],
                          "peak_name": regions_npz["peak_name"]})
    hits, qc = annotate(direct.hits, direct.qc, peaks, motifs, 0)
    assert np.array_equal(_hits(tmp_path / "out")["hit_coefficient"].to_numpy(),
                          hits.sort(SORT)["hit_coefficient"].to_numpy())
    qc_ours = scan_qc(tmp_path / "out").collect().sort("peak_id")
    assert qc_ours.height == 350 and (qc_ours["status"] == "converged").all()
    assert np.array_equal(qc_ours["num_steps"].to_numpy(), qc.sort("peak_id")["num_steps"].to_numpy())


def test_block_sizes_and_worker_counts_give_identical_hits(client, tmp_path, small_npz, modisco_h5):
    base = _hits(call_hits(small_npz, modisco_h5, tmp_path / "b40", client=client, block_size=40,
                           progress=False).out)
    for bs in (7, 120):
        other = _hits(call_hits(small_npz, modisco_h5, tmp_path / f"b{bs}", client=client,
                                block_size=bs, progress=False).out)
        assert other.equals(base), f"block size {bs}"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as one, \
            distributed.Client(one) as c1:
        res = call_hits(small_npz, modisco_h5, tmp_path / "w1", client=c1, block_size=10,
                        progress=False)
        workers = set(c1.scheduler_info()["workers"])
    assert _hits(res.out).equals(base)
    assert {s["worker"] for s in res.summaries} == workers
    # One worker thread, yet the next block is read while the previous one is solved.
    runs = sorted(res.summaries, key=lambda s: s["started_at"])
    overlapped = [b["started_at"] < a["solved_at"] for a, b in zip(runs, runs[1:], strict=False)]
    assert len(runs) == 12 and sum(overlapped) >= 6, runs


def test_resume_refuse_and_overwrite(client, tmp_path, small_npz, modisco_h5):
    out = tmp_path / "out"
    first = call_hits(small_npz, modisco_h5, out, client=client, block_size=30, progress=False)
    assert first.n_blocks == 4 and first.n_skipped == 0
    before = _hits(out)
    (out / "hits" / "part-000002.parquet").unlink()
    (out / "qc" / "part-000001.parquet").write_bytes(b"truncated")
    (out / "manifest.json").unlink()
    again = call_hits(small_npz, modisco_h5, out, client=client, block_size=30, progress=False)
    assert again.n_skipped == 2
    assert _hits(out).equals(before)
    done = call_hits(small_npz, modisco_h5, out, client=client, block_size=30, progress=False)
    assert done.n_skipped == 4 and done.summaries == []

    with pytest.raises(OutputExistsError, match="different run"):
        call_hits(small_npz, modisco_h5, out, client=client, block_size=30, lambda_default=0.8)
    assert _hits(out).equals(before)
    changed = call_hits(small_npz, modisco_h5, out, client=client, block_size=30,
                        lambda_default=0.8, overwrite=True, progress=False)
    assert changed.n_skipped == 0 and changed.n_hits != before.height


def test_worker_killed_mid_run(client, tmp_path, data_dir, modisco_h5):
    out = tmp_path / "out"
    pids = list(client.run(os.getpid).values())
    result: dict = {}

    def run() -> None:
        result["res"] = call_hits(data_dir / "regions.npz", modisco_h5, out, client=client,
                                  block_size=10, progress=False)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((out / "qc").glob("part-*"))) < 5:
        time.sleep(0.05)
    os.kill(pids[0], signal.SIGKILL)
    t.join(timeout=240)
    assert not t.is_alive()
    res = result["res"]
    assert res.n_blocks == 35
    hits = _hits(out)
    assert hits.height == 1721
    assert hits.select(SORT).is_duplicated().sum() == 0
    client.wait_for_workers(2, timeout=60)


def test_driver_killed_mid_run_then_rerun(tmp_path, small_npz, modisco_h5):
    out = tmp_path / "out"

    def command(dest: Path) -> list[str]:
        return [sys.executable, "-m", "nemo_dask", "call-hits", "-r", str(small_npz), "-m",
                str(modisco_h5), "-o", str(dest), "--block-size", "5", "--workers", "1",
                "--no-progress"]

    cmd = command(out)
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(list((out / "qc").glob("part-*"))) < 3:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    n_before = len(list((out / "qc").glob("part-*")))
    assert 3 <= n_before < 24
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    clean = tmp_path / "clean"
    subprocess.run(command(clean), check=True, capture_output=True, timeout=180)
    assert _hits(out).equals(_hits(clean))


def test_dataset_reads_back_with_polars_pyarrow_and_dask(client, tmp_path, small_npz, modisco_h5):
    out = call_hits(small_npz, modisco_h5, tmp_path / "out", client=client, block_size=30,
                    progress=False).out
    n = pl.scan_parquet(str(out / "hits" / "*.parquet")).select(pl.len()).collect().item()
    assert n == pl.scan_parquet(out / "hits").select(pl.len()).collect().item()
    table = pads.dataset(out / "hits", format="parquet").to_table()
    assert table.num_rows == n
    dd = pytest.importorskip("dask.dataframe")
    assert len(dd.read_parquet(str(out / "qc")).compute()) == 120
    assert len(dd.read_parquet(str(out / "hits")).compute()) == n
