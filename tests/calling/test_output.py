"""calling/identity.py and calling/output.py: run identity, refusing or resuming into an output
directory, and which blocks a crashed run finished (unit level; test_call_hits.py runs them end
to end)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from nemo_dask.calling.identity import fingerprint, finished_blocks
from nemo_dask.calling.output import prepare_out
from nemo_dask.dataset import PARAMS_FILE, QC_DIR, part_name, write_partitions
from nemo_dask.errors import OutputExistsError
from nemo_dask.motifs import load_motifs, motifs_digest
from nemo_dask.params import MotifParams
from nemo_dask.schema import HITS_SCHEMA, QC_SCHEMA
from nemo_dask.storage.outputs import write_json


@pytest.fixture(scope="module")
def motifs(modisco_h5):
    return load_motifs(modisco_h5)


def test_fingerprint_changes_with_identity_and_motifs(motifs, modisco_h5):
    identity = {"mode": "pp", "motifs": motifs_digest(motifs)}
    fp = fingerprint(identity)
    assert fp == fingerprint(dict(reversed(list(identity.items()))))  # key order is no identity
    assert fp != fingerprint(identity | {"mode": "hh"})
    other = load_motifs(modisco_h5, MotifParams(lambda_default=0.5))
    assert fp != fingerprint(identity | {"motifs": motifs_digest(other)})


def test_prepare_out_resumes_refuses_and_overwrites(tmp_path: Path):
    out = tmp_path / "out"
    assert prepare_out(out, "a", {"mode": "pp"}, overwrite=False) is False  # nothing there
    out.mkdir()
    write_json({"nemo_dask": {"fingerprint": "a", "identity": {"mode": "pp"}}},
                      out / PARAMS_FILE)
    assert prepare_out(out, "a", {"mode": "pp"}, overwrite=False) is True
    with pytest.raises(OutputExistsError, match="parameters differ: mode pp -> hh"):
        prepare_out(out, "b", {"mode": "hh"}, overwrite=False)
    (out / "mine.txt").write_text("kept")
    assert prepare_out(out, "b", {"mode": "hh"}, overwrite=True) is False
    assert not (out / PARAMS_FILE).exists() and (out / "mine.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("")
    with pytest.raises(OutputExistsError, match="not a nemo-dask output directory"):
        prepare_out(other, "a", {}, overwrite=False)


def test_finished_blocks_are_read_from_the_files(tmp_path: Path):
    qc = pl.from_arrow(QC_SCHEMA.empty_table())
    hits = pl.from_arrow(HITS_SCHEMA.empty_table())
    write_partitions(tmp_path, 0, hits, qc, run="fp", start=0, stop=0)  # block 0: 0 regions
    write_partitions(tmp_path, 1, hits, qc, run="fp", start=0, stop=5)
    (tmp_path / QC_DIR / part_name(1)).write_bytes(b"truncated")
    done = finished_blocks(tmp_path, [(0, 0, 0), (1, 0, 5), (2, 5, 9)], "fp", None)
    assert list(done.finished) == [0]
    assert done.finished[0]["start"] == 0 and done.finished[0]["hits"] == 0
    assert done.redone == ["block 1 (regions 0-4) is computed again: its qc partition is not a "
                           "complete Parquet file (truncated or damaged)"]
