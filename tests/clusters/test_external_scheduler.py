"""call-hits on a user's existing cluster: `dask scheduler` + two `dask worker` processes.

The scheduler and workers are separate processes started from the command line on loopback, as
a user would; call-hits joins them with --scheduler and must give the same hits as the embedded
LocalCluster run. A TLS variant uses certificates written to files; clients without them, or
with other ones, are refused. Every wait is bounded and every process is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pytest
from conftest import assert_refused

distributed = pytest.importorskip("distributed")
pytest.importorskip("cryptography")

from nemo_dask.clusters.connect import ClusterOptions, connect  # noqa: E402
from nemo_dask.errors import InputError  # noqa: E402

N_REGIONS, BLOCK = 24, 8  # 3 blocks: enough to spread over two workers, fast on 2 cores
START_TIMEOUT = 60.0


def _dask_cli(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    if exe.exists():
        return [str(exe), *args]
    module = {"scheduler": "distributed.cli.dask_scheduler",
              "worker": "distributed.cli.dask_worker"}[args[0]]
    return [sys.executable, "-m", module, *args[1:]]


def _write_credentials(directory: Path) -> dict[str, Path]:
    """A self-signed CA/certificate/key (the same one for every role), as PEM files."""
    from distributed.security import Security

    sec = Security.temporary()
    files = {"ca": directory / "ca.pem", "cert": directory / "cert.pem",
             "key": directory / "key.pem"}
    for name, text in (("ca", sec.tls_ca_file), ("cert", sec.tls_scheduler_cert),
                       ("key", sec.tls_scheduler_key)):
        files[name].write_text(text)
        files[name].chmod(0o600)
    return files


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@contextlib.contextmanager
def _user_cluster(tmp: Path, tls: dict[str, Path] | None) -> Iterator[str]:
    """Start `dask scheduler` and two `dask worker` processes on 127.0.0.1; yield the address."""
    tmp.mkdir(parents=True, exist_ok=True)
    sched_file = tmp / "scheduler.json"
    tls_args = ([] if tls is None else
                ["--tls-ca-file", str(tls["ca"]), "--tls-cert", str(tls["cert"]),
                 "--tls-key", str(tls["key"])])
    procs: list[subprocess.Popen] = []

    def spawn(args: list[str], log: str) -> None:
        with open(tmp / log, "wb") as out:
            procs.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True, cwd=tmp))

    try:
        spawn(_dask_cli("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                        "--scheduler-file", str(sched_file),
                        *(["--protocol", "tls"] if tls else []), *tls_args), "scheduler.log")
        deadline = time.monotonic() + START_TIMEOUT
        while not (sched_file.exists() and sched_file.stat().st_size):
            if procs[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail("dask scheduler did not start:\n" +
                            (tmp / "scheduler.log").read_text()[-3000:])
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith(("tls" if tls else "tcp") + "://127.0.0.1:")
        for i in range(2):
            spawn(_dask_cli("worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                            "--no-dashboard", "--name", f"user-worker-{i}", *tls_args),
                  f"worker{i}.log")
        yield address
    finally:
        _stop(procs)


def _wait_for_workers(address: str, tls: dict[str, Path] | None, n: int) -> None:
    from distributed.security import Security

    sec = None if tls is None else Security(
        tls_ca_file=str(tls["ca"]), tls_client_cert=str(tls["cert"]),
        tls_client_key=str(tls["key"]), require_encryption=True)
    with distributed.Client(address, security=sec, timeout=START_TIMEOUT) as client:
        client.wait_for_workers(n, timeout=START_TIMEOUT)


def _call_hits_cli(argv: list[str]) -> int:
    import nemo_dask.cli as cli

    return cli.main(["call-hits", *argv])


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory) -> tuple[Path, Path]:
    data = Path(__file__).parents[1] / "data"
    path = tmp_path_factory.mktemp("ext") / f"regions{N_REGIONS}.npz"
    with np.load(data / "regions.npz") as d:
        np.savez(path, **{k: d[k][:N_REGIONS] for k in d.files})
    return path, data / "modisco.h5"


def _hits(out: Path):
    from nemo_dask.dataset import scan_hits

    return scan_hits(out).collect().sort(["peak_id", "motif_id", "hit_start", "strand"])


@pytest.fixture(scope="module")
def embedded_hits(small_inputs, tmp_path_factory):
    regions, h5 = small_inputs
    out = tmp_path_factory.mktemp("embedded") / "out"
    rc = _call_hits_cli(["-r", str(regions), "-m", str(h5), "-o", str(out), "--workers", "2",
                         "--block-size", str(BLOCK), "--no-progress"])
    assert rc == 0
    return _hits(out)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_call_hits_on_user_started_cluster_matches_embedded(tls, small_inputs, embedded_hits,
                                                            tmp_path):
    from polars.testing import assert_frame_equal

    regions, h5 = small_inputs
    creds = _write_credentials(tmp_path) if tls else None
    flags = ([] if creds is None else ["--tls-ca-file", str(creds["ca"]), "--tls-cert",
                                      str(creds["cert"]), "--tls-key", str(creds["key"])])
    with _user_cluster(tmp_path / "cluster", creds) as address:
        _wait_for_workers(address, creds, 2)
        out = tmp_path / "out"
        rc = _call_hits_cli(["-r", str(regions), "-m", str(h5), "-o", str(out),
                             "--scheduler", address, "--block-size", str(BLOCK),
                             "--no-progress", *flags])
        assert rc == 0
        ours = _hits(out)
        assert ours.height > 0
        assert_frame_equal(ours, embedded_hits)
        # The run used the user's workers and left them running.
        _wait_for_workers(address, creds, 2)


def test_tls_user_scheduler_refuses_clients_without_its_credentials(tmp_path):
    from distributed.security import Security

    creds = _write_credentials(tmp_path)
    (tmp_path / "other").mkdir()
    other = _write_credentials(tmp_path / "other")
    with _user_cluster(tmp_path / "cluster", creds) as address:
        _wait_for_workers(address, creds, 1)
        # A stranger: plain tcp, tls without a certificate, or a certificate of another CA.
        assert_refused(address.replace("tls://", "tcp://"))
        assert_refused(address, None)
        assert_refused(address, Security.temporary())
        # Through nemo_dask: no credentials -> refused before connecting; wrong CA -> one line.
        with pytest.raises(InputError, match="needs credentials"):
            with connect(ClusterOptions(scheduler=address)):
                pass
        with dask.config.set({"nemo_dask.cluster.connect-timeout": "3s"}):
            with pytest.raises(InputError, match="could not connect"):
                with connect(ClusterOptions(scheduler=address, tls_ca_file=str(other["ca"]),
                                            tls_cert=str(other["cert"]),
                                            tls_key=str(other["key"]))):
                    pass
        # The right files connect, given the address or the scheduler file.
        with connect(ClusterOptions(scheduler=str(tmp_path / "cluster" / "scheduler.json"),
                                    tls_ca_file=str(creds["ca"]), tls_cert=str(creds["cert"]),
                                    tls_key=str(creds["key"]))) as client:
            assert client.scheduler.address == address
        with connect(ClusterOptions(scheduler=address, tls_ca_file=str(creds["ca"]),
                                    tls_cert=str(creds["cert"]),
                                    tls_key=str(creds["key"]))) as client:
            assert client.submit(sum, [2, 3]).result(timeout=30) == 5
