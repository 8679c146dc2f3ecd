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


def test_cells_of_other_lambda_width_and_motifs(tiny_npz: Path, modisco_h5, capsys) -> None:
    """-l, --width and --motifs make one cell each (their product); each row prints both
    tools' rates, the ratio, steps, non-zeros and hits per region, the Jaccard index and the
    regions whose steps differ (knife-edge in brackets), then finemo's two batch sizes against
    each other (steps that differ, Jaccard)."""
    assert main(["bench", "-r", str(tiny_npz), "-m", str(modisco_h5), "--threads", "1",
                 "--finemo-batch-sizes", "8,16", "-l", "0.5,0.9", "--width", "600",
                 "--motifs", "14", "-n", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "6 regions of 1000" in out[0]
    head = out[1].split()
    assert head[:4] == ["mode", "M", "L", "lambda"] and "jaccard" in head and "nnz" in head
    assert head[-1] == "finemo/finemo"
    rows = [line.split() for line in out[2:] if line.startswith("pp ")]
    assert [(r[1], r[2], r[3]) for r in rows] == [("14", "600", "0.5"), ("14", "600", "0.9")]
    for r in rows:
        assert r[-5] == "1.0000" and r[9].endswith("x")
        assert r[-4] == "0" and r[-3] == "(0)"  # nemo_dask's steps are finemo's
        assert r[-2] == "0" and r[-1] == "1.0000"  # finemo's batch sizes agree
    assert out[-1].startswith("ratio: min ")


def test_matrix_cells_and_region_widths(regions_npz) -> None:
    from nemo_dask.bench.matrix import matrix_cells, resize_regions

    cells = matrix_cells()
    assert len(cells) == 4 * 3 * 2 + 3 * 2 * 2
    assert {(c.lam, c.n_motifs, c.mode) for c in cells if c.width is None} == {
        (lam, m, mode) for lam in (0.3, 0.5, 0.7, 1.0) for m in (20, 60, 150)
        for mode in ("pp", "hh")}
    assert {(c.width, c.lam) for c in cells if c.width} == {(500, 0.7), (2000, 0.7)}
    seqs, contribs = regions_npz["sequences"][:5], regions_npz["contributions"][:5]
    s, c = resize_regions(seqs, contribs, 500)
    assert s.shape == (5, 4, 500) and (c == contribs[:, :, 250:750]).all()
    s, c = resize_regions(seqs, contribs, 2000)
    assert s.shape == (2, 4, 2000)  # regions 0+1 and 2+3 joined end to end
    assert (c[1, :, :1000] == contribs[2]).all() and (s[1, :, 1000:] == seqs[3]).all()
    s, _ = resize_regions(seqs, contribs, 1500)
    assert s.shape == (2, 4, 1500) and (s[0, :, :500] == seqs[0][:, 250:750]).all()
