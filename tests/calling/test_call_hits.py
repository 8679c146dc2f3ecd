"""call_hits on a real LocalCluster: resume, fault tolerance, read-back.

Parity with finemo and the invariance of results under block size and worker count are in
tests/parity/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow.dataset as pads
import pytest

from nemo_dask.calling.api import call_hits
from nemo_dask.dataset import scan_hits
from nemo_dask.errors import OutputExistsError

distributed = pytest.importorskip("distributed")

SORT = ["peak_id", "motif_id", "hit_start"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkserver is the Linux default")
def test_embedded_workers_start_with_the_solver_imported(client2):
    loaded = client2.run(lambda: all(m in sys.modules for m in ("torch", "nemo_dask.solver.stream")))
    assert list(loaded.values()) == [True, True]


def _hits(out: Path) -> pl.DataFrame:
    return scan_hits(out).collect().sort(SORT)


def test_resume_refuse_and_overwrite(client2, tmp_path, small_npz, modisco_h5):
    out = tmp_path / "out"
    first = call_hits(small_npz, modisco_h5, out, client=client2, block_size=30, progress=False)
    assert first.n_blocks == 4 and first.n_skipped == 0
    before = _hits(out)
    (out / "hits" / "part-000002.parquet").unlink()
    (out / "qc" / "part-000001.parquet").write_bytes(b"truncated")
    (out / "manifest.json").unlink()
    again = call_hits(small_npz, modisco_h5, out, client=client2, block_size=30, progress=False)
    assert again.n_skipped == 2
    assert _hits(out).equals(before)
    done = call_hits(small_npz, modisco_h5, out, client=client2, block_size=30, progress=False)
    assert done.n_skipped == 4 and done.summaries == []

    with pytest.raises(OutputExistsError, match="different run"):
        call_hits(small_npz, modisco_h5, out, client=client2, block_size=30, lambda_default=0.8)
    assert _hits(out).equals(before)
    changed = call_hits(small_npz, modisco_h5, out, client=client2, block_size=30,
                        lambda_default=0.8, overwrite=True, progress=False)
    assert changed.n_skipped == 0 and changed.n_hits != before.height


def test_parameters_record_absolute_input_paths(client2, tmp_path, small_npz, modisco_h5,
                                                monkeypatch):
    """Inputs given relative to the current directory are recorded absolute, as OUT is: the
    run is read later from anywhere."""
    import json

    monkeypatch.chdir(small_npz.parent)
    call_hits(small_npz.name, os.path.relpath(modisco_h5), tmp_path / "out", client=client2,
              progress=False)
    params = json.loads((tmp_path / "out" / "parameters.json").read_text())
    assert params["regions_path"] == str(small_npz)
    assert params["modisco_h5_path"] == str(modisco_h5)
    assert params["out_dir"] == str(tmp_path / "out")


def test_worker_killed_mid_run(client2, tmp_path, data_dir, modisco_h5):
    out = tmp_path / "out"
    pids = list(client2.run(os.getpid).values())
    result: dict = {}

    def run() -> None:
        result["res"] = call_hits(data_dir / "regions.npz", modisco_h5, out, client=client2,
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
    client2.wait_for_workers(2, timeout=60)


def test_driver_killed_mid_run_then_rerun(tmp_path, data_dir, modisco_h5):
    """The whole fixture in 70 blocks: killed after 3, enough work is left on any CPU that the
    kill lands mid-run (120 regions in 24 blocks left ~0.3 s once the solver got faster)."""
    out = tmp_path / "out"

    def command(dest: Path) -> list[str]:
        return [sys.executable, "-m", "nemo_dask", "call-hits", "-r", str(data_dir / "regions.npz"), "-m",
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
    assert 3 <= n_before < 70
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    clean = tmp_path / "clean"
    subprocess.run(command(clean), check=True, capture_output=True, timeout=180)
    assert _hits(out).equals(_hits(clean))


def test_dataset_reads_back_with_polars_pyarrow_and_dask(client2, tmp_path, small_npz, modisco_h5):
    out = call_hits(small_npz, modisco_h5, tmp_path / "out", client=client2, block_size=30,
                    progress=False).out
    n = pl.scan_parquet(str(out / "hits" / "*.parquet")).select(pl.len()).collect().item()
    assert n == pl.scan_parquet(out / "hits").select(pl.len()).collect().item()
    table = pads.dataset(out / "hits", format="parquet").to_table()
    assert table.num_rows == n
    dd = pytest.importorskip("dask.dataframe")
    assert len(dd.read_parquet(str(out / "qc")).compute()) == 120
    assert len(dd.read_parquet(str(out / "hits")).compute()) == n
