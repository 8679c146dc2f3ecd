"""Fixtures of the parity tests: finemo 0.41 run live in this session, and editable run copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

DATA = Path(__file__).parent.parent / "data"
#: finemo's batch size for live runs: its fastest on CPU (its batch size changes its rounding, and
#: with it the step of a knife-edge region: test_live_low_lambda).
FINEMO_BATCH = 16


def _finemo_missing() -> str | None:
    try:
        import finemo.main  # noqa: F401
    except ImportError as err:
        return f"finemo 0.41 is not importable ({err}); pip install -e '.[test]' installs it"
    return None


def require_finemo() -> None:
    """Skip the calling test, with the reason, when finemo cannot be imported."""
    reason = _finemo_missing()
    if reason:
        pytest.skip(reason)


def run_finemo(args: list[str], cwd: Path | None = None, threads: int | None = None) -> None:
    """``finemo ARGS`` in a subprocess (finemo's own process and warnings; its torch threads:
    ``threads``, else torch's default)."""
    env = os.environ | {"PYTHONWARNINGS": "ignore"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "finemo", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"finemo {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def finemo_live(tmp_path_factory) -> Callable[[str], Path]:
    """``finemo_live(mode)``: finemo call-hits on tests/data/regions.npz, run once per mode."""
    require_finemo()
    root = tmp_path_factory.mktemp("finemo_live")
    done: dict[str, Path] = {}

    def get(mode: str) -> Path:
        if mode not in done:
            out = root / mode
            run_finemo(["call-hits", "-r", str(DATA / "regions.npz"), "-m",
                        str(DATA / "modisco.h5"), "-o", str(out), "-M", mode, "-b",
                        str(FINEMO_BATCH)])
            done[mode] = out
        return done[mode]

    return get


def edit_finemo_dir(src: Path, dst: Path, *,
                    qc: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
                    hits: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> Path:
    """Copy finemo output directory ``src`` to ``dst``, rewriting its TSVs through ``qc``/``hits``.

    The TSVs are read and written with polars; unedited values survive the round trip exactly
    (float32 text -> float64 -> text -> float32).
    """
    shutil.copytree(src, dst)
    for name, edit in (("peaks_qc.tsv", qc), ("hits.tsv", hits)):
        if edit is None:
            continue
        table = pl.read_csv(dst / name, separator="\t", infer_schema_length=None)
        edit(table).write_csv(dst / name, separator="\t")
    return dst


@pytest.fixture(scope="package")
def in_process(tmp_path_factory, modisco_h5) -> Callable[[str], Path]:
    """``in_process(mode)``: call-hits on all 350 regions as one block on an in-process cluster
    (``--cluster in-process``: the plan, task and ending of any run, in this process)."""
    from nemo_dask.calling.api import call_hits
    from nemo_dask.clusters.connect import ClusterOptions

    root = tmp_path_factory.mktemp("in_process")
    done: dict[str, Path] = {}

    def get(mode: str) -> Path:
        if mode not in done:
            done[mode] = call_hits(DATA / "regions.npz", modisco_h5, root / mode, mode=mode,
                                   block_size=350, progress=False,
                                   cluster=ClusterOptions(cluster="in-process")).out
        return done[mode]

    return get


@pytest.fixture(scope="package")
def distributed_pp(tmp_path_factory, modisco_h5) -> Path:
    """call-hits (pp, defaults) on all 350 regions on a 2-worker embedded cluster of its own
    (made once for the package; the clients of tests/conftest.py are per module)."""
    from nemo_dask.calling.api import call_hits
    from nemo_dask.clusters.connect import ClusterOptions

    out = tmp_path_factory.mktemp("distributed") / "out"
    res = call_hits(DATA / "regions.npz", modisco_h5, out, block_size=50, progress=False,
                    cluster=ClusterOptions(n_workers=2, dashboard_address=None))
    assert res.n_blocks == 7
    return res.out
