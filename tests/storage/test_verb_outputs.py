"""Issue 20 through the CLI, as a user would: every file- and directory-writing verb pointed at a
character device, a FIFO, a symlink and a directory (or file) of the wrong kind.

Devices are made with mknod in the test's own directory (root only; skipped otherwise), FIFOs
are read by a thread, and ``-o -`` runs in a subprocess so that standard output is real. What is
at the path must be intact afterwards (or written through, for a link's target and a FIFO's
reader), and an output that cannot be written gets one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import ROOT, FifoReader, is_char_device, make_null_device, needs_root, temporaries

import nemo_dask
from nemo_dask.cli import main
from nemo_dask.finemo.importing import import_finemo
from nemo_dask.storage import temporary

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """finemo's call-hits output as a nemo_dask dataset (the input of the post-run verbs)."""
    out = tmp_path_factory.mktemp("run") / "out"
    import_finemo(DATA / "finemo_out", out, regions_per_partition=100)
    return out


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Run the CLI; expect exit 2 with one line on stderr holding ``words``."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(argv)
    assert code == 0, capsys.readouterr().err


def listing(d: Path) -> list[str]:
    return sorted(os.listdir(d))


# --- collapse-hits and intersect-hits: one output file ------------------------------------

FILE_VERBS: dict[str, Callable[[Path, str], list[str]]] = {
    "collapse-hits": lambda run, o: ["collapse-hits", "-i", str(run), "-o", o],
    "intersect-hits": lambda run, o: ["intersect-hits", "-i", str(run), str(run), "-o", o],
}


@pytest.fixture(scope="module")
def reference(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("ref")
    out = {}
    for verb, argv in FILE_VERBS.items():
        assert main(argv(run_dir, str(d / f"{verb}.tsv"))) == 0
        out[verb] = (d / f"{verb}.tsv").read_bytes()
    return out


@pytest.mark.parametrize("verb", FILE_VERBS)
@needs_root
def test_file_verb_keeps_a_character_device(verb, run_dir, tmp_path, capsys) -> None:
    dev = make_null_device(tmp_path / "null")
    ok(FILE_VERBS[verb](run_dir, str(dev)), capsys)
    assert is_char_device(dev) and listing(tmp_path) == ["null"]


@pytest.mark.parametrize("verb", FILE_VERBS)
def test_file_verb_streams_into_a_fifo(verb, run_dir, reference, tmp_path, capsys) -> None:
    reader = FifoReader(tmp_path / "pipe")
    ok(FILE_VERBS[verb](run_dir, str(reader.path)), capsys)
    assert reader.result() == reference[verb]
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode) and listing(tmp_path) == ["pipe"]


@pytest.mark.parametrize("verb", FILE_VERBS)
def test_file_verb_writes_a_symlinks_target(verb, run_dir, reference, tmp_path, capsys) -> None:
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "hits.tsv"
    target.write_text("old")
    os.symlink(target, tmp_path / "hits.tsv")
    ok(FILE_VERBS[verb](run_dir, str(tmp_path / "hits.tsv")), capsys)
    assert (tmp_path / "hits.tsv").is_symlink() and target.read_bytes() == reference[verb]
    os.symlink(tmp_path / "shared" / "new.tsv", tmp_path / "dangling.tsv")
    ok(FILE_VERBS[verb](run_dir, str(tmp_path / "dangling.tsv")), capsys)
    assert (tmp_path / "dangling.tsv").is_symlink()
    assert (tmp_path / "shared" / "new.tsv").read_bytes() == reference[verb]
    assert temporaries(tmp_path) == [] and temporaries(tmp_path / "shared") == []


@pytest.mark.parametrize("verb", FILE_VERBS)
def test_file_verb_refuses_a_directory(verb, run_dir, tmp_path, capsys) -> None:
    d = tmp_path / "hits.tsv"
    d.mkdir()
    (d / "mine.txt").write_text("keep")
    refused(FILE_VERBS[verb](run_dir, str(d)), capsys, str(d), "is a directory")
    os.symlink(d, tmp_path / "link.tsv")
    refused(FILE_VERBS[verb](run_dir, str(tmp_path / "link.tsv")), capsys, "is a directory")
    assert listing(d) == ["mine.txt"] and listing(tmp_path) == ["hits.tsv", "link.tsv"]


@pytest.mark.parametrize("verb", FILE_VERBS)
@pytest.mark.parametrize("spelling", ["-", "/dev/stdout"])
def test_file_verb_prints_to_standard_output(verb, spelling, run_dir, reference) -> None:
    argv = FILE_VERBS[verb](run_dir, spelling)
    res = subprocess.run([sys.executable, "-m", "nemo_dask", *argv], capture_output=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == reference[verb]  # only the table: pipeable
    assert b"standard output" in res.stderr


# --- export: a directory of seven files ---------------------------------------------------


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("exported")
    assert main(["export", "-H", str(run_dir), "-o", str(dest)]) == 0
    return dest


def test_export_files_of_every_kind(run_dir, exported, tmp_path, capsys) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "dest")  # the directory itself through a link
    (tmp_path / "shared").mkdir()
    os.symlink(tmp_path / "shared" / "hits.tsv", real / "hits.tsv")
    reader = FifoReader(real / "hits.bed")
    if ROOT:
        make_null_device(real / "hits_unique.tsv")
    ok(["export", "-H", str(run_dir), "-o", str(tmp_path / "dest")], capsys)
    assert (tmp_path / "dest").is_symlink() and (real / "hits.tsv").is_symlink()
    assert (tmp_path / "shared" / "hits.tsv").read_bytes() == (exported / "hits.tsv").read_bytes()
    assert reader.result() == (exported / "hits.bed").read_bytes()
    assert stat.S_ISFIFO(os.lstat(real / "hits.bed").st_mode)
    if ROOT:
        assert is_char_device(real / "hits_unique.tsv")
    for name in ("peaks_qc.tsv", "motif_data.tsv", "motif_cwms.npy", "parameters.json"):
        assert (real / name).read_bytes() == (exported / name).read_bytes(), name
    assert temporaries(real) == []


def test_export_refuses_a_directory_among_its_files(run_dir, tmp_path, capsys) -> None:
    (tmp_path / "dest" / "hits.bed").mkdir(parents=True)
    refused(["export", "-H", str(run_dir), "-o", str(tmp_path / "dest")], capsys,
            "hits.bed", "is a directory")
    assert listing(tmp_path / "dest") == ["hits.bed"], "nothing written"


# --- directory outputs: export, report, convert, call-hits --------------------------------


def wrong_kinds(tmp_path: Path) -> dict[str, Path]:
    """A file, a FIFO, a link to a file and (as root) a character device."""
    kinds = {"file": tmp_path / "a_file", "fifo": tmp_path / "a_fifo",
             "link to a file": tmp_path / "a_link"}
    kinds["file"].write_text("keep")
    os.mkfifo(kinds["fifo"])
    os.symlink(kinds["file"], kinds["link to a file"])
    if ROOT:
        kinds["character device"] = make_null_device(tmp_path / "a_device")
    return kinds


def assert_intact(kinds: dict[str, Path]) -> None:
    assert kinds["file"].read_text() == "keep"
    assert stat.S_ISFIFO(os.lstat(kinds["fifo"]).st_mode)
    assert kinds["link to a file"].is_symlink()
    if "character device" in kinds:
        assert is_char_device(kinds["character device"])
    d = kinds["file"].parent
    assert temporaries(d) == [] and len(listing(d)) == len(kinds)


def dir_verbs(run_dir: Path, tiny_npz: Path) -> dict[str, Callable[[str], list[str]]]:
    return {
        "export": lambda o: ["export", "-H", str(run_dir), "-o", o],
        "report": lambda o: ["report", "-r", str(DATA / "regions.npz"), "-H", str(run_dir),
                             "-o", o],
        "convert": lambda o: ["convert", "npz", "-r", str(tiny_npz), "-o", o, "--overwrite",
                              "--no-progress"],
        "call-hits": lambda o: ["call-hits", "-r", str(tiny_npz), "-m",
                                str(DATA / "modisco.h5"), "-o", o, "--overwrite",
                                "--workers", "1", "--no-progress"],
    }


@pytest.mark.parametrize("verb", ["export", "report", "convert", "call-hits"])
def test_directory_verb_refuses_a_file_fifo_or_device(verb, run_dir, tiny_npz, tmp_path,
                                                      capsys) -> None:
    argv = dir_verbs(run_dir, tiny_npz)[verb]
    kinds = wrong_kinds(tmp_path)
    for kind, path in kinds.items():
        words = {"file": "is a file", "fifo": "is a FIFO", "link to a file": "is a file",
                 "character device": "is a character device"}[kind]
        refused(argv(str(path)), capsys, str(path), words, "must be a directory")
    refused(argv("-"), capsys, "standard output")
    assert_intact(kinds)


def test_report_files_of_every_kind(run_dir, tmp_path, capsys) -> None:
    plain = tmp_path / "plain"
    ok(["report", "-r", str(DATA / "regions.npz"), "-H", str(run_dir), "-o", str(plain)], capsys)
    real = tmp_path / "real"
    (real / "elsewhere").mkdir(parents=True)
    os.symlink(real, tmp_path / "report")
    os.symlink(real / "elsewhere", real / "figures")
    os.symlink(tmp_path / "page.html", real / "report.html")
    reader = FifoReader(real / "motif_occurrences.tsv")
    if ROOT:
        make_null_device(real / "motif_report.tsv")
    ok(["report", "-r", str(DATA / "regions.npz"), "-H", str(run_dir), "-o",
        str(tmp_path / "report")], capsys)
    assert reader.result() == (plain / "motif_occurrences.tsv").read_bytes()
    assert (real / "report.html").is_symlink() and (real / "figures").is_symlink()
    assert (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (real / "elsewhere").rglob("*.png")) == \
        sorted(p.name for p in (plain / "figures").rglob("*.png"))
    if ROOT:
        assert is_char_device(real / "motif_report.tsv")
    assert temporaries(real) == []


def test_report_refuses_before_any_work(run_dir, tmp_path, capsys) -> None:
    (tmp_path / "rep" / "report.html").mkdir(parents=True)
    refused(["report", "-r", str(DATA / "regions.npz"), "-H", str(run_dir), "-o",
             str(tmp_path / "rep")], capsys, "report.html", "is a directory")
    assert listing(tmp_path / "rep") == ["report.html"]
    (tmp_path / "rep2").mkdir()
    (tmp_path / "rep2" / "figures").write_text("keep")
    refused(["report", "-r", str(DATA / "regions.npz"), "-H", str(run_dir), "-o",
             str(tmp_path / "rep2")], capsys, "figures", "must be a directory")
    assert listing(tmp_path / "rep2") == ["figures"]


def test_report_never_deletes_a_foreign_finemo_dataset(tmp_path, capsys) -> None:
    # A finemo output directory is imported into OUT_DIR/finemo_dataset, replacing an earlier
    # import; a user's directory of that name is not ours and stays.
    rep = tmp_path / "rep"
    (rep / "finemo_dataset").mkdir(parents=True)
    (rep / "finemo_dataset" / "notes.txt").write_text("keep")
    refused(["report", "-r", str(DATA / "regions.npz"), "-H", str(DATA / "finemo_out"), "-o",
             str(rep)], capsys, "not nemo_dask's own")
    assert (rep / "finemo_dataset" / "notes.txt").read_text() == "keep"


def test_convert_overwrite_through_a_symlink(tiny_npz, tmp_path, capsys) -> None:
    from nemo_dask.regions.store import open_store as open_regions

    argv = ["convert", "npz", "-r", str(tiny_npz), "--no-progress", "--overwrite", "-o"]
    (tmp_path / "disk").mkdir()
    os.symlink(tmp_path / "disk" / "regions.zarr", tmp_path / "regions.zarr")  # dangling
    ok([*argv, str(tmp_path / "regions.zarr")], capsys)
    assert (tmp_path / "regions.zarr").is_symlink() and (tmp_path / "disk" / "regions.zarr").is_dir()
    ok([*argv, str(tmp_path / "regions.zarr")], capsys)  # replaced beside the target
    assert (tmp_path / "regions.zarr").is_symlink()
    assert open_regions(str(tmp_path / "regions.zarr")).n_regions == 24
    assert listing(tmp_path / "disk") == ["regions.zarr"] and listing(tmp_path) == [
        "disk", "regions.zarr"]
    # A link to a directory that is not a store: its contents are not ours.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.txt").write_text("keep")
    os.symlink(tmp_path / "mine", tmp_path / "link")
    refused([*argv, str(tmp_path / "link")], capsys, "not a nemo_dask regions store")
    assert listing(tmp_path / "mine") == ["data.txt"]


def test_call_hits_outputs(tiny_npz, tmp_path, capsys) -> None:
    motifs = str(DATA / "modisco.h5")

    def argv(out: Path, *extra: str) -> list[str]:
        return ["call-hits", "-r", str(tiny_npz), "-m", motifs, "-o", str(out), "--workers", "1",
                "--no-progress", *extra]

    # OUT through a link to a directory not made yet: written there, the link stays.
    os.symlink(tmp_path / "disk" / "out", tmp_path / "out")
    ok(argv(tmp_path / "out"), capsys)
    real = tmp_path / "disk" / "out"
    assert (tmp_path / "out").is_symlink() and (real / "hits").is_dir()
    assert (real / "regions.zarr").is_dir() and listing(tmp_path / "disk") == ["out"]
    n_hits = pl.scan_parquet(f"{tmp_path}/out/hits/*.parquet").collect().height
    assert n_hits > 0

    # A killed writer's leftover: the documented read still works; the next run removes it.
    leftover = real / "hits" / temporary.temporary_name("part-000001.parquet")
    leftover.write_bytes(b"PAR1 half")
    assert pl.scan_parquet(f"{tmp_path}/out/hits/*.parquet").collect().height == n_hits
    ok(argv(tmp_path / "out"), capsys)  # a resume: nothing to do but clean up
    assert temporaries(real / "hits") == []

    # --overwrite of another run never deletes what is not ours: a link among the entries.
    user = tmp_path / "user.json"
    user.write_text("keep")
    os.unlink(real / "manifest.json")
    os.symlink(user, real / "manifest.json")
    refused(argv(tmp_path / "out", "--overwrite", "-l", "0.9"), capsys, "manifest.json",
            "symbolic link")
    assert user.read_text() == "keep" and (real / "hits").is_dir(), "nothing deleted"
    # Without the foreign link, our own output behind OUT's link is replaced; the link stays.
    os.unlink(real / "manifest.json")
    ok(argv(tmp_path / "out", "--overwrite", "-l", "0.9"), capsys)
    params = json.loads((real / "parameters.json").read_text())
    assert params["lambda_default"] == 0.9 and (tmp_path / "out").is_symlink()
    assert user.read_text() == "keep" and listing(tmp_path / "disk") == ["out"]

    # A foreign directory with --overwrite: a user's hits/ (here a link to their data) stays.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "part-000000.parquet").write_text("keep")
    os.symlink(tmp_path / "theirs", foreign / "hits")
    refused(argv(foreign, "--overwrite"), capsys, "hits", "refusing to delete")
    (foreign / "qc").mkdir()
    (foreign / "qc" / "results.csv").write_text("keep")
    os.unlink(foreign / "hits")
    refused(argv(foreign, "--overwrite"), capsys, "qc", "not nemo_dask's own")
    assert (tmp_path / "theirs" / "part-000000.parquet").read_text() == "keep"
    assert (foreign / "qc" / "results.csv").read_text() == "keep"
    assert listing(foreign) == ["qc"]
    assert not [n for n in listing(tmp_path) if temporary.is_temporary(n)], "no conversion left"


def test_version_is_the_package_version(tmp_path, tiny_npz, capsys) -> None:
    from nemo_dask.regions.convert import convert_npz

    store = convert_npz(tiny_npz, str(tmp_path / "s.zarr"), progress=False)
    assert store.attrs["created_by"] == f"nemo_dask {nemo_dask.version()}"
    assert np.isfinite(store.n_regions)


def test_one_version(capsys) -> None:
    from importlib.metadata import version

    from nemo_dask.cli import main

    assert nemo_dask.version() == version("nemo_dask") == nemo_dask.__version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"nemo-dask {nemo_dask.version()}"
