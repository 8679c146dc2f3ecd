"""``nemo-dask bench``: runs both solvers on the same regions and prints comparable rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nemo_dask.bench.solver import format_rows, run_bench
from nemo_dask.cli import main

pytest.importorskip("finemo")



def test_default_batch_is_call_hits_default_and_hits_agree(tiny_npz: Path, modisco_h5) -> None:
    torch.set_num_threads(1)
    rows = run_bench(str(tiny_npz), str(modisco_h5), finemo_batch_sizes=(16,))
    finemo, ours = rows
    assert (finemo.tool, ours.tool) == ("finemo", "nemo_dask")
    assert ours.batch_size == 16  # 16 per torch thread on CPU
    assert ours.regions == finemo.regions == 24 and ours.hits == finemo.hits > 0
    table = format_rows(rows)
    assert "best nemo_dask (batch 16) / best finemo (batch 16)" in table


def test_cli_prints_the_table(tiny_npz: Path, modisco_h5, capsys) -> None:
    assert main(["bench", "-r", str(tiny_npz), "-m", str(modisco_h5), "-b", "8,16",
                 "--finemo-batch-sizes", "16", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "torch threads 1" in out and "regions/s" in out
    assert out.count("nemo_dask ") >= 2
