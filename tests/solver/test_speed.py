"""The solver's speed paths (issues 16 and 24): the compiled per-region CPU solver (its two
ways of forming a step's correlation, its independence of batch and threads, its scoring at
the hits), the convergence check every K steps, the ``exact`` option and the GPU batch.

Timings are never asserted here; ``nemo-dask bench`` prints them."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_parity, max_rel

from nemo_dask.cli import build_parser, main
from nemo_dask.errors import InputError
from nemo_dask.motifs import load_motifs
from nemo_dask.params import MODES, MotifParams, SolverParams
from nemo_dask.solver.cpu import CpuSolver
from nemo_dask.solver.kernels import channels_last, prepare_motifs, preprocess
from nemo_dask.solver.stream import cuda_batch_size, fit_block


def _prepared(regions_npz, modisco_h5, mode: str, n: int, lam: float = 0.7):
    motifs = load_motifs(modisco_h5, MotifParams(mode=mode, lambda_default=lam))
    mo = prepare_motifs(motifs, "cpu", False)
    length = regions_npz["sequences"].shape[2]
    npos = length - motifs.width + 1
    lw = npos + mo.cwms.shape[2] - 1
    seqs = None if mode == "hh" else torch.from_numpy(regions_npz["sequences"][:n]).float()
    pre = preprocess(torch.from_numpy(regions_npz["contributions"][:n]).float(), seqs, mo,
                     SolverParams(use_hypothetical=MODES[mode][1]), lw)
    return motifs, mo, pre, npos


@pytest.mark.parametrize("lam", [0.7, 0.3])
@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_columns_and_direct_ways_give_the_same_results(regions_npz, modisco_h5, mode, lam,
                                                        monkeypatch):
    """Each step forms conv1d(pred, cwms) from the iterate's columns or directly from the
    masked prediction, whichever costs less; forced one way or the other, every region takes
    the same steps and keeps the same hits, with coefficients equal to rounding."""
    motifs = load_motifs(modisco_h5, MotifParams(mode=mode, lambda_default=lam))
    # Regions 10-35: hh at lambda 0.3 runs regions 9 and 37 to max_steps (as finemo does).
    seqs, contribs = regions_npz["sequences"][10:36], regions_npz["contributions"][10:36]
    runs = {}
    for way in (0, 1, 2):
        monkeypatch.setattr(CpuSolver, "way", way)
        runs[way] = fit_block(seqs, contribs, motifs, params=SolverParams(use_hypothetical=MODES[mode][1]))
    ref = runs[0].hits.rename({"region": "peak_id"})
    for way in (1, 2):
        # Ill-conditioned pairs of overlapping motifs move a few coefficients by more than
        # 1e-3 (finemo's exact step against finemo: 2 of 1437 at lambda 0.3, up to 5.8e-3),
        # and in hh at lambda 0.3 region 24 is knife-edge: finemo itself takes 155 steps at
        # batch 1 and 134 at batch 2, its gap 1.6e-3 x tol from tol.
        assert_parity(runs[way], ref, runs[0].qc, frac=2e-3, coef_outliers=0.005)
    assert runs[0].hits.height > 30


@pytest.mark.parametrize("options", [
    dict(use_hypothetical=False), dict(use_hypothetical=True),
    dict(step_size_max=40.0),  # divergences: resets and smaller steps between two checks
    dict(max_steps=30),  # timeouts
], ids=["pp", "hh", "divergence", "timeout"])
def test_checking_every_k_steps_gives_each_region_its_k1_result(regions_npz, modisco_h5,
                                                                 options, monkeypatch):
    """The GPU's batched step (its code run on CPU tensors) checks convergence every K steps;
    regions finishing between two checks are frozen: hits and QC (num_steps, step size, gap,
    status) are bit-identical to checking every step, whatever K and the batch."""
    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:40], regions_npz["contributions"][:40]
    runs = {}
    _gpu_logic(monkeypatch, sparse=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, batch in ((1, 8), (7, 8), (3, 40)):
            params = SolverParams(check_every=k, batch_size=batch, **options)
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
def test_exact_and_compiled_solvers_call_the_same_hits(regions_npz, modisco_h5, mode):
    """The default (compiled) solver and the exact step differ in last bits only: the same
    steps and hits by the rounding-robust rule (the fixture's region 22 is knife-edge: its gap
    lands 3e-5 x tol from tol, and finemo's own batch sizes take 63 or 64 steps there)."""
    motifs = load_motifs(modisco_h5, MotifParams(mode=mode))
    seqs, contribs = regions_npz["sequences"][:80], regions_npz["contributions"][:80]
    fast = fit_block(seqs, contribs, motifs, params=SolverParams(use_hypothetical=MODES[mode][1]))
    exact = fit_block(seqs, contribs, motifs, params=SolverParams(use_hypothetical=MODES[mode][1], exact=True))
    exact_hits = exact.hits.rename({"region": "peak_id"})
    assert_parity(fast, exact_hits, exact.qc, coef_outliers=0.005)
    assert max_rel(fast.hits["hit_importance"], exact.hits["hit_importance"]) < 1e-5


@pytest.mark.parametrize("case", [
    dict(mode="pp", n=40), dict(mode="hh", n=40), dict(mode="pp", n=10),  # N < batch
    dict(mode="pp", n=30, batch=8, compact=True), dict(mode="pp", n=20, batch=3,
                                                       sqrt_transform=True),
    dict(mode="pp", n=24, step_size_max=40.0),  # divergences (finite iterates) and restarts
    dict(mode="hh", n=6, batch=1), dict(mode="pp", n=30, post_filter=False, eps=0.5),
], ids=["pp", "hh", "fewer-than-batch", "compact", "sqrt", "divergence", "batch-1", "options"])
def test_exact_is_finemo_bit_for_bit(data_dir, regions_npz, modisco_h5, case):
    """``exact=True`` with finemo's batch size reproduces finemo's ``fit_contribs`` on the same
    machine bit for bit: every QC value and every hit column (its whole-width convolutions,
    channels-last layouts, slots padded to the batch, regions preprocessed as it loads them)."""
    hitcaller = pytest.importorskip("finemo.hitcaller")
    case = dict(case)
    mode, n, batch = case.pop("mode"), case.pop("n"), case.pop("batch", 16)
    motifs = load_motifs(modisco_h5, MotifParams(mode=mode))
    contribs = regions_npz["contributions"][:n]
    if case.pop("compact", False):
        with np.load(data_dir / "regions_bw.npz") as bw:
            contribs = bw["contributions"][:n]
    seqs = regions_npz["sequences"][:n]
    p = SolverParams(use_hypothetical=MODES[mode][1], exact=True, batch_size=batch, **case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref_hits, ref_qc = hitcaller.fit_contribs(
            motifs.cwms, contribs, seqs, motifs.trim_masks, p.use_hypothetical, motifs.lambdas,
            p.step_size_max, p.step_size_min, p.sqrt_transform, p.convergence_tol, p.max_steps,
            batch, p.step_adjust, p.post_filter, torch.device("cpu"), False, p.eps)
        res = fit_block(seqs, contribs, motifs, params=p)
    ref_qc = ref_qc.sort("peak_id")
    for col in ("num_steps", "step_size", "dual_gap", "nll", "global_scale"):
        np.testing.assert_array_equal(res.qc[col].to_numpy(), ref_qc[col].to_numpy(), col)
    ref_hits = ref_hits.sort("peak_id", "motif_id", "hit_start")
    assert res.hits.select("region", "motif_id", "hit_start").rows() == ref_hits.select(
        "peak_id", "motif_id", "hit_start").rows()
    for col in ("hit_coefficient", "hit_similarity", "hit_importance", "hit_importance_sq"):
        np.testing.assert_array_equal(res.hits[col].to_numpy(), ref_hits[col].to_numpy(), col)


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
    per_slot = 4 * (28 * 20 * 951 + 24 * 1000)
    assert small == int(0.5 * gib // per_slot) and 2 < small < big
    assert big == 16384  # capped
    assert cuda_batch_size(80 * gib, 100, 951, 1000) < cuda_batch_size(80 * gib, 20, 951, 1000) \
        or cuda_batch_size(80 * gib, 100, 951, 1000) == 16384
    assert cuda_batch_size(1000, 20, 951, 1000) == 2  # never below two slots
    assert cuda_batch_size(8 * gib, 100, 951, 1000, share=0.25, cap=10**9) == int(
        0.25 * 8 * gib // (4 * (28 * 100 * 951 + 24 * 1000)))


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


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_results_do_not_depend_on_batch_or_threads(regions_npz, modisco_h5, mode):
    """Each region is solved on its own: the same bits whatever the chunk of regions
    preprocessed together and however many threads solve them side by side."""
    motifs = load_motifs(modisco_h5, MotifParams(mode=mode))
    seqs, contribs = regions_npz["sequences"][:30], regions_npz["contributions"][:30]
    base = fit_block(seqs, contribs, motifs, params=SolverParams(use_hypothetical=MODES[mode][1], batch_size=16))
    for batch, threads in ((1, 1), (7, 1), (30, 2), (5, 3)):
        res = fit_block(seqs, contribs, motifs, threads=threads,
                        params=SolverParams(use_hypothetical=MODES[mode][1], batch_size=batch))
        assert res.hits.equals(base.hits), (batch, threads)
        assert res.qc.equals(base.qc), (batch, threads)


@pytest.mark.parametrize("mode", ["pp", "hh"])
@pytest.mark.parametrize("post_filter", [True, False])
def test_scores_at_the_hits_equal_the_dense_ones(regions_npz, modisco_h5, mode, post_filter):
    """Similarity, importance and the post-filter evaluated at the non-zeros only agree with
    finemo's convolutions over all positions (to float32 rounding)."""
    from nemo_dask.solver.kernels import score

    motifs, mo, pre, npos = _prepared(regions_npz, modisco_h5, mode, 8)
    params = SolverParams(use_hypothetical=MODES[mode][1], post_filter=post_filter)
    gen = torch.Generator().manual_seed(1)
    coef = torch.rand((8, mo.cwms.shape[0], npos), generator=gen)
    # Non-zeros at random and where the motif matches (which the post-filter keeps).
    lw = npos + mo.cwms.shape[2] - 1
    similar = score(pre.x, pre.imp, coef, mo, SolverParams(post_filter=False), lw).similarity
    coef = coef * ((torch.rand(coef.shape, generator=gen) < 0.01) | (similar > 0.6))
    dense = score(pre.x, pre.imp, coef, mo, params, npos + mo.cwms.shape[2] - 1)
    b, m, pos = torch.nonzero(dense.coef, as_tuple=True)
    rows, motif, where = (t.numpy() for t in torch.nonzero(coef, as_tuple=True))
    sparse = CpuSolver(mo, npos, params)._score(pre.x.transpose(1, 2).contiguous().numpy(),
                                               pre.imp.transpose(1, 2).contiguous().numpy(),
                                               rows, motif,
                                               where, coef[rows, motif, where].numpy())
    got = sorted(zip(sparse["row"], sparse["motif_id"], sparse["hit_start"], strict=True))
    assert got == sorted(zip(b.tolist(), m.tolist(), pos.tolist(), strict=True))
    assert len(got) > 10
    order = np.lexsort((sparse["hit_start"], sparse["motif_id"], sparse["row"]))
    np.testing.assert_array_equal(sparse["hit_coefficient"][order], dense.coef[b, m, pos])
    np.testing.assert_array_equal(sparse["hit_importance_sq"][order],
                                  dense.importance_sq[b, m, pos])
    for key, col in (("hit_similarity", dense.similarity), ("hit_importance", dense.importance)):
        np.testing.assert_allclose(sparse[key][order], col[b, m, pos].numpy(), rtol=2e-6,
                                   atol=1e-7)  # float32 rounding of sums that cancel


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_preprocessing_a_region_alone_or_in_a_batch_gives_the_same_bits(regions_npz, modisco_h5,
                                                                       mode):
    """The compiled solver prepares regions in chunks (16 per thread by default): a region
    gets the same contributions, importance scale, global scale and gradient at zero in a
    chunk as alone, bit for bit. (finemo's whole-width convolution rounds differently for a
    batch of one; ``exact`` follows finemo there, as it must.)"""
    from nemo_dask.params import MotifParams

    mo = prepare_motifs(load_motifs(modisco_h5, MotifParams(mode=mode)), "cpu", False)
    n = 16
    contribs = torch.from_numpy(regions_npz["contributions"][:n]).float()
    seqs = None if mode == "hh" else torch.from_numpy(regions_npz["sequences"][:n]).float()
    lw = contribs.shape[2] - load_motifs(modisco_h5).width + 1 + mo.cwms.shape[2] - 1
    params = SolverParams(use_hypothetical=MODES[mode][1])
    solver = CpuSolver(mo, lw - mo.cwms.shape[2] + 1, params)
    chunk = solver.prepare(contribs, seqs)
    for k in (0, 5, 15):
        alone = solver.prepare(contribs[k:k + 1], None if seqs is None else seqs[k:k + 1])
        for a, b in zip(alone, chunk, strict=True):
            if a is not None:
                np.testing.assert_array_equal(a[0], b[k])
    # The window energies come from prefix sums: finemo's convolution's to rounding, so the
    # importance scale is too.
    finemo_imp = preprocess(contribs, seqs, mo, params, lw).imp
    np.testing.assert_allclose(chunk.imp, finemo_imp.transpose(1, 2).numpy(), rtol=1e-6)


# --- the GPU's batched step, run on CPU tensors ------------------------------------------


def _gpu_logic(monkeypatch, sparse: bool) -> None:
    """Run the CUDA path's code on the CPU: the batched torch step, checks every K steps, and
    (``sparse``) the prediction from the non-zeros."""
    import nemo_dask.solver.stream as stream

    monkeypatch.setattr(stream, "uses_compiled_cpu", lambda params, device: False)
    monkeypatch.setattr(stream._Fit, "SPARSE_DEVICES", ("cpu",) if sparse else ())


@pytest.mark.parametrize("mode", ["pp", "hh"])
def test_sparse_prediction_equals_the_transposed_convolution(regions_npz, modisco_h5, mode):
    from nemo_dask.solver.gpu import capacity, sparse_prediction

    motifs, mo, pre, npos = _prepared(regions_npz, modisco_h5, mode, 6)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn((6, mo.cwms.shape[0], npos), generator=gen)
    y = channels_last(y * (torch.rand(y.shape, generator=gen) < 0.002))
    y[3] = 0  # a region without non-zeros
    nnz = int((y != 0).sum())
    pred, overflow = sparse_prediction(y, pre.imp, mo.cwms, 4 * nnz)
    dense = F.conv_transpose1d(y * pre.imp, mo.cwms)
    assert not overflow and nnz > 20
    torch.testing.assert_close(pred, dense, rtol=1e-5, atol=1e-6)
    assert (pred[3] == 0).all()
    _, overflow = sparse_prediction(y, pre.imp, mo.cwms, nnz - 1)
    assert overflow
    assert capacity(10**6, 10**7, 38) is None  # 10 % non-zeros: the dense way
    assert capacity(10, 10**7, 38) == 1024 and capacity(3000, 10**7, 38) == 16384
    assert capacity(3000, 10**6, 38) is None  # 0.3 %: the dense way
    assert capacity(1000, 10**6, 38) == 4096
    assert capacity(1000, 10**6, 50) is None  # its room would outgrow the memory budget


@pytest.mark.parametrize("options", [dict(use_hypothetical=False), dict(use_hypothetical=True),
                                     dict(step_size_max=40.0)],
                         ids=["pp", "hh", "divergence"])
def test_gpu_windows_with_the_sparse_prediction_keep_every_step_and_hit(
        regions_npz, modisco_h5, monkeypatch, options):
    """On CUDA a window of K steps forms the prediction from the non-zeros when the last check
    found few; the same steps in every region and the same hits as the dense windows, whatever
    K (the prediction's sums only run in another order)."""
    motifs = load_motifs(modisco_h5,
                         MotifParams(mode="hh" if options.get("use_hypothetical") else "pp"))
    seqs, contribs = regions_npz["sequences"][:30], regions_npz["contributions"][:30]
    _gpu_logic(monkeypatch, sparse=False)
    dense = fit_block(seqs, contribs, motifs, params=SolverParams(check_every=5, batch_size=16,
                                                                   **options))
    _gpu_logic(monkeypatch, sparse=True)
    import nemo_dask.solver.stream as stream

    calls = []
    real = stream.sparse_prediction
    monkeypatch.setattr(stream, "sparse_prediction", lambda *a: calls.append(1) or real(*a))
    for k in (5, 3):
        sparse = fit_block(seqs, contribs, motifs,
                           params=SolverParams(check_every=k, batch_size=16, **options))
        assert_parity(sparse, dense.hits.rename({"region": "peak_id"}), dense.qc, max_edges=0)
        assert sparse.qc["step_size"].equals(dense.qc["step_size"])
    # Most windows took the sparse way (divergences make iterates dense, and windows dense).
    assert len(calls) > (0 if "step_size_max" in options else 100)


def test_a_gpu_window_that_outgrows_its_room_is_taken_again_densely(regions_npz, modisco_h5,
                                                                    monkeypatch):
    """With no room for the non-zeros every sparse window overflows, is undone and taken again
    with the dense convolution: the result is the dense windows' bit for bit."""
    import nemo_dask.solver.stream as stream

    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:20], regions_npz["contributions"][:20]
    params = SolverParams(check_every=4, batch_size=8, step_size_max=40.0)
    _gpu_logic(monkeypatch, sparse=False)
    dense = fit_block(seqs, contribs, motifs, params=params)
    _gpu_logic(monkeypatch, sparse=True)
    tried = []
    monkeypatch.setattr(stream, "capacity", lambda *a: tried.append(a) or 1)
    undone = fit_block(seqs, contribs, motifs, params=params)
    assert len(tried) > 10
    assert undone.hits.equals(dense.hits) and undone.qc.equals(dense.qc)


_SLOT_MEMORY = """
import sys, warnings
import numpy as np, torch
import nemo_dask.solver.stream as stream
from nemo_dask.bench.solver import resize_motifs
from nemo_dask.motifs import load_motifs
from nemo_dask.params import SolverParams
warnings.simplefilter("ignore")
torch.set_num_threads(1)
stream.uses_compiled_cpu = lambda params, device: False
stream._Fit.SPARSE_DEVICES = ("cpu",)
r = np.load(sys.argv[1])
motifs = resize_motifs(load_motifs(sys.argv[2]), 60)
b = int(sys.argv[3])
# Everything but the batch first (imports, compilation, caches), then the peak is reset
# (Linux: clear_refs 5), so that only the batch's own peak is read.
stream.fit_block(r["sequences"][:2], r["contributions"][:2], motifs,
                 params=SolverParams(batch_size=2, check_every=10, max_steps=40))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
stream.fit_block(r["sequences"][:b], r["contributions"][:b], motifs,
                 params=SolverParams(batch_size=b, check_every=10, max_steps=40))
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]) * 1024)
"""


def test_gpu_batch_budget_covers_a_slot(tmp_path, regions_npz, modisco_h5):
    """cuda_batch_size sizes the GPU batch with cuda_slot_bytes per slot; the CUDA path's code
    run on CPU tensors (sparse windows on) uses less than that per slot (32 more slots; each
    batch in its own process, so that one's transient peak cannot hide the other's)."""
    import subprocess
    import sys

    from nemo_dask.solver.stream import cuda_slot_bytes

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("resetting a process's peak memory needs Linux's /proc/self/clear_refs")

    npz = tmp_path / "r.npz"
    np.savez(npz, sequences=regions_npz["sequences"][:40],
             contributions=regions_npz["contributions"][:40])
    peaks = [int(subprocess.run([sys.executable, "-c", _SLOT_MEMORY, str(npz), str(modisco_h5),
                                 str(b)], capture_output=True, text=True, check=True
                                ).stdout.split()[-1]) for b in (8, 40)]
    per_slot = (peaks[1] - peaks[0]) / 32
    budget = cuda_slot_bytes(60, 951, 1000)
    assert 0.3 * budget < per_slot < budget, (per_slot, budget)


def test_cpu_batch_is_sized_from_motifs_width_and_the_workers_memory(regions_npz, modisco_h5,
                                                                     monkeypatch):
    """The CPU's default batch (regions prepared together) is 16 per thread, fewer when a
    quarter of the worker's memory limit would not hold them (an atlas of 600 motifs on
    2 kb regions); the limit comes from the dask worker running the task."""
    from types import SimpleNamespace

    import nemo_dask.solver.stream as stream
    from nemo_dask.calling.task import resolve_placement
    from nemo_dask.solver.cpu import default_chunk

    gib = 1 << 30
    assert default_chunk(20, 951, 1000, 1, 8 * gib) == 16
    assert default_chunk(20, 951, 1000, 2, 8 * gib) == 32
    small = default_chunk(600, 1951, 2000, 1, 1 * gib)
    assert 1 <= small < 16
    assert default_chunk(600, 1951, 2000, 1, 1 << 20) == 1  # never below one region
    worker = SimpleNamespace(state=SimpleNamespace(nthreads=2),
                             memory_manager=SimpleNamespace(memory_limit=3 * gib))
    assert resolve_placement("cpu", worker).memory_limit == 3 * gib
    assert resolve_placement("cpu", SimpleNamespace(state=SimpleNamespace(nthreads=1),
                                                    memory_manager=SimpleNamespace(
                                                        memory_limit=0))).memory_limit is None
    seen = []
    real = stream.default_chunk
    monkeypatch.setattr(stream, "default_chunk", lambda *a: seen.append(a) or real(*a))
    fit_block(regions_npz["sequences"][:3], regions_npz["contributions"][:3],
              load_motifs(modisco_h5), memory_limit=2 * gib, threads=1)
    assert seen == [(12, 951, 1000, 1, 2 * gib)]


def test_importance_scale_over_trim_masks_with_gaps(regions_npz, modisco_h5):
    """The compiled solver sums window energies over each trim mask's runs; a blend of two
    motifs (``nemo-dask bench --motifs``) has a mask of two runs. Its importance scale is
    finemo's convolution's to rounding (a first version summed from the first to the last
    column and changed step counts at M = 60)."""
    from nemo_dask.bench.solver import resize_motifs

    motifs = resize_motifs(load_motifs(modisco_h5), 40)
    gaps = [np.flatnonzero(np.diff(np.concatenate([[0], m, [0]]))).size // 2
            for m in motifs.trim_masks]
    assert max(gaps) >= 2
    mo = prepare_motifs(motifs, "cpu", False)
    contribs = torch.from_numpy(regions_npz["contributions"][:6]).float()
    seqs = torch.from_numpy(regions_npz["sequences"][:6]).float()
    npos = contribs.shape[2] - motifs.width + 1
    solver = CpuSolver(mo, npos, SolverParams())
    finemo_imp = preprocess(contribs, seqs, mo, SolverParams(), npos + mo.cwms.shape[2] - 1).imp
    np.testing.assert_allclose(solver.prepare(contribs, seqs).imp,
                               finemo_imp.transpose(1, 2).numpy(), rtol=1e-6)
