"""The torch solver against live finemo 0.41 on options and edge cases.

Parity on the whole fixture (recorded and live) and the batching invariants are in
tests/parity/."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from conftest import assert_parity, max_rel

from nemo_dask.motifs import load_motifs
from nemo_dask.params import SolverParams
from nemo_dask.solver.stream import CONVERGED, FAILED, TIMEOUT, fit_block


def test_compact_projected_equals_full(data_dir, regions_npz, modisco_h5):
    with np.load(data_dir / "regions_bw.npz") as bw:
        compact = bw["contributions"][:60]
    motifs = load_motifs(modisco_h5)
    seqs = regions_npz["sequences"][:60]
    full = fit_block(seqs, regions_npz["contributions"][:60], motifs)
    comp = fit_block(seqs, compact, motifs)
    assert full.hits.equals(comp.hits)
    assert full.qc.equals(comp.qc)


@pytest.mark.parametrize("exact", [False, True], ids=["compiled", "exact"])
@pytest.mark.parametrize("delay", [0, 4, 10_000])
def test_stream_of_blocks_equals_blocks_solved_alone(regions_npz, modisco_h5, delay, exact):
    """Blocks handed over mid-stream (at once, in a tail, after the slots shrank) give each
    region what it gets alone (bit for bit with the compiled solver; exact, which preprocesses
    regions as finemo loads them, rounds like finemo at another batch); each block is handed
    back when its last region ends.
    The compiled CPU solver asks for the next block once the loaded regions are solved (it has
    no slots to keep busy); the batched step at every refill of a slot."""
    from nemo_dask.solver.stream import Job, fit_stream

    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:90], regions_npz["contributions"][:90]
    bounds = [(0, 25), (25, 31), (31, 90)]
    params = SolverParams(batch_size=8, exact=exact)
    alone = [fit_block(seqs[a:b], contribs[a:b], motifs,
                       params=params, region_offset=a) for a, b in bounds]
    got: dict[int, object] = {}
    order: list[int] = []

    def job(i: int) -> Job:
        a, b = bounds[i]
        return Job(seqs[a:b], contribs[a:b], a,
                   lambda r, i=i: (got.__setitem__(i, r), order.append(i)))

    queue, calls = [job(1), job(2)], [0]

    def more():
        calls[0] += 1
        return queue.pop(0) if queue and calls[0] > delay else None

    streams = 0
    first = job(0)
    while first is not None:  # as the worker's solver does: a new stream when one runs dry
        fit_stream(first, more, motifs, params=params)
        streams += 1
        first = queue.pop(0) if queue else None
    assert sorted(got) == [0, 1, 2] and not queue
    assert streams == (3 if delay > (1000 if exact else 0) else 1)
    for i in range(3):
        if exact:  # finemo's arithmetic: like finemo's, its last bits follow the batching
            assert_parity(got[i], alone[i].hits.rename({"region": "peak_id"}), alone[i].qc,
                          max_edges=0)
        else:
            assert got[i].hits.equals(alone[i].hits), i
            assert got[i].qc.equals(alone[i].qc), i


def _finemo_fit(regions_npz, motifs, sl, hyp=False, **kw):
    hitcaller = pytest.importorskip("finemo.hitcaller")
    p = SolverParams(**kw)
    contribs = regions_npz["contributions"][sl]
    with pytest.warns(RuntimeWarning):  # "No GPU available"
        return hitcaller.fit_contribs(
            motifs.cwms, contribs, regions_npz["sequences"][sl], motifs.trim_masks, hyp,
            motifs.lambdas, p.step_size_max, p.step_size_min, p.sqrt_transform, p.convergence_tol,
            p.max_steps, 16, p.step_adjust, p.post_filter, None, False, p.eps)


@pytest.mark.parametrize("options", [
    dict(sqrt_transform=True),
    dict(post_filter=False),
    dict(step_size_max=40.0),  # diverges, restarts with smaller steps
    dict(convergence_tol=0.005, eps=0.5),
], ids=["sqrt", "no-post-filter", "divergence-restart", "tol-eps"])
def test_options_match_live_finemo(regions_npz, modisco_h5, options):
    motifs = load_motifs(modisco_h5)
    sl = slice(0, 24)
    ref_hits, ref_qc = _finemo_fit(regions_npz, motifs, sl, **options)
    params = SolverParams(**options)
    res = fit_block(regions_npz["sequences"][sl], regions_npz["contributions"][sl], motifs,
                    params=params)
    ref_qc = ref_qc.sort("peak_id")
    edge = assert_parity(res, ref_hits, ref_qc, params.convergence_tol)
    same = ~pl.Series(range(res.qc.height)).is_in(edge)
    assert res.qc["step_size"].filter(same).to_list() == ref_qc["step_size"].filter(same).to_list()


def test_timeout_and_failure_are_retired_with_warnings(regions_npz, modisco_h5):
    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:5], regions_npz["contributions"][:5]
    with pytest.warns(RuntimeWarning) as caught:
        res = fit_block(seqs, contribs, motifs, region_offset=100,
                        params=SolverParams(max_steps=3))
    assert sorted(str(w.message) for w in caught) == [
        f"Region {r} has not converged within max_steps=3 iterations." for r in range(100, 105)]
    assert {w.filename for w in caught} == {__file__}  # points at the caller, not the solver
    assert (res.qc["status"] == TIMEOUT).all()
    assert (res.qc["num_steps"] == 4).all()  # finemo retires when the counter exceeds max_steps
    ref_hits, ref_qc = _finemo_fit(regions_npz, motifs, slice(0, 5), max_steps=3)
    assert res.hits.height == ref_hits.height

    with pytest.warns(RuntimeWarning) as caught:
        res = fit_block(seqs, contribs, motifs,
                        params=SolverParams(step_size_max=40.0, step_size_min=30.0))
    failed = res.qc.filter(pl.col("status") == FAILED)
    assert sorted(str(w.message) for w in caught) == [
        f"Region {r} failed: its step size fell below step_size_min=30.0."
        for r in sorted(failed["region"])]
    assert failed.height >= 1
    assert (failed["num_steps"] == 0).all() and (failed["step_size"] < 30.0).all()
    assert res.hits.filter(pl.col("region").is_in(failed["region"].implode())).height == 0


def test_all_zero_region(regions_npz, modisco_h5):
    motifs = load_motifs(modisco_h5)
    seqs = regions_npz["sequences"][:3].copy()
    contribs = regions_npz["contributions"][:3].copy()
    contribs[1] = 0
    res = fit_block(seqs, contribs, motifs)
    row = res.qc.row(1, named=True)
    assert row["global_scale"] == 0 and row["status"] == CONVERGED and row["num_steps"] == 1
    assert res.hits.filter(pl.col("region") == 1).height == 0
    assert res.hits.filter(pl.col("region") != 1).height > 0


def test_hypothetical_mode_rejects_compact_contributions(regions_npz, modisco_h5):
    motifs = load_motifs(modisco_h5)
    with pytest.raises(ValueError, match="hypothetical"):
        fit_block(regions_npz["sequences"][:2], regions_npz["contributions"][:2, 0], motifs,
                  params=SolverParams(use_hypothetical=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(regions_npz, modisco_h5):
    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:100], regions_npz["contributions"][:100]
    cpu = fit_block(seqs, contribs, motifs)
    gpu = fit_block(seqs, contribs, motifs, device="cuda")
    assert gpu.hits.select("region", "motif_id", "hit_start").equals(
        cpu.hits.select("region", "motif_id", "hit_start"))
    assert max_rel(gpu.hits["hit_coefficient"], cpu.hits["hit_coefficient"]) < 1e-3


@pytest.mark.parametrize("exact", [False, True], ids=["compiled", "exact"])
def test_converging_on_the_step_past_max_steps_is_a_timeout_as_in_finemo(regions_npz,
                                                                        modisco_h5, exact):
    """With -c 0.2 regions 3, 9, 10 and 14 converge on their 6th step. At --max-steps 5 that
    step also passes max_steps: finemo retires them with its "has not converged" warning, so
    nemo_dask marks them timeouts with the same warning (and keeps finemo's hits and QC)."""
    hitcaller = pytest.importorskip("finemo.hitcaller")
    motifs = load_motifs(modisco_h5)
    rows = [3, 9, 10, 14, 0, 1]
    seqs, contribs = regions_npz["sequences"][rows], regions_npz["contributions"][rows]
    free = fit_block(seqs, contribs, motifs, params=SolverParams(convergence_tol=0.2))
    assert free.qc["num_steps"].to_list()[:4] == [6, 6, 6, 6]
    assert (free.qc["status"] == CONVERGED).all()
    params = SolverParams(convergence_tol=0.2, max_steps=5, exact=exact)
    with pytest.warns(RuntimeWarning) as theirs:
        ref_hits, ref_qc = hitcaller.fit_contribs(
            motifs.cwms, contribs, seqs, motifs.trim_masks, False, motifs.lambdas, 3.0, 0.08,
            False, 0.2, 5, 16, 0.7, True, torch.device("cpu"), False, 1.0)
    with pytest.warns(RuntimeWarning) as ours:
        res = fit_block(seqs, contribs, motifs, params=params)
    finemo_timeouts = sorted(str(w.message) for w in theirs if "max_steps" in str(w.message))
    assert sorted(str(w.message) for w in ours) == finemo_timeouts
    assert {f"Region {r} has not converged within max_steps=5 iterations." for r in range(4)} \
        <= set(finemo_timeouts)
    ref_qc = ref_qc.sort("peak_id")
    assert res.qc["num_steps"].to_list() == ref_qc["num_steps"].to_list()
    assert (res.qc["status"].head(4) == TIMEOUT).all()
    assert (res.qc["dual_gap"].head(4) <= 0.2).all()  # converged, and still a timeout
    assert ((res.qc["status"] == TIMEOUT) == (res.qc["num_steps"] == 6)).all()
    assert_parity(res, ref_hits, ref_qc, 0.2)


def test_divergence_restarts_from_zero_where_finemo_keeps_nan(regions_npz, modisco_h5):
    """A deliberate difference (README, "Solver parity and speed"): on divergence finemo resets
    a region with ``coef *= 0``, which keeps NaN and inf, so once an iterate overflows the
    region can only fail, with NaN coefficients among its hits; nemo_dask restarts it from
    zero with the smaller step, as finemo intends. At step_size_max 1e12 finemo fails most of
    16 regions; nemo_dask converges every one, compiled or exact, with finite hits."""
    hitcaller = pytest.importorskip("finemo.hitcaller")
    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:16], regions_npz["contributions"][:16]
    with pytest.warns(RuntimeWarning) as theirs:
        ref_hits, _ = hitcaller.fit_contribs(
            motifs.cwms, contribs, seqs, motifs.trim_masks, False, motifs.lambdas, 1e12, 0.08,
            False, 0.0005, 10000, 16, 0.7, True, torch.device("cpu"), False, 1.0)
    failed = [w for w in theirs if "Optimizer failed" in str(w.message)]
    assert len(failed) >= 8
    assert ref_hits["hit_coefficient"].is_nan().sum() > 1000
    for exact in (False, True):
        res = fit_block(seqs, contribs, motifs,
                        params=SolverParams(step_size_max=1e12, exact=exact))
        assert (res.qc["status"] == CONVERGED).all(), exact
        assert np.isfinite(res.hits["hit_coefficient"].to_numpy()).all()
        assert (res.qc["step_size"] < 1e11).all()  # restarted with smaller steps
        assert res.hits.height > 100
