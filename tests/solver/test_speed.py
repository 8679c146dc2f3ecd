"""The solver's speed paths (issue 16): the transposed convolution from the non-zeros, the
convergence check every K steps, the ``exact`` option and the GPU batch from free memory.

Timings are never asserted here; ``nemo-dask bench`` prints them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import max_rel

from nemo_dask.cli import build_parser, main
from nemo_dask.errors import InputError
from nemo_dask.motifs import load_motifs
from nemo_dask.params import SolverParams
from nemo_dask.solver.kernels import (
    SparseStep,
    channels_last,
    prepare_motifs,
    preprocess,
    prox_step,
    sparse_prediction,
)
from nemo_dask.solver.stream import cuda_batch_size, fit_block


def _prepared(regions_npz, modisco_h5, mode: str, n: int):
    from nemo_dask.params import MotifParams

    motifs = load_motifs(modisco_h5, MotifParams(mode=mode))
    mo = prepare_motifs(motifs, "cpu", False)
    length = regions_npz["sequences"].shape[2]
    npos = length - motifs.width + 1
    lw = npos + mo.cwms.shape[2] - 1
    seqs = None if mode == "hh" else torch.from_numpy(regions_npz["sequences"][:n]).float()
    pre = preprocess(torch.from_numpy(regions_npz["contributions"][:n]).float(), seqs, mo,
                     SolverParams(mode=mode), lw)
    return mo, pre, npos, lw


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_sparse_prediction_equals_dense_transposed_convolution(regions_npz, modisco_h5, mode):
    mo, pre, npos, lw = _prepared(regions_npz, modisco_h5, mode, 6)
    gen = torch.Generator().manual_seed(0)
    coef = torch.randn((6, mo.cwms.shape[0], npos), generator=gen)
    coef = channels_last(coef * (torch.rand(coef.shape, generator=gen) < 0.002))
    coef[3] = 0  # a region without non-zeros
    pred, abs_sum, nnz = sparse_prediction(mo.cwms.transpose(1, 2).contiguous(), coef, pre.imp,
                                           pre.seq, lw)
    dense = F.conv_transpose1d(coef * pre.imp, mo.cwms)
    if pre.seq is not None:
        dense = dense * pre.seq
    assert nnz == int((coef != 0).sum()) > 20
    assert pred.shape == dense.shape
    torch.testing.assert_close(pred, dense, rtol=1e-5, atol=1e-6)
    assert (pred[3] == 0).all()
    torch.testing.assert_close(abs_sum, coef.abs().sum(dim=2), rtol=1e-6, atol=0)


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_sparse_step_follows_the_dense_step(regions_npz, modisco_h5, mode):
    """Along finemo's trajectory the sparse step gives the same iterates to float rounding."""
    mo, pre, npos, _ = _prepared(regions_npz, modisco_h5, mode, 8)
    y = channels_last(torch.zeros((8, mo.cwms.shape[0], npos)))
    c = y.clone()
    i = torch.zeros((8, 1, 1), dtype=torch.int32)
    step = torch.full((8, 1, 1), 3.0)
    sparse_step = SparseStep(mo, npos)
    for _ in range(60):
        dense = prox_step(mo.cwms, pre.x, pre.seq, pre.imp, y, c, i, step, mo.lambdas, mo.offset)
        sparse = sparse_step(pre.x, pre.seq, pre.imp, y, c, i, step)
        for a, b in zip(dense, sparse, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
        y, c = dense[0], dense[1]
        i += 1
    assert int((c != 0).sum()) > 8


@pytest.mark.parametrize("exact", [False, True], ids=["sparse", "exact"])
@pytest.mark.parametrize("options", [
    dict(mode="pp"), dict(mode="hh"),
    dict(step_size_max=40.0),  # divergences: resets and smaller steps between two checks
    dict(max_steps=30),  # timeouts
], ids=["pp", "hh", "divergence", "timeout"])
def test_checking_every_k_steps_gives_each_region_its_k1_result(regions_npz, modisco_h5,
                                                                 options, exact):
    """Regions finishing between two checks are frozen: hits and QC (num_steps, step size,
    gap, status) are bit-identical to checking every step, whatever K and the batch."""
    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:40], regions_npz["contributions"][:40]
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, batch in ((1, 8), (7, 8), (3, 40)):
            params = SolverParams(check_every=k, batch_size=batch, exact=exact, **options)
            runs[k] = fit_block(seqs, contribs, motifs, params=params)
    base = runs.pop(1)
    assert base.hits.height > 0
    for k, res in runs.items():
        assert res.hits.equals(base.hits), k
        assert res.qc.equals(base.qc), k


def test_check_every_defaults_per_device_and_is_validated():
    assert SolverParams().check_every_for("cpu") == 1
    assert SolverParams().check_every_for("cuda") == 10
    assert SolverParams(check_every=4).check_every_for("cuda") == 4
    with pytest.raises(InputError, match="check_every"):
        SolverParams(check_every=0)


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_exact_and_sparse_paths_call_the_same_hits(regions_npz, modisco_h5, mode):
    """The default (sparse) and exact steps differ in last bits only: the same hits by the
    rounding-robust rule (the fixture has no knife-edge region: same steps everywhere)."""
    from nemo_dask.params import MotifParams

    motifs = load_motifs(modisco_h5, MotifParams(mode=mode))
    seqs, contribs = regions_npz["sequences"][:80], regions_npz["contributions"][:80]
    fast = fit_block(seqs, contribs, motifs, params=SolverParams(mode=mode))
    exact = fit_block(seqs, contribs, motifs, params=SolverParams(mode=mode, exact=True))
    keys = ["region", "motif_id", "hit_start"]
    assert fast.hits.select(keys).equals(exact.hits.select(keys))
    assert fast.qc["num_steps"].equals(exact.qc["num_steps"])
    assert max_rel(fast.hits["hit_coefficient"], exact.hits["hit_coefficient"]) < 1e-3
    for col in ("hit_similarity", "hit_importance"):
        assert max_rel(fast.hits[col], exact.hits[col]) < 1e-5


def test_exact_matches_live_finemo_step_for_step(regions_npz, modisco_h5):
    """``exact=True`` runs finemo's own arithmetic: same steps, same step sizes, and
    coefficients equal to finemo's up to its batch-size rounding (~2e-5)."""
    hitcaller = pytest.importorskip("finemo.hitcaller")
    motifs = load_motifs(modisco_h5)
    sl = slice(0, 24)
    with pytest.warns(RuntimeWarning):  # "No GPU available"
        ref_hits, ref_qc = hitcaller.fit_contribs(
            motifs.cwms, regions_npz["contributions"][sl], regions_npz["sequences"][sl],
            motifs.trim_masks, False, motifs.lambdas, 3.0, 0.08, False, 0.0005, 10000, 16, 0.7,
            True, None, False, 1.0)
    res = fit_block(regions_npz["sequences"][sl], regions_npz["contributions"][sl], motifs,
                    params=SolverParams(exact=True))
    assert res.qc["num_steps"].to_list() == ref_qc.sort("peak_id")["num_steps"].to_list()
    ref_hits = ref_hits.sort("peak_id", "motif_id", "hit_start")
    assert res.hits.select("region", "motif_id", "hit_start").rows() == ref_hits.select(
        "peak_id", "motif_id", "hit_start").rows()
    assert max_rel(res.hits["hit_coefficient"], ref_hits["hit_coefficient"]) < 1e-4


def test_exact_and_check_every_flags_reach_the_solver(monkeypatch, tmp_path):
    import nemo_dask.calling.api as api

    seen = {}

    def fake_validate(*args, solver, **kwargs):
        seen["solver"] = solver
        raise InputError("stop here")

    monkeypatch.setattr("nemo_dask.calling.plan.validate", fake_validate)
    args = build_parser().parse_args(["call-hits", "-r", "r.npz", "-m", "m.h5", "-o",
                                      str(tmp_path / "o"), "--exact", "--check-every", "5"])
    assert args.exact and args.check_every == 5
    with pytest.raises(InputError, match="stop here"):
        api.call_hits("r.npz", "m.h5", tmp_path / "o", exact=True, check_every=5,
                      client=object())
    assert seen["solver"].exact and seen["solver"].check_every == 5
    assert not build_parser().parse_args(["call-hits", "-r", "r", "-m", "m", "-o", "o"]).exact


def test_cuda_batch_from_free_memory():
    gib = 1 << 30
    small = cuda_batch_size(1 * gib, 20, 951, 1000)
    big = cuda_batch_size(80 * gib, 20, 951, 1000)
    per_slot = 4 * (16 * 20 * 951 + 20 * 1000)
    assert small == int(0.5 * gib // per_slot) and 2 < small < big
    assert big == 16384  # capped
    assert cuda_batch_size(80 * gib, 100, 951, 1000) < cuda_batch_size(80 * gib, 20, 951, 1000) \
        or cuda_batch_size(80 * gib, 100, 951, 1000) == 16384
    assert cuda_batch_size(1000, 20, 951, 1000) == 2  # never below two slots
    assert cuda_batch_size(8 * gib, 100, 951, 1000, share=0.25, cap=10**9) == int(
        0.25 * 8 * gib // (4 * (16 * 100 * 951 + 20 * 1000)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_bench_on_cuda_without_a_gpu_fails_in_one_line(tiny_npz, modisco_h5, capsys):
    assert main(["bench", "-r", str(tiny_npz), "-m", str(modisco_h5), "-d", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err


def test_bench_motif_sets_of_other_sizes(modisco_h5):
    from nemo_dask.bench.solver import resize_motifs

    motifs = load_motifs(modisco_h5)
    for m in (4, 20, 60, 100):
        out = resize_motifs(motifs, m)
        assert out.cwms.shape == (m, 4, motifs.width) and out.trim_masks.shape == (m, motifs.width)
        norms = np.sqrt((out.cwms.astype(np.float32) ** 2).sum(axis=(1, 2)))
        np.testing.assert_allclose(norms, 1, rtol=2e-3)
        # reverse complements pair up, and no two motifs are the same
        np.testing.assert_array_equal(out.cwms[1::2], out.cwms[0::2, ::-1, ::-1])
        assert len({c.tobytes() for c in out.cwms}) == m
    with pytest.raises(InputError, match="even"):
        resize_motifs(motifs, 7)


def _trajectory_point(regions_npz, modisco_h5, mode: str, n: int, steps: int = 25):
    """Prepared motifs and regions and the iterates after ``steps`` dense steps."""
    mo, pre, npos, lw = _prepared(regions_npz, modisco_h5, mode, n)
    y = channels_last(torch.zeros((n, mo.cwms.shape[0], npos)))
    c = y.clone()
    i = torch.zeros((n, 1, 1), dtype=torch.int32)
    step = torch.full((n, 1, 1), 3.0)
    for _ in range(steps):
        y, c, _, _ = prox_step(mo.cwms, pre.x, pre.seq, pre.imp, y, c, i, step, mo.lambdas,
                               mo.offset)
        i += 1
    return mo, pre, npos, lw, y, c, i, step


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_sparse_step_variants_are_bit_identical(regions_npz, modisco_h5, mode):
    """Reusing the old iterates' buffers, and max(g) / λ for a single λ, change no bit."""
    from nemo_dask.solver.kernels import SparseStep

    mo, pre, npos, _, y, c, i, step = _trajectory_point(regions_npz, modisco_h5, mode, 8)
    fast = SparseStep(mo, npos)
    assert fast.one_lambda is not None  # the fixture's motifs share finemo's default λ
    plain = SparseStep(mo, npos)
    plain.one_lambda = None
    ref = plain(pre.x, pre.seq, pre.imp, y, c, i, step)
    y0, c0 = y.clone(), c.clone()
    kept = fast(pre.x, pre.seq, pre.imp, y, c, i, step)
    assert torch.equal(y, y0) and torch.equal(c, c0)  # inputs untouched by default
    consumed = fast(pre.x, pre.seq, pre.imp, y.clone(), c.clone(), i, step, consume=True)
    for a, b, d in zip(ref, kept, consumed, strict=True):
        assert torch.equal(a, b) and torch.equal(a, d)
    # Per-motif lambdas take the division path.
    lam = mo.lambdas.clone()
    lam[0, 0, 0] = 0.9
    assert SparseStep(mo._replace(lambdas=lam), npos).one_lambda is None


@pytest.mark.parametrize("mode", ["pp", "hh"])
@pytest.mark.parametrize("post_filter", [True, False])
def test_sparse_scores_equal_the_dense_ones_at_every_hit(regions_npz, modisco_h5, mode,
                                                         post_filter):
    """Similarity, importance and the post-filter evaluated at the non-zeros only agree with
    finemo's convolutions over all positions (to float32 rounding)."""
    from nemo_dask.solver.kernels import SparseStep, score

    mo, pre, npos, lw, _, c, _, _ = _trajectory_point(regions_npz, modisco_h5, mode, 8, 60)
    params = SolverParams(mode=mode, post_filter=post_filter)
    dense = score(pre.x, pre.imp, c, mo, params, lw)
    b, m, pos = torch.nonzero(dense.coef, as_tuple=True)
    sparse = SparseStep(mo, npos).score(pre.x, pre.imp, c, params)
    got = sorted(zip(sparse["row"], sparse["motif_id"], sparse["hit_start"], strict=True))
    assert got == sorted(zip(b.tolist(), m.tolist(), pos.tolist(), strict=True))
    assert len(got) > 10
    order = np.lexsort((sparse["hit_start"], sparse["motif_id"], sparse["row"]))
    np.testing.assert_array_equal(sparse["hit_coefficient"][order], dense.coef[b, m, pos])
    np.testing.assert_array_equal(sparse["hit_importance_sq"][order],
                                  dense.importance_sq[b, m, pos])
    for key, col in (("hit_similarity", dense.similarity), ("hit_importance", dense.importance)):
        np.testing.assert_allclose(sparse[key][order], col[b, m, pos].numpy(), rtol=2e-6)


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_preprocessing_a_region_alone_or_in_a_batch_gives_the_same_bits(regions_npz, modisco_h5,
                                                                       mode):
    """The solver preprocesses regions 16 at a time ahead of the slots they fill; finemo one
    batch of freed slots at a time (often one region: another convolution kernel). Both give
    each region the same contributions, importance scale and global scale, bit for bit."""
    from nemo_dask.params import MotifParams

    mo = prepare_motifs(load_motifs(modisco_h5, MotifParams(mode=mode)), "cpu", False)
    n = 16
    contribs = torch.from_numpy(regions_npz["contributions"][:n]).float()
    seqs = None if mode == "hh" else torch.from_numpy(regions_npz["sequences"][:n]).float()
    lw = contribs.shape[2] - load_motifs(modisco_h5).width + 1 + mo.cwms.shape[2] - 1
    params = SolverParams(mode=mode)
    batch = preprocess(contribs, seqs, mo, params, lw)
    for k in (0, 5, 15):
        one = preprocess(contribs[k:k + 1], None if seqs is None else seqs[k:k + 1], mo, params,
                         lw)
        for a, b in zip(one, batch, strict=True):
            if a is not None:
                assert torch.equal(a[0], b[k])
