"""``nemo-dask bench --workers``: call-hits timed on embedded clusters of several sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_dask.bench.workers import format_workers_rows, run_workers_bench
from nemo_dask.cli import main


@pytest.mark.slow
def test_rows_cover_every_cluster_size_on_the_tiled_regions(tiny_npz: Path, modisco_h5) -> None:
    rows = run_workers_bench(str(tiny_npz), str(modisco_h5), (1, 2), repeat=2, block_size=8)
    solo, one, two = rows
    assert [r.workers for r in rows] == [0, 1, 2]
    assert {r.regions for r in rows} == {48}
    assert solo.hits == one.hits == two.hits > 0
    assert (one.blocks, two.blocks) == (6, 6)
    assert len(one.worker_rss_mb) == 1 and len(two.worker_rss_mb) == 2
    assert all(mb > 50 for mb in one.worker_rss_mb + two.worker_rss_mb)
    table = format_workers_rows(rows).splitlines()
    assert table[1].startswith("in-process") and table[3].startswith("2 workers")
    assert "1.00x" in table[2]  # the smallest cluster is the speed-up's base


def test_cli_prints_the_table_and_rejects_empty_clusters(tiny_npz: Path, modisco_h5,
                                                          capsys) -> None:
    args = ["bench", "-r", str(tiny_npz), "-m", str(modisco_h5), "--block-size", "12"]
    assert main([*args, "--workers", "2", "--no-in-process"]) == 0
    out = capsys.readouterr().out
    assert "every cluster size wrote the same hits" in out
    assert "2 workers" in out and "in-process" not in out.splitlines()[-1]
    assert main([*args, "--workers", "0"]) != 0
    assert "--workers" in capsys.readouterr().err
