"""The object store going away mid-run (issue 29, item 16b): one line naming the URL, the
endpoint and what was written, exit 2; once the endpoint is back the same command resumes to
the hits of an uninterrupted run. A loopback moto server, stopped and started again on the
same port (its buckets live in this process, so they survive)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import moto_s3

from nemo_dask.cli import main

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"


def _hits(out: str) -> pl.DataFrame:
    from nemo_dask.dataset import scan_hits

    return scan_hits(out).collect().sort("peak_id", "motif_id", "hit_start")


def test_endpoint_gone_mid_run_is_one_line_and_resumes(tmp_path: Path) -> None:
    with moto_s3() as s3:
        fs, bucket, env, host, port = s3.fs, s3.bucket, s3.env, s3.host, s3.port
        store = tmp_path / "r.zarr"
        assert main(["convert", "npz", "-r", str(DATA / "regions.npz"), "-o", str(store),
                     "--chunk-size", "16", "--no-progress"]) == 0
        assert main(["call-hits", "-r", str(store), "-m", str(DATA / "modisco.h5"), "-o",
                     str(tmp_path / "local"), "--workers", "1", "--block-size", "16",
                     "--no-progress"]) == 0
        out = f"s3://{bucket}/out"
        cmd = [sys.executable, "-m", "nemo_dask", "call-hits", "-r", str(store), "-m",
               str(DATA / "modisco.h5"), "-o", out, "--workers", "1", "--block-size", "16",
               "--no-progress"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        done: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            fs.invalidate_cache()
            done = fs.glob(f"{out}/qc/part-*.parquet")
            if len(done) >= 2:
                break
            time.sleep(0.2)
        s3.server.stop()  # the endpoint goes away mid-run
        stdout, stderr = proc.communicate(timeout=600)
        assert 2 <= len(done) < 22, stderr[-2000:]
        assert proc.returncode == 2, stderr[-3000:]
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert all(line.startswith("nemo-dask") for line in lines), stderr[-3000:]
        error = lines[-1]
        assert error.startswith(f"nemo-dask call-hits: error: {out}"), error
        assert f"the object store does not answer at http://{host}:{port}" in error
        assert "blocks (" in error and "once the object store answers again" in error
        s3.restart()  # back, with what was written before
        rerun = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, **env},
                               capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert "already done" in rerun.stdout
        assert _hits(out).equals(_hits(str(tmp_path / "local")))
