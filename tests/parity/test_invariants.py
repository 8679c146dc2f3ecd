"""Invariants that hold bit for bit on any CPU: the distributed path is the in-process solver,
and no batching choice (batch size, block size, region offset, worker count) changes a result."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from nemo_dask.calling.api import call_hits
from nemo_dask.dataset import scan_hits, scan_qc
from nemo_dask.motifs import load_motifs
from nemo_dask.params import SolverParams
from nemo_dask.schema import QVALUE
from nemo_dask.solver.stream import fit_block

SORT = ["peak_id", "motif_id", "hit_start"]


def _hits(out: Path) -> pl.DataFrame:
    return scan_hits(out).collect().sort(SORT)


def _qc(out: Path) -> pl.DataFrame:
    return scan_qc(out).collect().sort("peak_id")


def test_distributed_path_is_bit_identical_to_in_process_solver(distributed_pp, in_process,
                                                                regions_npz, modisco_h5):
    direct = in_process("pp")
    ours, ref = _hits(distributed_pp), _hits(direct)
    assert ours.height == ref.height > 1000
    # Every column, every bit, q-values included: 7 blocks on 2 worker processes are the
    # in-process run's one block.
    assert ours[QVALUE].is_not_null().all()
    assert ours.equals(ref)
    assert _qc(distributed_pp).equals(_qc(direct))
    # ... and the in-process run's solver columns are the bare solver's (peak_id 0..349 here;
    # the stored importances are divided by the global scale, as finemo stores them).
    bare = fit_block(regions_npz["sequences"], regions_npz["contributions"],
                     load_motifs(modisco_h5))
    solver_cols = ["motif_id", "hit_start", "hit_coefficient", "hit_similarity"]
    stored = ref.select(pl.col("peak_id").cast(pl.UInt32).alias("region"),
                        *[pl.col(c).cast(bare.hits[c].dtype) for c in solver_cols])
    assert stored.equals(bare.hits.sort("region", "motif_id", "hit_start")
                         .select("region", *solver_cols))
    qc = _qc(direct)
    for col in ("nll", "dual_gap", "num_steps", "step_size", "global_scale"):
        assert qc[col].cast(bare.qc[col].dtype).equals(bare.qc[col]), col


def test_results_do_not_depend_on_batch_size_or_offset(regions_npz, modisco_h5):
    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:40], regions_npz["contributions"][:40]
    a = fit_block(seqs, contribs, motifs, params=SolverParams(batch_size=7))
    b = fit_block(seqs, contribs, motifs, params=SolverParams(batch_size=64))
    assert a.hits.equals(b.hits) and a.qc.equals(b.qc)
    tail = fit_block(seqs[20:], contribs[20:], motifs, region_offset=20)
    assert tail.hits.equals(a.hits.filter(pl.col("region") >= 20))


def test_results_do_not_depend_on_block_size(client2, tmp_path, small_npz, modisco_h5):
    base = call_hits(small_npz, modisco_h5, tmp_path / "b40", client=client2, block_size=40,
                     progress=False).out
    for bs in (7, 120):
        other = call_hits(small_npz, modisco_h5, tmp_path / f"b{bs}", client=client2,
                          block_size=bs, progress=False).out
        assert _hits(other).equals(_hits(base)), f"block size {bs}"
        assert _qc(other).equals(_qc(base)), f"block size {bs}"


def test_results_do_not_depend_on_worker_count(client1, client2, tmp_path, small_npz,
                                               modisco_h5):
    two = call_hits(small_npz, modisco_h5, tmp_path / "w2", client=client2, block_size=10,
                    progress=False)
    one = call_hits(small_npz, modisco_h5, tmp_path / "w1", client=client1, block_size=10,
                    progress=False)
    assert len({s["worker"] for s in two.summaries}) == 2
    assert {s["worker"] for s in one.summaries} == set(client1.scheduler_info()["workers"])
    assert _hits(one.out).equals(_hits(two.out)) and _qc(one.out).equals(_qc(two.out))
    # One worker thread, yet the next block is read while the previous one is solved.
    runs = sorted(one.summaries, key=lambda s: s["started_at"])
    overlapped = [b["started_at"] < a["solved_at"] for a, b in zip(runs, runs[1:], strict=False)]
    assert len(runs) == 12 and sum(overlapped) >= 6, runs
