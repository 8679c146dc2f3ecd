"""call-hits on a real SLURM (`.ci/slurm.sh start`: one node on loopback), as a user runs it.

Every test ends with no job of its run in the queue and no dask worker of its run alive. They
skip, with the reason, where no SLURM controller answers (`sinfo` missing or failing).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(400)]

_KEY = ["peak_id", "start", "motif_id"]


def _sinfo_ok() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM here (`sinfo` not found); start one with `.ci/slurm.sh start` (root)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode != 0:
        return f"no SLURM controller answers (`sinfo`: {proc.stderr.strip()})"
    if not any(s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split()):
        return f"no usable SLURM node (`sinfo` states: {proc.stdout.split()})"
    return None


_SKIP = _sinfo_ok()
if _SKIP:
    pytestmark.append(pytest.mark.skip(reason=_SKIP))


def _job_ids(name: str = "nemo-dask") -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True,
                         text=True, check=False).stdout
    return out.split()


def _worker_pids(tag: str) -> list[int]:
    """dask workers started by this test's jobs (their command line names the test's TLS dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "dask_worker" in cmd and tag in cmd:
                pids.append(int(proc.name))
    return pids


def _assert_nothing_left(tag: str, within_s: float = 30) -> float:
    """Wait until no nemo-dask job and no worker of this test is left; returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within_s:
        if not _job_ids() and not _worker_pids(tag):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"left after {within_s} s: jobs {_job_ids()}, workers "
                         f"{_worker_pids(tag)}")


@pytest.fixture(autouse=True)
def _clean_queue():
    yield
    ids = _job_ids() + _job_ids("nemo-dask-blocker")
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def _tiled_store(tmp_path_factory, regions_npz, tiles: int) -> Path:
    from nemo_dask.regions.convert import convert_npz

    d = tmp_path_factory.mktemp("slurm_store")
    npz = d / "regions.npz"
    np.savez(npz, **{k: np.concatenate([v[:160]] * tiles) for k, v in regions_npz.items()
                     if k in ("sequences", "contributions")})
    convert_npz(npz, d / "regions.zarr", progress=False)
    return d / "regions.zarr"


@pytest.fixture(scope="module")
def store(tmp_path_factory, regions_npz) -> Path:
    """The fixture's first 160 regions, tiled 4 times (640 regions), as a regions store."""
    return _tiled_store(tmp_path_factory, regions_npz, 4)


# The lifetime test's workers each live 5-7 s; its run must outlast several of them on any CPU.
_LONG_RUN_S = 20.0


def _single_thread_rate(regions_npz, modisco_h5) -> float:
    """Regions per second of one solver thread on this machine (the fixture's first 160)."""
    import torch

    from nemo_dask.motifs import load_motifs
    from nemo_dask.solver.stream import fit_block

    motifs, before = load_motifs(modisco_h5), torch.get_num_threads()
    seqs, contribs = regions_npz["sequences"][:160], regions_npz["contributions"][:160]
    torch.set_num_threads(1)
    try:
        fit_block(seqs[:16], contribs[:16], motifs, threads=1)  # warm up
        t0 = time.perf_counter()
        fit_block(seqs, contribs, motifs, threads=1)
        return 160 / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def long_store(tmp_path_factory, regions_npz, modisco_h5) -> Path:
    """A run of about _LONG_RUN_S seconds for one single-CPU worker, sized from this CPU's
    measured rate (a fixed size finished inside one lifetime once the solver got faster)."""
    tiles = max(8, int(np.ceil(_LONG_RUN_S * _single_thread_rate(regions_npz, modisco_h5) / 160)))
    return _tiled_store(tmp_path_factory, regions_npz, tiles)


@pytest.fixture(scope="module")
def local_hits(tmp_path_factory, store, modisco_h5) -> pl.DataFrame:
    return _local_hits(tmp_path_factory, store, modisco_h5)


def _local_hits(tmp_path_factory, store, modisco_h5) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("slurm_ref") / "out"
    rc = subprocess.run([sys.executable, "-m", "nemo_dask", "call-hits", "-r", str(store), "-m",
                         str(modisco_h5), "-o", str(out), "--block-size", "32",
                         "--no-progress"], capture_output=True, text=True, check=False)
    assert rc.returncode == 0, rc.stderr
    return _hits(out)


def _hits(out: Path) -> pl.DataFrame:
    return pl.read_parquet(str(out / "hits" / "*.parquet")).sort(_KEY)


def _assert_same(out: Path, ref: pl.DataFrame) -> None:
    got = _hits(out)
    assert got.height == ref.height
    assert got.select(_KEY).equals(ref.select(_KEY))  # none lost, none duplicated
    np.testing.assert_allclose(got["hit_coefficient"], ref["hit_coefficient"], rtol=1e-5)


def _cmd(store: Path, modisco_h5: Path, out: Path, tls: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nemo_dask", "call-hits", "-r", str(store), "-m",
            str(modisco_h5), "-o", str(out), "--block-size", "32", "--cluster", "slurm",
            "--interface", "lo", "--gpus-per-job", "0", "--job-cpu", "1", "--memory", "2GB",
            "--walltime", "00:10:00", "--shared-temp-directory", str(tls), *extra]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Submit from the test's directory: SLURM writes each job's slurm-<id>.out there."""
    monkeypatch.chdir(tmp_path)


def _env(**config: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"DASK_{k}": v for k, v in config.items()})
    return env


def test_baseline_equals_local(store, modisco_h5, local_hits, tmp_path):
    """Submitted, with the console script, from a directory that holds a package named
    nemo_dask (another checkout): the job's `python -m` must not import it."""
    out, tls = tmp_path / "out", tmp_path / "tls"
    (tmp_path / "nemo_dask").mkdir()
    (tmp_path / "nemo_dask" / "__init__.py").write_text("raise ImportError('not this one')\n")
    script = str(Path(sys.executable).parent / "nemo-dask")
    cmd = [script, *_cmd(store, modisco_h5, out, tls, "--jobs", "1")[3:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    _assert_same(out, local_hits)
    _assert_nothing_left(str(tls))


def test_waits_in_queue_behind_another_job(store, modisco_h5, local_hits, tmp_path):
    """The node's CPUs are held by another job for 25 s: the run shows its job pending for
    Resources (no 30 s timeout) and completes when the node frees."""
    blocker = subprocess.run(["sbatch", "-J", "nemo-dask-blocker", "-c", str(len(os.sched_getaffinity(0))),
                              "--mem", "100M", "-o", "/dev/null", "--wrap", "sleep 25"],
                             capture_output=True, text=True, check=True)
    assert "Submitted" in blocker.stdout
    out, tls = tmp_path / "out", tmp_path / "tls"
    proc = subprocess.run(_cmd(store, modisco_h5, out, tls, "--jobs", "1"), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    # SLURM's reason is Resources, or Priority while another job is ahead in the queue.
    assert re.search(r"waiting for workers: 1 job pending \((Resources|Priority)\)",
                     proc.stderr), proc.stderr
    _assert_same(out, local_hits)
    _assert_nothing_left(str(tls))


def test_workers_retire_on_lifetime_mid_run(long_store, modisco_h5, tmp_path_factory,
                                            tmp_path):
    """Adaptive, one job at a time, walltime 12 s: each worker retires after 5-7 s (lifetime
    walltime/2, stagger 1 s) and a new job takes over; the hits are those of a local run."""
    store = long_store
    local_hits = _local_hits(tmp_path_factory, store, modisco_h5)
    import dask

    from nemo_dask import ClusterOptions, call_hits

    out, tls = tmp_path / "out", tmp_path / "tls"
    cfg = {"nemo_dask.cluster.jobqueue.lifetime-margin": "45s",
           "nemo_dask.cluster.jobqueue.lifetime-stagger": "1s",
           "distributed.deploy.lost-worker-timeout": "3s"}
    opts = ClusterOptions(cluster="slurm", interface="lo", gpus_per_job=0, job_cpu=1,
                          memory="2GB", walltime="00:00:12", min_jobs=1, max_jobs=1,
                          shared_temp_directory=str(tls))
    with dask.config.set(cfg):
        result = call_hits(store, modisco_h5, out, block_size=32, progress=False, cluster=opts)
    workers = {s["worker"] for s in result.summaries}
    assert len(result.summaries) == result.n_blocks
    _assert_same(out, local_hits)
    _assert_nothing_left(str(tls))
    assert len(workers) >= 2, "no worker retired mid-run"


@pytest.mark.parametrize("scaling", [["--jobs", "1"], ["--min-jobs", "1", "--max-jobs", "1"]],
                         ids=["fixed", "adaptive"])
def test_worker_job_cancelled_mid_run(scaling, store, modisco_h5, local_hits, tmp_path):
    """`scancel` of the only worker job once a few blocks are done: a new job is submitted
    (fixed or adaptive), the run completes with the same hits, none duplicated."""
    out, tls = tmp_path / "out", tmp_path / "tls"
    env = _env(DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT="3s")
    proc = subprocess.Popen(_cmd(store, modisco_h5, out, tls, *scaling), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while len(list((out / "qc").glob("part-*.parquet"))) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no block finished"
            time.sleep(0.2)
        first = _job_ids()
        assert first
        subprocess.run(["scancel", *first], check=True)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "20 blocks" in stdout
    _assert_same(out, local_hits)
    _assert_nothing_left(str(tls))


@pytest.mark.parametrize(("flags", "said"), [
    (["--gpus-per-job", "1"], "Invalid generic resource (gres) specification"),
    (["--job-cpu", "4096"], "PartitionConfig"),
    (["--python", "/bin/false"], "before its Dask worker connected"),
], ids=["gpu-refused", "never-runs", "worker-cannot-start"])
def test_impossible_job_ends_run_in_one_line(flags, said, store, modisco_h5, tmp_path):
    out, tls = tmp_path / "out", tmp_path / "tls"
    cmd = _cmd(store, modisco_h5, out, tls, "--jobs", "1")
    for i in range(0, len(flags), 2):  # the later flag wins in argparse
        cmd += flags[i:i + 2]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert time.monotonic() - t0 < 120
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and said in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    _assert_nothing_left(str(tls))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_no_job_left_after_driver_is_stopped(sig, store, modisco_h5, tmp_path):
    """Ctrl-C: the driver cancels its jobs. SIGKILL: the workers lose their scheduler and
    leave after --death-timeout (here 10 s; 60 s by default), ending their jobs."""
    out, tls = tmp_path / "out", tmp_path / "tls"
    env = _env(JOBQUEUE__SLURM__DEATH_TIMEOUT="10")
    proc = subprocess.Popen(_cmd(store, modisco_h5, out, tls, "--jobs", "1"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list((out / "qc").glob("part-*.parquet")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert "interrupted" in stderr and "Traceback" not in stderr
        _assert_nothing_left(str(tls), within_s=30)
    else:
        _assert_nothing_left(str(tls), within_s=60)
