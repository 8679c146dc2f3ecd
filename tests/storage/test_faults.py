"""A full disk, a read-only file system, an unwritable OUT or HOME, an unreadable store: one
line naming the path, the file system's free space, what was written and the fix; exit 2;
nothing half-written; and a rerun once the fault is fixed resumes with identical hits
(issue 29, item 2).

Real file systems: small tmpfs mounts (full, read-only), and permission faults as a root
process without CAP_DAC_OVERRIDE (``setpriv``), as an ordinary user meets them. Skipped where
this test process may not mount or drop capabilities.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from nemo_dask.cli import main
from nemo_dask.storage.faults import StorageFaultError, fault_error, tree_size
from nemo_dask.storage.temporary import temporary_name

DATA = Path(__file__).parents[1] / "data"
MODISCO = str(DATA / "modisco.h5")
SETPRIV = shutil.which("setpriv")
#: A root process that, like an ordinary user, cannot write what it does not own for writing.
NO_OVERRIDE = [SETPRIV or "setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
NEMO = [sys.executable, "-m", "nemo_dask"]


def _resize(d: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(d)], check=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's 350 regions as a store, and a reference run of them on a roomy disk."""
    d = tmp_path_factory.mktemp("faults")
    assert main(["convert", "npz", "-r", str(DATA / "regions.npz"), "-o", str(d / "r.zarr"),
                 "--no-progress"]) == 0
    assert main(["call-hits", "-r", str(d / "r.zarr"), "-m", MODISCO, "-o", str(d / "ref"),
                 "--workers", "1", "--no-progress"]) == 0
    return d / "r.zarr"


def _hits(out: Path) -> pl.DataFrame:
    return pl.read_parquet(str(out / "hits" / "*.parquet")).sort("peak_id", "motif_id",
                                                                 "hit_start")


def _only_error_line(err: str, verb: str) -> str:
    """stderr holds nothing but our own lines; returns the error line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("nemo-dask") for line in lines), err
    errors = [line for line in lines if line.startswith(f"nemo-dask {verb}: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_full_out_is_one_line_keeps_whole_blocks_and_resumes(store: Path, mounts,
                                                             capfd: pytest.CaptureFixture[str]
                                                             ) -> None:
    fs = mounts("160k")
    out = fs / "out"
    args = ["call-hits", "-r", str(store), "-m", MODISCO, "-o", str(out), "--workers", "1",
            "--no-progress"]
    assert main(args) == 2
    line = _only_error_line(capfd.readouterr().err, "call-hits")
    assert f"{out}/hits/part-" in line or f"{out}/qc/part-" in line
    assert "no space left on device" in line and "free of 160.00 kiB" in line
    assert " of 16 blocks (" in line and "run the same command again: it resumes" in line
    # Only complete partitions, no temporaries; the failing block left nothing.
    for sub in ("hits", "qc"):
        names = os.listdir(out / sub)
        assert names and all(n.startswith("part-") for n in names), names
        for name in names:
            pl.read_parquet(out / sub / name)
    _resize(fs, "8m")
    assert main(args) == 0
    assert "already done" in capfd.readouterr().out
    assert _hits(out).equals(_hits(store.parent / "ref"))


def test_full_disk_while_converting_leaves_nothing(mounts,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    fs = mounts("600k")
    target = fs / "r.zarr"
    args = ["convert", "npz", "-r", str(DATA / "regions.npz"), "-o", str(target),
            "--no-progress"]
    assert main(args) == 2
    line = _only_error_line(capfd.readouterr().err, "convert")
    assert line.startswith(f"nemo-dask convert: error: {target}: no space left on device")
    assert "of 350 regions (" in line and "the partial store was removed" in line
    assert os.listdir(fs) == []
    # call-hits converting a regions.npz into a full OUT: named as OUT/regions.zarr.
    assert main(["call-hits", "-r", str(DATA / "regions.npz"), "-m", MODISCO, "-o",
                 str(fs / "out"), "--workers", "1", "--no-progress"]) == 2
    line = _only_error_line(capfd.readouterr().err, "call-hits")
    assert f"{fs}/out/regions.zarr (converting " in line and ".tmp-" not in line
    assert [n for n in os.listdir(fs) if n != "out"] == []
    _resize(fs, "8m")
    assert main(args) == 0


def test_read_only_file_system(store: Path, mounts,
                               capfd: pytest.CaptureFixture[str]) -> None:
    ro = mounts("1m", read_only=True)
    cases = [
        ("call-hits", ["call-hits", "-r", str(store), "-m", MODISCO, "-o", str(ro / "out"),
                       "--no-progress"], f"{ro}/out: read-only file system; no block was "
                                         "written"),
        ("convert", ["convert", "npz", "-r", str(DATA / "regions.npz"), "-o",
                     str(ro / "r.zarr"), "--no-progress"], f"{ro}: read-only file system"),
        ("export", ["export", "-H", str(store.parent / "ref"), "-o", str(ro / "ex")],
         f"{ro}/ex: read-only file system"),
    ]
    for verb, args, expected in cases:
        assert main(args) == 2, verb
        line = _only_error_line(capfd.readouterr().err, verb)
        assert expected in line and "make it writable" in line, line


needs_setpriv = pytest.mark.skipif(SETPRIV is None or os.geteuid() != 0,
                                   reason="needs root and setpriv to drop CAP_DAC_OVERRIDE")


def _run_without_override(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NO_OVERRIDE, *NEMO, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


@needs_setpriv
def test_unwritable_out_and_unreadable_store_chunk(store: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    done = _run_without_override(["call-hits", "-r", str(store), "-m", MODISCO, "-o",
                                  str(locked / "out"), "--no-progress"])
    assert done.returncode == 2, done.stderr
    line = _only_error_line(done.stderr, "call-hits")
    assert f"{locked}/out: permission denied" in line and "make it writable" in line
    # A chunk no worker may read: found by a worker, reported once, whole blocks kept.
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    chunk = sorted((copy / "contributions" / "c").rglob("*"))[-1]
    chunk.chmod(0)
    out = tmp_path / "out"
    done = _run_without_override(["call-hits", "-r", str(copy), "-m", MODISCO, "-o", str(out),
                                  "--workers", "1", "--no-progress"])
    assert done.returncode == 2, done.stderr
    line = _only_error_line(done.stderr, "call-hits")
    assert f"{chunk}: permission denied" in line and "make it readable" in line
    assert "of 16 blocks" in line
    chunk.chmod(0o644)
    done = _run_without_override(["call-hits", "-r", str(copy), "-m", MODISCO, "-o", str(out),
                                  "--workers", "1", "--no-progress"])
    assert done.returncode == 0, done.stderr
    assert _hits(out).equals(_hits(store.parent / "ref"))


@needs_setpriv
def test_home_not_writable_prints_nothing_but_our_lines(store: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o555)
    out = tmp_path / "out"
    done = _run_without_override(["call-hits", "-r", str(store), "-m", MODISCO, "-o", str(out),
                                  "--workers", "1", "--no-progress"], HOME=str(home))
    assert done.returncode == 0 and _hits(out).equals(_hits(store.parent / "ref"))
    assert all(line.startswith("nemo-dask") for line in done.stderr.splitlines()), done.stderr
    done = _run_without_override(["report", "-r", str(store), "-H", str(out), "-o",
                                  str(tmp_path / "rep"), "-n"], HOME=str(home))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert os.listdir(home) == []


def test_fault_errors_name_the_place_and_travel(tmp_path: Path) -> None:
    tmp = tmp_path / temporary_name("r.zarr")
    err = fault_error(OSError(errno.ENOSPC, "No space left on device", str(tmp)), tmp_path,
                      "3 of 16 blocks are kept")
    text = str(err)
    # A hidden temporary is named by its directory, which is what the user can fix.
    assert text.startswith(f"{tmp_path}: no space left on device (its file system has ")
    assert "; 3 of 16 blocks are kept; free space there" in text
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, StorageFaultError) and str(back) == text and back.errno == errno.ENOSPC
    assert "4 of 16" in str(back.with_written("4 of 16 blocks are kept"))
    denied = fault_error(PermissionError(errno.EACCES, "Permission denied"), "/x/out")
    assert str(denied).startswith("/x/out: permission denied; make it writable")
    (tmp_path / "a").write_bytes(b"x" * 10)
    assert tree_size(tmp_path) == 10
