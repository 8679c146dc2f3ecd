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
#: finemo's batch size for live runs: its fastest on CPU, and batching does not change its steps.
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


def run_finemo(args: list[str], cwd: Path | None = None) -> None:
    """``finemo ARGS`` in a subprocess (finemo's own process, threads and warnings)."""
    proc = subprocess.run([sys.executable, "-m", "finemo", *args], capture_output=True,
                          text=True, cwd=cwd, env=os.environ | {"PYTHONWARNINGS": "ignore"})
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


def write_in_process(out: Path, result, motifs, regions: dict, mode: str) -> Path:
    """Write an in-process ``fit_block`` result over all of ``regions`` as a run directory.

    Stored exactly as call-hits stores a block (calling.columns.stored_tables, one partition),
    so that compare_hits and the readers see it like any run.
    """
    import numpy as np

    from nemo_dask.calling.columns import stored_tables
    from nemo_dask.dataset import PARAMS_FILE, write_block, write_motifs
    from nemo_dask.params import SolverParams
    from nemo_dask.storage.outputs import write_json

    peaks = pl.DataFrame({"peak_id": regions["peak_id"], "chr": regions["chr"],
                          "chr_id": regions["chr_id"].astype(np.uint32),
                          "peak_region_start": regions["start"],
                          "peak_name": regions["peak_name"]})
    hits, qc = stored_tables(result.hits, result.qc, peaks, motifs, 0)
    write_block(out, 0, hits, qc)
    write_motifs(out, motifs.table)
    write_json({"mode": mode, "convergence_tol": SolverParams().convergence_tol},
                      out / PARAMS_FILE)
    return out


@pytest.fixture(scope="package")
def in_process(tmp_path_factory, regions_npz, modisco_h5) -> Callable[[str], Path]:
    """``in_process(mode)``: fit_block on all 350 regions in this process, as a run directory."""
    from nemo_dask.motifs import load_motifs
    from nemo_dask.params import MotifParams, SolverParams
    from nemo_dask.solver.stream import fit_block

    root = tmp_path_factory.mktemp("in_process")
    done: dict[str, Path] = {}

    def get(mode: str) -> Path:
        if mode not in done:
            params = MotifParams(mode=mode)
            motifs = load_motifs(modisco_h5, params)
            res = fit_block(regions_npz["sequences"], regions_npz["contributions"], motifs,
                            params=SolverParams(mode=mode))
            done[mode] = write_in_process(root / mode, res, motifs, regions_npz, mode)
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
