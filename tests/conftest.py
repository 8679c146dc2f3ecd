"""Shared test fixtures: the small finemo fixture copied into tests/data."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from nemo_dask.storage import temporary

DATA = Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    # One torch thread per test process: the suite runs on 2 cores, often beside dask workers.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data."""
    return DATA


@pytest.fixture(scope="session")
def regions_npz() -> dict[str, np.ndarray]:
    """finemo's regions.npz of the fixture (350 regions, L=1000, hypothetical float16)."""
    with np.load(DATA / "regions.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory, regions_npz) -> Path:
    """The fixture's first 24 regions as a regions.npz (benchmarks' quick inputs)."""
    path = tmp_path_factory.mktemp("tiny") / "regions24.npz"
    np.savez(path, **{k: v[:24] for k, v in regions_npz.items()})
    return path


@pytest.fixture(scope="session")
def modisco_h5() -> Path:
    """The fixture's real tfmodisco-lite output."""
    return DATA / "modisco.h5"


def finemo_hits(out_dir: Path) -> pl.DataFrame:
    """finemo's hits.tsv with hit_start recovered from peaks_qc.tsv."""
    hits = pl.read_csv(out_dir / "hits.tsv", separator="\t")
    qc = pl.read_csv(out_dir / "peaks_qc.tsv", separator="\t")
    return hits.join(qc.select("peak_id", "peak_region_start"), on="peak_id").with_columns(
        hit_start=pl.col("start_untrimmed") - pl.col("peak_region_start")
    )


def max_rel(a: pl.Series | np.ndarray, b: pl.Series | np.ndarray) -> float:
    """Largest |a - b| / |b| (0 where both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = np.abs(a - b)
    scale = np.abs(b)
    ok = diff == 0
    return float(np.max(np.where(ok, 0.0, diff / np.where(scale == 0, 1e-300, scale)), initial=0.0))


def scheduler_identity(address: str, security) -> dict:
    """Ask a scheduler who it is over one raw connection (no Client and no loop thread)."""
    import asyncio

    from distributed.core import rpc

    async def ask() -> dict:
        args = security.get_connection_args("client") if security is not None else {}
        async with rpc(address, connection_args=args, timeout=5) as r:
            return await r.identity()

    return asyncio.run(ask())


def assert_refused(address: str, security=None) -> None:
    """The scheduler at ``address`` must refuse a connection made with ``security``."""
    with pytest.raises((OSError, TypeError)):  # CommClosedError is an OSError
        scheduler_identity(address, security)


@pytest.fixture(scope="module")
def threads_client():
    """A one-worker dask cluster inside the test process (a test can count what it does)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def client1():
    """The embedded cluster users get, with 1 worker process of 1 thread."""
    from nemo_dask.clusters.connect import ClusterOptions, connect

    with connect(ClusterOptions(n_workers=1, threads_per_worker=1, dashboard_address=None),
                 announce=False) as c:
        yield c


@pytest.fixture(scope="module")
def client2():
    """The embedded cluster users get, with 2 worker processes (workers forked from a server
    on Linux)."""
    from nemo_dask.clusters.connect import ClusterOptions, connect

    with connect(ClusterOptions(n_workers=2, dashboard_address=None), announce=False) as c:
        yield c


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory, regions_npz) -> Path:
    """The first 120 regions of the fixture, as finemo's regions.npz."""
    path = tmp_path_factory.mktemp("npz") / "regions120.npz"
    np.savez(path, **{k: v[:120] for k, v in regions_npz.items()})
    return path


# --- small file systems of their own (full, read-only), for the storage-fault tests ---------

@pytest.fixture
def mounts(tmp_path: Path):
    """``mount(size, read_only=False)`` -> a fresh tmpfs directory; all unmounted after."""
    made: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        d = tmp_path / f"fs{len(made)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)],
                              capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        made.append(d)
        return d

    yield mount
    for d in reversed(made):
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


# --- special files, for the output-path tests (tests/storage) -------------------------------

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
needs_root = pytest.mark.skipif(not ROOT, reason="mknod of a character device needs root")


def make_null_device(path: Path) -> Path:
    """A character device node equal to /dev/null (major 1, minor 3) at ``path``."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


class FifoReader:
    """Reads a FIFO in a thread until the writer closes it; ``data`` holds what came."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()

    def result(self, timeout: float = 60) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the FIFO's writer never closed it"
        return self.data


def temporaries(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if temporary.is_temporary(n))


# --- parity of in-memory solver results with finemo's fit_contribs ---------------------------


def knife_edge_steps(ours: pl.DataFrame, ref: pl.DataFrame, tol: float = 0.0005,
                     frac: float = 1e-3) -> tuple[list[int], list[int]]:
    """Regions whose step counts differ between two QC tables (``region`` or ``peak_id``,
    ``num_steps``, ``dual_gap``), split into knife-edge ones (the side that stopped first has
    ``|dual_gap - tol| <= frac * tol``: its last bits decided) and the others."""
    def norm(df: pl.DataFrame) -> pl.DataFrame:
        key = "region" if "region" in df.columns else "peak_id"
        return df.select(pl.col(key).cast(pl.Int64).alias("region"), "num_steps", "dual_gap")

    both = norm(ours).join(norm(ref), on="region", suffix="_ref")
    edge, other = [], []
    for r in both.filter(pl.col("num_steps") != pl.col("num_steps_ref")).iter_rows(named=True):
        first = r["dual_gap"] if r["num_steps"] < r["num_steps_ref"] else r["dual_gap_ref"]
        (edge if abs(first - tol) <= frac * tol else other).append(r["region"])
    return edge, other


def assert_parity(res, ref_hits: pl.DataFrame, ref_qc: pl.DataFrame, tol: float = 0.0005,
                  coef_rtol: float = 1e-3, max_edges: int = 1, frac: float = 1e-3,
                  coef_outliers: float = 0.0) -> list[int]:
    """nemo_dask's ``BlockResult`` against finemo's ``fit_contribs`` output by the
    rounding-robust rule: the same steps in every region but at most ``max_edges``
    knife-edge ones (finemo's own batch sizes disagree there), the same hits elsewhere,
    coefficients within ``coef_rtol`` (but a share ``coef_outliers`` of them, within 5e-2:
    ill-conditioned pairs of overlapping motifs) and similarities within 1e-5. Returns the
    knife-edge regions."""
    edge, other = knife_edge_steps(res.qc, ref_qc, tol, frac)
    assert not other, f"regions {other} take other step counts and are not knife-edge"
    assert len(edge) <= max_edges, f"knife-edge regions {edge}"
    ours = res.hits.filter(~pl.col("region").is_in(edge)).sort("region", "motif_id",
                                                              "hit_start")
    ref = ref_hits.filter(~pl.col("peak_id").cast(pl.Int64).is_in(edge)).sort(
        "peak_id", "motif_id", "hit_start")
    assert ours.select("region", "motif_id", "hit_start").rows() == ref.select(
        "peak_id", "motif_id", "hit_start").rows()
    a, b = ours["hit_coefficient"].to_numpy(), ref["hit_coefficient"].to_numpy()
    rel = np.abs(a.astype(np.float64) - b) / np.abs(b)
    assert (rel > coef_rtol).mean() <= coef_outliers and rel.max(initial=0) < max(coef_rtol, 5e-2 if coef_outliers else 0), rel.max()
    assert max_rel(ours["hit_similarity"], ref["hit_similarity"]) < 1e-5
    return edge


def write_recorded_blocks(out: Path, blocks: dict, replace: bool = False) -> None:
    """Write partitions ``{block: (hits, qc, start, stop)}`` into the run ``out`` and record
    them in its manifest, as a run would (``replace``: they become all of its blocks)."""
    from nemo_dask.dataset import write_partitions
    from nemo_dask.manifest import read_manifest, write_manifest

    manifest = read_manifest(out) or {"fingerprint": "test", "blocks": {}}
    run = manifest["fingerprint"]
    finished = {} if replace else {int(k): v for k, v in manifest["blocks"].items()}
    for b, (hits, qc, start, stop) in blocks.items():
        finished[b] = write_partitions(out, b, hits, qc, run=run, start=start, stop=stop)
    write_manifest(out, run, len(finished), finished, complete=True,
                   block_size=manifest.get("block_size"))


# --- a loopback S3 server (moto), for the object-store tests -------------------------------


class MotoS3:
    """A moto S3 server on 127.0.0.1, a fresh bucket in it, and the environment that points
    s3fs/botocore at it (``env``, also set in ``os.environ`` while it runs)."""

    def __init__(self) -> None:
        pytest.importorskip("s3fs")
        self._server_mod = pytest.importorskip("moto.server")
        self.server = self._server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0,
                                                          verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": f"http://{self.host}:{self.port}"}

    def restart(self) -> None:
        """Start the server again on the same port (its buckets live in this process)."""
        import s3fs

        self.server = self._server_mod.ThreadedMotoServer(ip_address="127.0.0.1",
                                                          port=self.port, verbose=False)
        self.server.start()
        s3fs.S3FileSystem.clear_instance_cache()


@contextlib.contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """:class:`MotoS3` for the ``with`` block; the environment is put back after it."""
    s3 = MotoS3()
    saved = {k: os.environ.get(k) for k in s3.env}
    os.environ.update(s3.env)
    try:
        import fsspec
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3.fs = fsspec.filesystem("s3")
        s3.bucket = f"nemo-{uuid.uuid4().hex[:12]}"
        s3.fs.mkdir(s3.bucket)
        yield s3
    finally:
        s3.server.stop()
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
