"""The CPU's default solver: regions preprocessed in chunks with torch, then each solved on its
own by the compiled kernel of :mod:`.compiled`, on one or more threads.

Nothing here depends on which regions share a chunk or a thread: a region's hits and QC are
the same whatever the batch size, block size, thread count or worker count (tested).
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..params import SolverParams
from . import compiled
from .kernels import PreparedMotifs, scaled_contributions

#: Largest Gram kernel (M x M x (2 Wc - 1) float32) kept for a hypothetical-mode motif set;
#: beyond it (M of several hundred) columns are built per region, as in projected modes.
GRAM_MAX_BYTES = 64 << 20
#: Memory for each thread's cache of columns (built per region, reused every step).
COLUMN_CACHE_BYTES = 32 << 20


class CpuMotifs(NamedTuple):
    """A motif set as the compiled kernel takes it (position-major, see :mod:`.compiled`)."""

    w: np.ndarray  # (M, Wc, 4) float32 cropped, trimmed motifs: w[m, k, b] = cwms[m, b, k]
    wkr: np.ndarray  # (4, Wc, M): wkr[b, kr, m] = w[m, Wc - 1 - kr, b]
    wsel: np.ndarray  # (Wc, 5, M): wsel[k, b, m] = w[m, k, b], row b = 4 zero
    wone: np.ndarray  # (M, 5, Wc): wone[m, b, k] = w[m, k, b], row b = 4 zero
    masks: np.ndarray  # (M, Wc, 4) float64 trim masks (hit importance)
    lam: np.ndarray  # (M,) float32
    one_lam: bool
    gram: np.ndarray  # (M, 2 Wc - 1, M) float32, or (0, 0, 0)
    bases: int  # non-zero entries per position of the masking sequence: 1 or 4
    run_lo: np.ndarray  # (M, R) int64 runs [lo, hi) of each trim mask (untrimmed width),
    run_hi: np.ndarray  # padded with empty runs


#: CpuMotifs already made, by the id of the prepared motifs' tensor (a worker's solver keeps
#: one PreparedMotifs per run and starts a stream per batch of queued blocks). Entries hold a
#: weak reference to that tensor and die with it; tensors compare element-wise, so they are
#: not dictionary keys themselves.
_MADE: dict[int, tuple[weakref.ref, dict]] = {}
_MADE_LOCK = threading.Lock()


def cpu_motifs(mo: PreparedMotifs, hypothetical: bool) -> CpuMotifs:
    """The arrays of :class:`CpuMotifs` from prepared motifs (CPU tensors), made once per
    motif set and kind of contributions."""
    with _MADE_LOCK:
        for key in [k for k, (ref, _) in _MADE.items() if ref() is None]:
            del _MADE[key]
        entry = _MADE.get(id(mo.cwms))
        if entry is None or entry[0]() is not mo.cwms:
            entry = _MADE[id(mo.cwms)] = (weakref.ref(mo.cwms), {})
        made = entry[1]
        key = (hypothetical, id(mo.masks), id(mo.lambdas))
        if key not in made:  # the entry holds masks and lambdas: their ids stay theirs
            made[key] = (mo.masks, mo.lambdas, _cpu_motifs(mo, hypothetical))
        return made[key][2]


def _cpu_motifs(mo: PreparedMotifs, hypothetical: bool) -> CpuMotifs:
    w = np.ascontiguousarray(mo.cwms.numpy().transpose(0, 2, 1))
    nm, wc, _ = w.shape
    wkr = np.ascontiguousarray(w[:, ::-1, :].transpose(2, 1, 0))
    wsel = np.zeros((wc, 5, nm), dtype=np.float32)
    wsel[:, :4, :] = w.transpose(1, 2, 0)
    wone = np.zeros((nm, 5, wc), dtype=np.float32)
    wone[:, :4, :] = w.transpose(0, 2, 1)
    lam = np.ascontiguousarray(mo.lambdas.view(-1).numpy(), dtype=np.float32)
    gram = np.zeros((0, 0, 0), dtype=np.float32)
    if hypothetical and nm * nm * (2 * wc - 1) * 4 <= GRAM_MAX_BYTES:
        gram = np.zeros((nm, 2 * wc - 1, nm), dtype=np.float32)
        ones = np.ones((wc, 4), dtype=np.float32)
        for m in range(nm):
            compiled.build_column(gram[m], w, wkr, ones, 0, m)
    masks = np.ascontiguousarray(mo.masks.numpy().transpose(0, 2, 1), dtype=np.float64)
    run_lo, run_hi = _mask_runs(mo.full_masks[:, 0, :].numpy() != 0)
    return CpuMotifs(w, wkr, wsel, wone, masks, lam, bool((lam == lam[0]).all()), gram,
                     4 if hypothetical else 1, run_lo, run_hi)


def _mask_runs(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of each row of ``masks`` (M, W) bool (a trim mask, the same for every base)
    as [lo, hi) pairs (M, R), padded with empty runs."""
    runs = []
    for row in masks:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        runs.append(edges.reshape(-1, 2))
    width = max(1, max(len(r) for r in runs))
    lo = np.zeros((len(runs), width), dtype=np.int64)
    hi = np.zeros((len(runs), width), dtype=np.int64)
    for m, r in enumerate(runs):
        lo[m, :len(r)], hi[m, :len(r)] = r[:, 0], r[:, 1]
    return lo, hi


class _Scratch:
    """One thread's working arrays for regions of M motifs and P positions."""

    def __init__(self, nm: int, npos: int, wc: int):
        lw = npos + wc - 1
        self.y = np.zeros((npos, nm), dtype=np.float32)
        self.c = np.zeros((npos, nm), dtype=np.float32)
        self.corr = np.zeros((npos, nm), dtype=np.float32)
        self.pred = np.zeros((lw, 4), dtype=np.float32)
        self.pm1 = np.zeros(lw, dtype=np.float32)
        self.lists = np.zeros((2, npos), dtype=np.int32)
        self.flags = np.zeros((3, lw), dtype=np.uint8)
        self.nzb = np.zeros(npos * nm, dtype=np.uint8)
        self.starts = np.zeros(lw + 1, dtype=np.int32)
        self.stops = np.zeros(lw + 1, dtype=np.int32)
        self.colslot = np.full((npos, nm), -1, dtype=np.int32)
        col_bytes = nm * (2 * wc - 1) * 4
        cap = max(16, COLUMN_CACHE_BYTES // col_bytes)
        # np.zeros maps untouched pages lazily: only the columns built take memory.
        self.pool = np.zeros((cap, 2 * wc - 1, nm), dtype=np.float32)
        self.pool_keys = np.zeros(cap, dtype=np.int64)


class Prepared(NamedTuple):
    """A chunk of regions ready for :meth:`CpuSolver.solve` (position-major arrays)."""

    x: np.ndarray  # (B, L, 4) float32 contributions divided by their global scale
    seq: np.ndarray | None  # (B, Lw, 4) one-hot under the motif windows; None: hypothetical
    g0: np.ndarray  # (B, P, M) float32 minus the gradient at zero
    imp: np.ndarray  # (B, P, M) float32 importance scale
    gscale: np.ndarray  # (B,) float32 global scale


class ChunkResult(NamedTuple):
    """The solved regions of one chunk: QC per region and hits, by row of the chunk."""

    qc: dict[str, np.ndarray]  # row, nll, dual_gap, num_steps, step_size, global_scale, status
    hits: dict[str, np.ndarray]  # row, motif_id, hit_start, hit_coefficient, hit_similarity,
    #                              hit_importance, hit_importance_sq


class CpuSolver:
    """Solves chunks of preprocessed regions on the CPU (see the module docstring).

    Parameters
    ----------
    mo : PreparedMotifs
        The motifs, on the CPU.
    npos : int
        P = L - W + 1.
    params : SolverParams
    threads : int
        Threads solving regions side by side (each with its own scratch arrays).
    """

    #: How each step's correlation of the prediction is formed (:func:`.compiled.solve_region`'s
    #: ``way``): 0, the cheaper way; tests set 1 (columns) or 2 (direct).
    way = 0

    def __init__(self, mo: PreparedMotifs, npos: int, params: SolverParams, threads: int = 1):
        self.mo = mo
        self.km = cpu_motifs(mo, params.use_hypothetical)
        self.params = params
        self.npos = npos
        self.wc = self.km.w.shape[1]
        self.lw = npos + self.wc - 1
        self.threads = max(1, threads)
        self._local = threading.local()
        self._pool = (ThreadPoolExecutor(self.threads, thread_name_prefix="nemo-dask-region")
                      if self.threads > 1 else None)
        self._ones = np.ones((1, self.lw, 4), dtype=np.float32) if params.use_hypothetical \
            else None
        self._lam_tiled = np.tile(self.km.lam, npos)

    def close(self) -> None:
        """Stop the threads (if any)."""
        if self._pool is not None:
            self._pool.shutdown()

    def _scratch(self) -> _Scratch:
        s = getattr(self._local, "scratch", None)
        if s is None:
            s = self._local.scratch = _Scratch(self.km.w.shape[0], self.npos, self.wc)
        return s

    def prepare(self, contribs: torch.Tensor, seqs: torch.Tensor | None) -> Prepared:
        """finemo's preprocessing of a chunk of regions, and each one's gradient at zero.

        The global scale and scaled contributions are :func:`.kernels.scaled_contributions`'
        (finemo's bits); the importance scale's window energies come from prefix sums
        (:func:`.compiled.importance`: the same sums, rounded once) and ``g0 = conv1d(x, cwms) * imp`` from
        the cropped motifs, so that a region needing few steps costs little more than
        reading it. Row by row: no result depends on which regions share the chunk.

        Parameters
        ----------
        contribs : Tensor, shape=(B, 4, L) or (B, L), float32
        seqs : Tensor, shape=(B, 4, L), float32, or None (hypothetical modes)
        """
        mo, p = self.mo, self.params
        x, seq, gscale = scaled_contributions(contribs, seqs, mo, p, self.lw)
        x_np = _position_major(x)
        imp = compiled.importance(x_np, self.km.run_lo, self.km.run_hi, self.npos, p.eps)
        lo = mo.offset
        gx = F.conv1d(x[:, :, lo:lo + self.lw], mo.cwms)  # (B, M, P)
        g0 = _position_major(gx) * imp
        return Prepared(x_np, None if seq is None else _position_major(seq), g0, imp,
                        gscale.numpy().astype(np.float32))

    def solve(self, pre: Prepared) -> ChunkResult:
        """Solve every region of ``pre`` (B regions) to its end; results by row. With
        several threads each solves a contiguous share of the rows."""
        n = pre.x.shape[0]
        qc_f = np.zeros((n, 3), dtype=np.float32)
        qc_i = np.zeros((n, 2), dtype=np.int64)
        seq = self._ones if pre.seq is None else pre.seq
        p, km = self.params, self.km

        def share(bounds: tuple[int, int]):
            s = self._scratch()
            return compiled.solve_chunk(
                bounds[0], bounds[1], pre.x, seq, self.mo.offset, pre.g0, pre.imp, km.lam,
                self._lam_tiled, km.one_lam, km.w, km.wkr, km.wsel, km.wone, km.gram,
                km.bases, s.y, s.c, s.corr, s.pred, s.pm1, s.lists, s.flags, s.nzb, s.starts,
                s.stops, s.colslot, s.pool, s.pool_keys, p.step_size_max, p.step_size_min,
                p.convergence_tol, p.max_steps, p.step_adjust, self.way, qc_f, qc_i)

        edges = np.linspace(0, n, min(self.threads, n) + 1).round().astype(int)
        shares = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
        parts = list(self._pool.map(share, shares)) if self._pool is not None and \
            len(shares) > 1 else [share(b) for b in shares]
        rows, motif, pos, coef = (np.concatenate([part[k] for part in parts]) for k in range(4))
        qc = {
            "row": np.arange(n, dtype=np.int64),
            "nll": qc_f[:, 1], "dual_gap": qc_f[:, 0], "num_steps": qc_i[:, 0].astype(np.int32),
            "step_size": qc_f[:, 2], "global_scale": pre.gscale, "status": qc_i[:, 1],
        }
        return ChunkResult(qc, self._score(pre.x, pre.imp, rows, motif, pos, coef))

    def _score(self, x: np.ndarray, imp: np.ndarray, rows: np.ndarray, motif: np.ndarray,
               pos: np.ndarray, coef: np.ndarray) -> dict[str, np.ndarray]:
        """finemo's hit statistics at the final iterates' non-zeros (its convolutions
        evaluated there only, summed in float64 and rounded once) and its post-filter.
        ``x`` (B, L, 4) and ``imp`` (B, P, M) position-major; hits given by region row,
        motif and position."""
        imp_nz = torch.from_numpy(imp[rows, pos, motif])
        # finemo's own float32 expression, so that hit_importance_sq has its bits.
        imp_sq = (imp_nz**-2 - self.params.eps).numpy()
        dot, importance = compiled.window_sums(x, self.km.w, self.km.masks, self.mo.offset,
                                               rows, motif, pos)
        similarity = dot / np.sqrt(imp_sq)
        keep = (similarity >= self.km.lam[motif]) if self.params.post_filter else \
            np.ones(rows.size, dtype=bool)
        return {"row": rows[keep], "motif_id": motif[keep], "hit_start": pos[keep],
                "hit_coefficient": coef[keep], "hit_similarity": similarity[keep],
                "hit_importance": importance[keep], "hit_importance_sq": imp_sq[keep]}


def _position_major(t: torch.Tensor) -> np.ndarray:
    """A (B, C, N) tensor as a C-contiguous (B, N, C) array: the storage of a channels-last
    tensor as it is (no copy), any other tensor transposed."""
    return np.ascontiguousarray(t.transpose(1, 2).numpy())


def default_chunk(n_motifs: int, n_pos: int, length: int, threads: int,
                  memory_bytes: int | None = None, share: float = 0.25) -> int:
    """Regions preprocessed together on the CPU: 16 per thread, fewer when ``share`` of
    ``memory_bytes`` (the worker's memory limit; None: the machine's available memory) would
    not hold them.

    A chunk region holds x, the one-hot and the contributions (about 16 L float32 values with
    the inputs' copies), ``imp``, ``g0`` and the preprocessing's temporaries (about 5 M P);
    each thread's scratch adds about 4 M P and its column cache.

    Returns
    -------
    int
        At least 1.
    """
    if memory_bytes is None:
        memory_bytes = _available_memory()
    per_region = 4 * (5 * n_motifs * n_pos + 16 * length)
    per_thread = 4 * 4 * n_motifs * n_pos + COLUMN_CACHE_BYTES
    budget = share * memory_bytes - threads * per_thread
    return int(max(1, min(16 * threads, budget // per_region)))


def _available_memory() -> int:
    """Memory this process may still use: the machine's available memory (psutil, which
    dask depends on)."""
    import psutil

    return int(psutil.virtual_memory().available)


def warm_up() -> None:
    """Load the compiled kernels (from numba's cache, or compile them) by solving two tiny
    regions in each kind of mode: a process that will solve can do this once beforehand
    (the embedded cluster's fork server does, so that its workers start with them)."""
    import warnings

    from ..params import SolverParams
    from .kernels import channels_last

    gen = torch.Generator().manual_seed(0)
    w = torch.rand((2, 4, 6), generator=gen)
    masks = torch.ones((2, 4, 6))
    mo = PreparedMotifs(channels_last(w), channels_last(masks),
                        torch.full((1, 2, 1), 0.5), 0, 6, channels_last(w), channels_last(masks))
    contribs = torch.rand((2, 4, 40), generator=gen) - 0.5
    seqs = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 40), generator=gen), 4)
    seqs = seqs.transpose(1, 2).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode in ("pp", "hh"):
            solver = CpuSolver(mo, 35, SolverParams(use_hypothetical=mode == "hh", max_steps=3))
            solver.solve(solver.prepare(contribs, None if mode == "hh" else seqs))
