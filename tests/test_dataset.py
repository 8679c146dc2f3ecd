"""dataset.py: the output layout, partitions written whole, lazy scans, the manifest."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from nemo_dask.dataset import (
    HITS_DIR,
    MANIFEST_FILE,
    QC_DIR,
    part_name,
    partition_rows,
    read_json,
    remove_stale_temporaries,
    scan_hits,
    scan_qc,
    write_block,
    write_manifest,
)
from nemo_dask.schema import HITS_SCHEMA, HITS_VIEW_SCHEMA, QC_SCHEMA
from nemo_dask.storage.temporary import temporary_name


def _empty(schema) -> pl.DataFrame:
    return pl.from_arrow(schema.empty_table())


def test_empty_blocks_scan_with_the_schema(tmp_path: Path):
    # (the view adds each hit's q-value: null without any)
    assert scan_hits(tmp_path).collect().schema == _empty(HITS_VIEW_SCHEMA).schema  # no dir yet
    assert write_block(tmp_path, 3, _empty(HITS_SCHEMA), _empty(QC_SCHEMA)) == (0, 0)
    assert partition_rows(tmp_path / QC_DIR / part_name(3)) == 0
    assert scan_qc(tmp_path).collect().height == 0


def test_temporaries_are_invisible_and_removable(tmp_path: Path):
    write_block(tmp_path, 0, _empty(HITS_SCHEMA), _empty(QC_SCHEMA))
    stale = tmp_path / HITS_DIR / temporary_name(part_name(1))
    stale.write_bytes(b"half a file")
    assert scan_hits(tmp_path).collect().height == 0  # the glob skips it
    assert not list((tmp_path / HITS_DIR).glob("*.parquet"))[1:]  # only part 0 matches
    assert partition_rows(stale) is None
    assert remove_stale_temporaries(tmp_path) == 1 and not stale.exists()


def test_manifest_counts_finished_blocks(tmp_path: Path):
    finished = {1: {"start": 10, "stop": 20, "hits": 5, "regions": 10},
                0: {"start": 0, "stop": 10, "hits": 2, "regions": 10}}
    write_manifest(tmp_path, "fp", 3, finished, complete=False)
    m = read_json(tmp_path / MANIFEST_FILE)
    assert (m["n_hits"], m["complete"], list(m["blocks"])) == (7, False, ["0", "1"])
