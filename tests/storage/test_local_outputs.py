"""nemo_dask.storage.outputs and .temporary: what an output path may be (file, symlink,
device, FIFO, socket, -, directory) and how each is written; temporaries that no dataset glob
matches.

The verbs' own behaviour on such paths is tested through the CLI in tests/storage/test_verb_outputs.py; URLs
on a real S3 server in tests/test_object_storage.py.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from conftest import ROOT, FifoReader, is_char_device, make_null_device, needs_root, temporaries

from nemo_dask.dataset import remove_stale_temporaries, scan_hits, write_block
from nemo_dask.errors import OutputExistsError
from nemo_dask.schema import HITS_SCHEMA, QC_SCHEMA
from nemo_dask.storage import outputs, temporary

# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["part-000001.parquet", "hits.tsv", "parameters.json",
                                  "regions.zarr", "report.html", "x" * 250])
def test_temporaries_match_no_data_glob(name: str) -> None:
    tmp = temporary.temporary_name(name)
    assert tmp.startswith(".") and len(tmp) <= 255
    for pattern in ("*.parquet", "part-*.parquet", "*.tsv", "*.json", "*.zarr", "*.html",
                    "*.npy", "*.bed", f"{name}*", "[!.]*"):
        assert not fnmatch.fnmatch(tmp, pattern), (tmp, pattern)
    assert temporary.is_temporary(tmp) and temporary.temporary_of(tmp) == name[:200]


def test_old_temporary_names_are_recognised_for_clean_up() -> None:
    old = ".tmp-0123456789abcdef0123456789abcdef-part-000003.parquet"
    assert temporary.is_temporary(old) and temporary.temporary_of(old) == "part-000003.parquet"
    for name in ("part-000001.parquet", ".hidden", ".tmp-notes.txt", "a.tmp-0123abcd"):
        assert not temporary.is_temporary(name), name


def test_remove_temporaries_only_named_ones(tmp_path: Path) -> None:
    mine = tmp_path / temporary.temporary_name("hits.tsv")
    other = tmp_path / temporary.temporary_name("notes.txt")
    mine.write_text("x")
    other.write_text("x")
    (tmp_path / "hits.tsv").write_text("keep")
    (tmp_path / temporary.temporary_name("export")).mkdir()
    os.symlink(tmp_path / "hits.tsv", tmp_path / temporary.temporary_name("hits.tsv"))
    assert outputs.remove_temporaries(tmp_path, ("hits.tsv", "export")) == 2
    assert not mine.exists() and other.exists() and (tmp_path / "hits.tsv").read_text() == "keep"
    assert len(temporaries(tmp_path)) == 2  # the unnamed one and the link: left alone


# --- regular files and symlinks -----------------------------------------------------------


def test_regular_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.tsv"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    with pytest.raises(RuntimeError), outputs.open_output(path, "w") as f:
        f.write("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old\n" and temporaries(tmp_path) == []
    outputs.write_text(path, "new\n")
    assert path.read_text() == "new\n" and temporaries(tmp_path) == []
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, "the user's permissions are kept"
    outputs.write_json({"a": 1}, tmp_path / "sub" / "x.json")
    assert (tmp_path / "sub" / "x.json").read_text() == '{\n    "a": 1\n}\n'


def test_symlink_target_written_beside_the_target(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "hits.tsv"
    target.write_text("old")
    link = tmp_path / "hits.tsv"
    os.symlink(target, link)
    chain = tmp_path / "chain.tsv"
    os.symlink(link, chain)
    outputs.write_text(chain, "new")
    assert link.is_symlink() and chain.is_symlink() and os.readlink(chain) == str(link)
    assert target.read_text() == "new"
    assert temporaries(tmp_path) == [] and temporaries(tmp_path / "shared") == []
    dangling = tmp_path / "dangling.tsv"
    os.symlink(tmp_path / "shared" / "new.tsv", dangling)
    outputs.write_text(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "shared" / "new.tsv").read_text() == "made"


def test_install_moves_or_copies_into_a_symlinks_target(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    other = shm if shm.is_dir() and os.access(shm, os.W_OK) \
        and os.stat(shm).st_dev != os.stat(tmp_path).st_dev else tmp_path
    target = Path(other) / f"nemo-dask-test-{os.getpid()}.tsv"
    try:
        link = tmp_path / "hits.tsv"
        os.symlink(target, link)
        src = tmp_path / "finished"
        src.write_bytes(b"rows\n")
        outputs.install(src, link)
        assert link.is_symlink() and target.read_bytes() == b"rows\n" and not src.exists()
    finally:
        target.unlink(missing_ok=True)


# --- streams ------------------------------------------------------------------------------


@needs_root
def test_character_device_is_written_and_kept(tmp_path: Path) -> None:
    dev = make_null_device(tmp_path / "null")
    outputs.write_bytes(dev, b"x" * 100_000)
    with outputs.open_output(dev, "w") as f:
        f.write("text")
    assert is_char_device(dev) and temporaries(tmp_path) == []


@needs_root
def test_block_device_is_refused(tmp_path: Path) -> None:
    dev = tmp_path / "disk"
    os.mknod(dev, stat.S_IFBLK | 0o600, os.makedev(7, 200))
    with pytest.raises(OutputExistsError, match="block device"):
        outputs.write_bytes(dev, b"x")
    assert stat.S_ISBLK(os.lstat(dev).st_mode)


def test_fifo_reader_receives_the_bytes(tmp_path: Path) -> None:
    reader = FifoReader(tmp_path / "pipe")
    payload = os.urandom(300_000)  # more than a pipe buffer: really streamed
    outputs.write_bytes(reader.path, payload)
    assert reader.result() == payload
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode) and temporaries(tmp_path) == []


def test_unix_socket_receives_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as f:
            got.append(f.read())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    outputs.write_text(path, "hello\n")
    t.join(30)
    server.close()
    assert got == [b"hello\n"] and stat.S_ISSOCK(os.lstat(path).st_mode)


def test_dash_is_standard_output(capfdbinary) -> None:
    with outputs.open_output("-", "wb") as f:
        f.write(b"a\tb\n")
    with outputs.open_output("-", "w") as f:
        f.write("c\td\n")
    assert capfdbinary.readouterr().out == b"a\tb\nc\td\n"
    assert outputs.is_stdout("-")


def test_dash_survives_a_writer_that_closes_its_file() -> None:
    # pyarrow and polars close the file objects they are given; stdout must stay usable.
    code = ("import pyarrow as pa, pyarrow.parquet as pq, sys\n"
            "from nemo_dask.storage.outputs import open_output\n"
            "with open_output('-') as f: pq.write_table(pa.table({'a': [1]}), f)\n"
            "print('after', file=sys.stderr); sys.stdout.write('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(b"PAR1") and res.stdout.endswith(b"ok")


# --- wrong kinds --------------------------------------------------------------------------


def test_directory_where_a_file_is_wanted(tmp_path: Path) -> None:
    d = tmp_path / "hits.tsv"
    d.mkdir()
    (d / "keep").write_text("keep")
    with pytest.raises(OutputExistsError, match="is a directory"):
        outputs.write_text(d, "x")
    link = tmp_path / "link.tsv"
    os.symlink(d, link)
    with pytest.raises(OutputExistsError, match="is a directory"):
        outputs.write_text(link, "x")
    with pytest.raises(OutputExistsError, match="not a directory"):
        outputs.write_text(d / "keep" / "x.tsv", "x")
    assert (d / "keep").read_text() == "keep" and link.is_symlink()
    assert temporaries(tmp_path) == [] and temporaries(d) == []


def test_file_or_stream_where_a_directory_is_wanted(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("keep")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(f, tmp_path / "link")
    for p in (f, tmp_path / "fifo", tmp_path / "link"):
        with pytest.raises(OutputExistsError, match="must be a directory"):
            outputs.make_output_dir(p)
    with pytest.raises(OutputExistsError, match="standard output"):
        outputs.output_dir("-")
    with pytest.raises(OutputExistsError, match="not a directory"):
        outputs.make_output_dir(f / "sub")
    assert f.read_text() == "keep" and stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "dirlink")
    assert outputs.make_output_dir(tmp_path / "dirlink") == (tmp_path / "real").resolve()
    os.symlink(tmp_path / "later", tmp_path / "dangling")
    outputs.make_output_dir(tmp_path / "dangling")
    assert (tmp_path / "later").is_dir() and (tmp_path / "dangling").is_symlink()


def test_remove_owned_refuses_links_and_special_files(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "data.txt").write_text("keep")
    os.symlink(user, tmp_path / "hits")
    os.mkfifo(tmp_path / "qc")
    for p in (tmp_path / "hits", tmp_path / "qc"):
        with pytest.raises(OutputExistsError, match="refusing to delete"):
            outputs.remove_owned(p)
    with pytest.raises(OutputExistsError, match="not nemo_dask's own"):
        outputs.remove_owned(user, lambda p: False)
    assert (user / "data.txt").read_text() == "keep" and (tmp_path / "hits").is_symlink()
    assert outputs.remove_owned(user) and not user.exists()
    assert not outputs.remove_owned(tmp_path / "missing")


# --- the dataset (issue 15 item 8) ---------------------------------------------------------


def _empty(schema: pa.Schema) -> pl.DataFrame:
    return pl.DataFrame(pl.from_arrow(schema.empty_table()))


def _one_hit() -> pl.DataFrame:
    row = {f.name: [None] for f in HITS_SCHEMA}
    return pl.from_arrow(pa.Table.from_pydict(row, schema=HITS_SCHEMA))


def test_killed_writer_leftovers_do_not_break_the_documented_reads(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    write_block(out, 0, _one_hit(), _empty(QC_SCHEMA))
    # A writer killed mid-partition, in another process, as a dask worker would be.
    code = ("import os, sys; from nemo_dask.storage.outputs import open_output\n"
            "cm = open_output(sys.argv[1]); f = cm.__enter__(); f.write(b'PAR1 half a partition');"
            " f.flush(); os.kill(os.getpid(), 9)")
    res = subprocess.run([sys.executable, "-c", code, str(out / "hits" / "part-000001.parquet")],
                         timeout=120)
    assert res.returncode == -9
    left = temporaries(out / "hits")
    assert len(left) == 1 and left[0].startswith(".part-000001.parquet.tmp-")
    assert not (out / "hits" / "part-000001.parquet").exists()
    # The read call-hits prints and the README shows, pyarrow's and ours: one row each.
    assert pl.scan_parquet(f"{out}/hits/*.parquet").collect().height == 1
    assert pads.dataset(out / "hits", format="parquet").to_table().num_rows == 1
    assert scan_hits(out).collect().height == 1
    # One left by an older version, with the name the issue reported (the glob matched it):
    # the next run's clean-up removes both (test_verb_outputs checks that call-hits does it).
    old = out / "hits" / ".tmp-0123456789abcdef0123456789abcdef-part-000002.parquet"
    old.write_bytes(b"PAR1 truncated")
    assert remove_stale_temporaries(out) == 2 and temporaries(out / "hits") == []
    assert pl.scan_parquet(f"{out}/hits/*.parquet").collect().height == 1


def test_dataset_files_follow_the_rules(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    (out / "hits").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.parquet"
    os.symlink(elsewhere, out / "hits" / "part-000000.parquet")
    (out / "qc").mkdir()
    (out / "qc" / "part-000000.parquet").mkdir()
    with pytest.raises(OutputExistsError, match="is a directory"):
        write_block(out, 0, _one_hit(), _empty(QC_SCHEMA))
    assert (out / "hits" / "part-000000.parquet").is_symlink()
    assert pl.read_parquet(elsewhere).height == 1  # written through the link
    assert (out / "qc" / "part-000000.parquet").is_dir()
    if ROOT:
        make_null_device(out / "hits" / "part-000001.parquet")
        os.rmdir(out / "qc" / "part-000000.parquet")
        write_block(out, 1, _one_hit(), _empty(QC_SCHEMA))
        assert is_char_device(out / "hits" / "part-000001.parquet")
