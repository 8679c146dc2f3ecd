"""The Fi-NeMo optimiser over a stream of blocks of regions: arrays in, hit and QC columns out.

A non-negative lasso per region, solved by proximal gradient descent with Nesterov momentum,
per-region step sizes that shrink on divergence and a duality-gap stopping rule, exactly as
finemo 0.41's ``fit_contribs`` (see ALGORITHM.md). The numerics are :mod:`.kernels`; this module
keeps the batch slots: which region of which block sits in which slot, when a region retires and
what replaces it. It knows nothing of dask, zarr or files and runs on any torch device.

Besides the cropped convolutions of :mod:`.kernels`, one thing makes it faster than finemo
without changing any region's iterates: finemo keeps ``batch_size`` slots busy to the end,
padding included; here finished slots are refilled while regions remain and dropped once none
do, so no step computes empty slots.

On CPU the default solver (:mod:`.cpu`, :mod:`.compiled`) preprocesses regions in chunks
with torch and then solves each region on its own, to its end, in a compiled kernel whose cost
follows the region's non-zeros (see :mod:`.compiled`): no batch slots at all.
``SolverParams(exact=True)`` keeps finemo's dense step and scoring in batch slots, as finemo
runs them. On a GPU, convergence is checked every ``check_every`` steps instead of every step,
so the host does not wait for the device at each step; a region that finishes between two
checks is frozen (its iterate, counters and gap stop changing), so its result is the one it
has when checked at every step.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from ..motifs import Motifs
from ..params import CUDA_MAX_BATCH, CUDA_MEMORY_SHARE, SolverParams
from ..schema import CONVERGED, FAILED, SOLVER_HITS_DTYPES, SOLVER_QC_DTYPES, TIMEOUT
from .cpu import CpuSolver, default_chunk
from .gpu import capacity, sparse_prediction
from .kernels import (
    PreparedMotifs,
    Preprocessed,
    channels_last,
    compiled_step,
    prepare_motifs,
    preprocess,
    prox_step,
    score,
)
from .precision import ieee_float32


class BlockResult(NamedTuple):
    """Raw solver output for one block (values on the solver's normalised scale).

    hits: region, motif_id, hit_start, hit_coefficient, hit_similarity, hit_importance,
    hit_importance_sq. qc: region, nll, dual_gap, num_steps, step_size, global_scale, status
    (0 converged, 1 timeout, 2 failed). ``region`` is ``region_offset`` + row in the block.
    """

    hits: pl.DataFrame
    qc: pl.DataFrame


class _Slots:
    """The regions being optimised together, one row per slot (finemo's batch buffers)."""

    def __init__(self, n: int, m: int, p: int, length: int, lw: int, projected: bool, device):
        f32 = dict(dtype=torch.float32, device=device)
        self.x = channels_last(torch.zeros((n, 4, length), **f32))
        self.seq = channels_last(torch.zeros((n, 4, lw), **f32)) if projected else None
        self.imp = channels_last(torch.zeros((n, m, p), **f32))
        self.y = channels_last(torch.zeros((n, m, p), **f32))
        self.c = channels_last(torch.zeros((n, m, p), **f32))
        self.i = torch.zeros((n, 1, 1), dtype=torch.int32, device=device)
        self.step = torch.zeros((n, 1, 1), **f32)
        self.gscale = torch.zeros((n,), **f32)
        self.region = torch.full((n,), -1, dtype=torch.int64, device=device)
        self.block = torch.full((n,), -1, dtype=torch.int64, device=device)

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every slot not in ``rows`` (used once no region is left to load)."""
        for name, value in vars(self).items():
            if value is not None:
                setattr(self, name, value[rows])


@dataclass
class Job:
    """One block of regions for :func:`fit_stream`.

    ``done`` is called with the block's :class:`BlockResult` as soon as its last region
    retires (on the solver's thread), while the solver goes on with other blocks. The solver
    takes the arrays: it clears them from the Job once it holds them, so that a long stream
    does not keep finished blocks in memory.
    """

    sequences: np.ndarray
    contributions: np.ndarray
    region_offset: int
    done: Callable[[BlockResult], None]


def fit_block(
    sequences: np.ndarray,
    contributions: np.ndarray,
    motifs: Motifs | PreparedMotifs,
    *,
    params: SolverParams | None = None,
    device: torch.device | str = "cpu",
    threads: int | None = None,
    region_offset: int = 0,
    progress: Callable[[int], None] | None = None,
    memory_limit: int | None = None,
) -> BlockResult:
    """Call motif hits in one block of regions.

    Parameters
    ----------
    sequences : ndarray, shape=(n, 4, L), int8
        One-hot sequences (all-zero column for N).
    contributions : ndarray, shape=(n, 4, L) or (n, L)
        Hypothetical contributions, or compact projected ones (broadcast over bases and masked
        by the sequence). Any float dtype; finemo stores float16.
    motifs
        A :class:`~nemo_dask.motifs.Motifs`, or one already prepared for ``device``.
    params
        Optimiser settings and mode (finemo's defaults, mode pp, when omitted); modes ph and hh
        fit the contributions as hypothetical, pp and hp as projected.
    device
        Where to compute: "cpu", "cuda", a torch.device.
    threads
        The torch threads the caller gave this solve, for the CPU's default batch size
        (:meth:`~nemo_dask.params.SolverParams.batch_size_for`); None: torch's current setting.
    region_offset
        Added to row numbers in the output and in warnings (the block's first region).
    progress
        Called with the number of regions that just finished.
    memory_limit
        Bytes this solve may use (a dask worker's memory limit), for the CPU's default batch
        (:func:`~nemo_dask.solver.cpu.default_chunk`); None: the machine's available memory.
    """
    results: list[BlockResult] = []
    fit_stream(Job(sequences, contributions, region_offset, results.append), lambda: None,
               motifs, params=params, device=device, threads=threads, progress=progress,
               memory_limit=memory_limit)
    return results[0]


def fit_stream(
    first: Job,
    more: Callable[[], Job | None],
    motifs: Motifs | PreparedMotifs,
    *,
    params: SolverParams | None = None,
    device: torch.device | str = "cpu",
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    memory_limit: int | None = None,
) -> None:
    """Solve ``first`` and every block ``more()`` hands over, in one stream of batches.

    When no region of the blocks taken so far is left to load, the solver asks ``more()`` for
    another block (``None``: not now) and fills its free slots with it, so the slow regions
    ending one block share their batches with the next block instead of running alone. Each
    region's result is the same as with :func:`fit_block` (they never depend on the batch).
    Blocks must have the regions' width of ``first``. Arguments as :func:`fit_block`.
    """
    params = params or SolverParams()
    device = torch.device(device)
    if isinstance(motifs, Motifs):
        motifs = prepare_motifs(motifs, device, params.sqrt_transform)
    if threads is None:
        threads = torch.get_num_threads()
    max_slots = params.batch_size_for(device.type, threads)
    length = first.sequences.shape[-1]
    n_pos = length - motifs.width + 1
    if params.batch_size is None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        max_slots = cuda_batch_size(free, motifs.cwms.shape[0], n_pos, length)
    elif params.batch_size is None and uses_compiled_cpu(params, device):
        max_slots = default_chunk(motifs.cwms.shape[0], n_pos, length, threads, memory_limit)
    # TF32 convolutions would move the duality-gap stop on CUDA (.precision)
    with torch.inference_mode(), ieee_float32(device):
        _Fit(first, more, motifs, params, device, max_slots, threads, progress).run()


def uses_compiled_cpu(params: SolverParams, device: torch.device) -> bool:
    """Whether regions are solved by the compiled per-region CPU solver (:mod:`.cpu`): on the
    CPU unless ``exact`` or ``compile_optimizer`` ask for finemo's batched torch step."""
    return device.type == "cpu" and not params.exact and not params.compile_optimizer




def cuda_slot_bytes(n_motifs: int, n_pos: int, length: int) -> int:
    """Device memory one slot of the batched step takes at its peak: float32 x and the
    one-hot under the windows (8 L values), importance, iterate and extrapolated point
    (3 M P), a step's temporaries (gradient, candidates, masks, residual, scoring of
    retiring rows) and, in windows that form the prediction from the non-zeros
    (:mod:`.gpu`), the window's starting state and the scatter's room. Measured on CPU
    tensors with the same code (``tests/solver/test_speed.py``): 19 M P float32 values per
    slot at M = 60 with dense windows, 27 M P with sparse ones; budgeted at 28 M P + 24 L."""
    return 4 * (28 * n_motifs * n_pos + 24 * length)


def cuda_batch_size(free_bytes: int, n_motifs: int, n_pos: int, length: int,
                    share: float = CUDA_MEMORY_SHARE, cap: int = CUDA_MAX_BATCH) -> int:
    """The default batch on a GPU: as many slots as ``share`` of its free memory holds.

    Parameters
    ----------
    free_bytes : int
        The device's free memory (``torch.cuda.mem_get_info()[0]``).
    n_motifs, n_pos, length : int
        M, P and L of the regions.
    share, cap : float, int
        The share of free memory to fill and the largest batch returned (a larger batch no
        longer speeds up a step once the device is busy).

    Returns
    -------
    int
        Between 2 and ``cap``. A slot takes :func:`cuda_slot_bytes`.
    """
    per_slot = cuda_slot_bytes(n_motifs, n_pos, length)
    return int(max(2, min(cap, share * free_bytes // per_slot)))


class _Block:
    """A block being solved: its inputs on the CPU and the results of its retired regions."""

    def __init__(self, job: Job, use_hypothetical: bool, width: int, index: int):
        sequences, contributions = job.sequences, job.contributions
        n, _, length = sequences.shape
        if contributions.ndim == 2 and use_hypothetical:
            raise ValueError("hypothetical modes need contributions of shape (N, 4, L); these "
                             "are compact projected (N, L)")
        if contributions.shape[0] != n or contributions.shape[-1] != length:
            raise ValueError(f"contributions {contributions.shape} do not match sequences "
                             f"{sequences.shape}")
        if length < width:
            raise ValueError(f"regions of width {length} are narrower than the motifs ({width})")
        self.seqs = torch.from_numpy(np.ascontiguousarray(sequences))
        self.contribs = torch.from_numpy(np.ascontiguousarray(contributions))
        job.sequences = job.contributions = None  # type: ignore[assignment]
        self.n, self.length, self.index = n, length, index
        self.offset, self.done = job.region_offset, job.done
        self.loaded = self.retired = 0
        # Regions preprocessed ahead of their loading (_Fit._prepared): (first region, result).
        self.ahead: tuple[int, Preprocessed] | None = None
        self.hits: list[dict[str, np.ndarray]] = []
        self.qc: list[dict[str, np.ndarray]] = []

    def finish(self) -> None:
        result = BlockResult(_frame(self.hits, SOLVER_HITS_DTYPES), _frame(self.qc, SOLVER_QC_DTYPES))
        self.seqs = self.contribs = None  # type: ignore[assignment]
        self.ahead = None
        self.hits, self.qc = [], []
        done, self.done = self.done, None  # type: ignore[assignment]
        done(result)


class _Fit:
    """State of one :func:`fit_stream` call."""

    #: Devices whose batched step may form the prediction from the non-zeros (tests add "cpu").
    SPARSE_DEVICES: tuple[str, ...] = ("cuda",)

    def __init__(self, first, more, motifs, params, device, batch_size, threads, progress):
        self.more = more
        # exact: finemo's whole-width motifs (the crop would change the convolutions' bits).
        self.mo = motifs.uncropped() if params.exact else motifs
        self.hyp = params.use_hypothetical
        self.p = params
        self.device = device
        self.progress = progress
        # Blocks not yet handed back, by index (finished ones are dropped: a stream can be long).
        self.blocks = {0: _Block(first, self.hyp, motifs.width, 0)}
        self.n_blocks = 1
        self.length = self.blocks[0].length
        self.npos = self.length - motifs.width + 1
        self.lw = self.npos + self.mo.cwms.shape[2] - 1
        self.cpu: CpuSolver | None = None
        if params.compile_optimizer:
            self.step_fn = compiled_step()
        elif not uses_compiled_cpu(params, device):
            self.step_fn = prox_step
        else:
            self.cpu = CpuSolver(motifs, self.npos, params, threads)
        self.check_every = params.check_every_for(device.type)
        # The batched step's sparse prediction (:mod:`.gpu`): on GPUs, never for exact.
        self.sparse_ok = (device.type in self.SPARSE_DEVICES and not params.exact
                          and not params.compile_optimizer)
        # oneDNN picks its convolution kernels by batch size, and their rounding differs (a
        # knife-edge region can take another step count at batch 1, 2-16 or 24 on one CPU).
        # exact keeps finemo's batch of B slots throughout, padding included, as finemo -b B
        # does; otherwise at least two slots, so that no region ever runs at batch one.
        self.fixed_slots = params.exact
        self.max_slots = batch_size if params.exact else max(2, batch_size)

    def run(self) -> None:
        if self.cpu is not None:
            try:
                self._run_compiled()
            finally:
                self.cpu.close()
            return
        first = self.max_slots if self.fixed_slots else max(2, min(self.max_slots,
                                                                   self.blocks[0].n))
        s = self._fill(self._new_slots(first))
        if self.check_every == 1:
            self._run_checking_each_step(s)
        else:
            self._run_checking_every(s, self.check_every)

    def _run_compiled(self) -> None:
        """The CPU's default: each pending block's regions, ``max_slots`` at a time,
        preprocessed together and solved one by one to their end (:class:`.cpu.CpuSolver`).
        Regions do not share steps, so a block's slow regions hold nothing up."""
        while (block := self._pending()) is not None:
            start = block.loaded
            stop = min(block.n, start + self.max_slots)
            contribs = block.contribs[start:stop].to(self.device, torch.float32)
            seqs = None if self.hyp else block.seqs[start:stop].to(self.device, torch.float32)
            block.loaded = stop
            out = self.cpu.solve(self.cpu.prepare(contribs, seqs))
            regions = np.arange(start, stop, dtype=np.int64)
            hits = dict(out.hits)
            hits["region"] = regions[hits.pop("row")]
            qc = dict(out.qc)
            qc["region"] = regions[qc.pop("row")]
            self._record(block, hits, qc)
            if self.progress is not None:
                self.progress(stop - start)

    def _run_checking_each_step(self, s: _Slots) -> None:
        """Step and check every slot's convergence each step (finemo's loop)."""
        p = self.p
        while (active := s.region >= 0).any():
            s.y, s.c, gap, nll = self._step(s)
            s.i += 1
            diverged = ~torch.isfinite(gap) & active
            if diverged.any():
                s.y[diverged] = 0
                s.c[diverged] = 0
                s.i[diverged] = 0
                s.step[diverged] *= p.step_adjust
            converged, timeout, failed = _stopping(s, gap, p)
            done = (converged | timeout | failed) & active
            if not done.any():
                continue
            rows = torch.nonzero(done).view(-1)
            status = _status(converged, timeout)
            self._retire(s, rows, gap, nll, status)
            s.region[rows] = -1
            s = self._fill(s)

    def _run_checking_every(self, s: _Slots, k: int) -> None:
        """Take ``k`` steps between two reads of the device's state; each slot whose region
        finishes within them is frozen at the step it finished (the iterate, counters and
        gap it had then), so results equal :meth:`_run_checking_each_step`'s.

        On a GPU each window also forms the prediction the way :mod:`.gpu` chose at the last
        check, from the batch's non-zeros read with the convergence flags (one transfer per
        window); a sparse window whose non-zeros outgrew their room is undone and taken
        again densely."""
        p = self.p
        room: int | None = None
        while (active := s.region >= 0).any():
            n = active.numel()
            kept = (s.y, s.c, s.i, s.step) if room is not None else None
            finished = torch.zeros(n, dtype=torch.bool, device=self.device)
            gap_at = torch.zeros(n, dtype=torch.float32, device=self.device)
            nll_at = torch.zeros(n, dtype=torch.float32, device=self.device)
            status = torch.zeros(n, dtype=torch.int64, device=self.device)
            overflow = torch.zeros((), dtype=torch.bool, device=self.device)
            for _ in range(k):
                if room is None:
                    y, c, gap, nll = self._step(s)
                else:
                    pred, over = sparse_prediction(s.y, s.imp, self.mo.cwms, room)
                    overflow |= over
                    mo = self.mo
                    y, c, gap, nll = prox_step(mo.cwms, s.x, s.seq, s.imp, s.y, s.c, s.i, s.step,
                                               mo.lambdas, mo.offset, pred)
                live = active & ~finished
                diverged = ~torch.isfinite(gap) & live
                lv, dv = live.view(-1, 1, 1), diverged.view(-1, 1, 1)
                s.y = torch.where(lv, y.masked_fill_(dv, 0), s.y)
                s.c = torch.where(lv, c.masked_fill_(dv, 0), s.c)
                s.i = torch.where(lv, s.i + 1, s.i).masked_fill_(dv, 0)
                s.step = torch.where(dv, s.step * p.step_adjust, s.step)
                converged, timeout, failed = _stopping(s, gap, p)
                now = (converged | timeout | failed) & live
                gap_at = torch.where(now, gap, gap_at)
                nll_at = torch.where(now, nll, nll_at)
                code = _status(converged, timeout)
                status = torch.where(now, code, status)
                finished |= now
            any_done, over, nnz = torch.stack([
                finished.any().long(), overflow.long(),
                torch.count_nonzero(s.y) if self.sparse_ok else torch.zeros((), dtype=torch.long,
                                                                          device=self.device),
            ]).tolist()
            if over:  # a sparse window lacked room: take it again densely
                s.y, s.c, s.i, s.step = kept
                room = None
                continue
            room = capacity(nnz, s.y.numel(), self.mo.cwms.shape[2]) if self.sparse_ok else None
            if not any_done:
                continue
            rows = torch.nonzero(finished).view(-1)
            self._retire(s, rows, gap_at, nll_at, status)
            s.region[rows] = -1
            s = self._fill(s)

    def _step(self, s: _Slots) -> tuple[torch.Tensor, ...]:
        mo = self.mo
        return self.step_fn(mo.cwms, s.x, s.seq, s.imp, s.y, s.c, s.i, s.step, mo.lambdas,
                            mo.offset)

    def _new_slots(self, n: int) -> _Slots:
        return _Slots(n, self.mo.cwms.shape[0], self.npos, self.length, self.lw, not self.hyp,
                      self.device)

    def _pending(self) -> _Block | None:
        """The block whose regions are loaded next, asking ``more()`` when none is left."""
        for block in self.blocks.values():
            if block.loaded < block.n:
                return block
        job = self.more()
        if job is None:
            return None
        block = _Block(job, self.hyp, self.mo.width, self.n_blocks)
        if block.length != self.length:
            raise ValueError(f"a block of width {block.length} joined a stream of width "
                             f"{self.length}")
        self.blocks[block.index] = block
        self.n_blocks += 1
        return block

    def _fill(self, s: _Slots) -> _Slots:
        """Load pending regions into free slots (growing them up to the batch size when a new
        block arrives), or drop idle slots when none is pending; returns the slots."""
        free = torch.nonzero(s.region < 0).view(-1)
        while free.numel():
            block = self._pending()
            if block is None:
                return s if self.fixed_slots else self._shrink(s)
            wanted = min(self.max_slots, int((s.region >= 0).sum()) + block.n - block.loaded)
            if s.region.numel() < wanted:
                s = self._grow(s, wanted)
                free = torch.nonzero(s.region < 0).view(-1)
            k = min(free.numel(), block.n - block.loaded)
            self._load(s, free[:k], block, block.loaded, free.numel())
            block.loaded += k
            free = free[k:]
        return s

    def _grow(self, s: _Slots, n: int) -> _Slots:
        """``s`` with idle slots added up to ``n``, its busy slots kept in place."""
        grown = self._new_slots(n)
        rows = torch.arange(s.region.numel(), device=self.device)
        for name, value in vars(s).items():
            if value is not None:
                getattr(grown, name)[rows] = value
        return grown

    @staticmethod
    def _shrink(s: _Slots) -> _Slots:
        """Drop idle slots once no region is left to load, keeping at least two."""
        idle = s.region < 0
        n_busy = int((~idle).sum())
        if n_busy and s.region.numel() > max(n_busy, 2):
            keep = torch.nonzero(~idle).view(-1)
            if n_busy == 1:
                keep = torch.cat([keep, torch.nonzero(idle).view(-1)[:1]])
            s.keep(keep)
        return s

    #: Regions preprocessed together when slots free up one or two at a time: one call per 16
    #: regions instead of one per region (preprocessing is row by row, so results are the same:
    #: tested, and the convolution gives the same bits for a batch of one as for 16).
    PREPROCESS_AHEAD = 16

    def _prepared(self, block: _Block, start: int, stop: int, n_free: int) -> Preprocessed:
        """Regions ``start:stop`` of ``block`` preprocessed, from those prepared ahead.

        ``exact`` preprocesses them as finemo does instead: all the freed slots' regions in
        one batch of ``n_free`` rows, padded with zero regions where none are left (oneDNN's
        convolution rounds differently for a batch of one).
        """
        if self.p.exact:
            n = stop - start
            contribs = block.contribs[start:stop].to(self.device, torch.float32)
            seqs = None if self.hyp else block.seqs[start:stop].to(self.device, torch.float32)
            if n_free > n:
                pad = (0, 0) * (contribs.ndim - 1) + (0, n_free - n)
                contribs = F.pad(contribs, pad)
                seqs = None if seqs is None else F.pad(seqs, (0, 0, 0, 0, 0, n_free - n))
            pre = preprocess(contribs, seqs, self.mo, self.p, self.lw)
            return Preprocessed(pre.x[:n], None if pre.seq is None else pre.seq[:n],
                                pre.imp[:n], pre.gscale[:n])
        ahead = block.ahead
        if ahead is None or not ahead[0] <= start or stop > ahead[0] + ahead[1].x.shape[0]:
            end = min(block.n, max(stop, start + self.PREPROCESS_AHEAD))
            contribs = block.contribs[start:end].to(self.device, torch.float32)
            seqs = None if self.hyp else block.seqs[start:end].to(self.device, torch.float32)
            ahead = block.ahead = (start, preprocess(contribs, seqs, self.mo, self.p, self.lw))
        first, pre = ahead
        sl = slice(start - first, stop - first)
        return Preprocessed(pre.x[sl], None if pre.seq is None else pre.seq[sl], pre.imp[sl],
                            pre.gscale[sl])

    def _load(self, s: _Slots, rows: torch.Tensor, block: _Block, start: int,
              n_free: int) -> None:
        """Preprocess regions ``start ..`` of ``block`` into slots ``rows`` (of ``n_free``
        free slots); reset their state."""
        stop = start + rows.numel()
        pre = self._prepared(block, start, stop, n_free)
        if stop == block.n:
            block.ahead = None
        if pre.seq is not None:
            s.seq[rows] = pre.seq
        s.imp[rows] = pre.imp
        s.x[rows] = pre.x
        s.gscale[rows] = pre.gscale
        s.region[rows] = torch.arange(start, stop, device=self.device)
        s.block[rows] = block.index
        s.y[rows] = 0
        s.c[rows] = 0
        s.i[rows] = 0
        s.step[rows] = self.p.step_size_max

    def _retire(self, s: _Slots, rows, gap, nll, status) -> None:
        """Score finished slots ``rows``, record their hits and QC with their blocks, and hand
        over every block whose last region this was."""
        sc = score(s.x[rows], s.imp[rows], s.c[rows], self.mo, self.p, self.lw)
        b, m, pos = torch.nonzero(sc.coef, as_tuple=True)
        hits = _numpy({
            "region": s.region[rows][b], "motif_id": m, "hit_start": pos,
            "hit_coefficient": sc.coef[b, m, pos],
            "hit_similarity": sc.similarity[b, m, pos],
            "hit_importance": sc.importance[b, m, pos],
            "hit_importance_sq": sc.importance_sq[b, m, pos],
        })
        hit_block = s.block[rows][b].numpy(force=True)
        qc = _numpy({
            "region": s.region[rows], "nll": nll[rows], "dual_gap": gap[rows],
            "num_steps": s.i[rows].view(-1), "step_size": s.step[rows].view(-1),
            "global_scale": s.gscale[rows], "status": status[rows],
        })
        qc_block = s.block[rows].numpy(force=True)
        for index in np.unique(qc_block):
            block = self.blocks[int(index)]
            in_hits, in_qc = hit_block == index, qc_block == index
            self._record(block, {k: v[in_hits] for k, v in hits.items()},
                         {k: v[in_qc] for k, v in qc.items()})
        if self.progress is not None:
            self.progress(rows.numel())

    def _record(self, block: _Block, hits: dict[str, np.ndarray],
                qc: dict[str, np.ndarray]) -> None:
        """Keep retired regions' hits and QC (``region``: row in ``block``) with their block,
        warn about timeouts and failures, and hand the block over once it is complete."""
        hits["region"] = hits["region"] + block.offset
        qc["region"] = qc["region"] + block.offset
        block.hits.append(hits)
        block.qc.append(qc)
        self._warn(qc)
        block.retired += len(qc["region"])
        if block.retired == block.n:
            del self.blocks[block.index]
            block.finish()

    def _warn(self, qc: dict[str, np.ndarray]) -> None:
        for code, text in ((TIMEOUT, "has not converged within max_steps={} iterations"),
                           (FAILED, "failed: its step size fell below step_size_min={}")):
            for r in qc["region"][qc["status"] == code]:
                limit = self.p.max_steps if code == TIMEOUT else self.p.step_size_min
                warnings.warn(f"Region {int(r)} {text.format(limit)}.", RuntimeWarning,
                              stacklevel=_stacklevel_outside_package())


def _stopping(s: _Slots, gap: torch.Tensor, p: SolverParams
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """finemo's stopping rule for each slot after a step: (converged, timeout, failed), i.e.
    the gap at most ``convergence_tol``, the step counter past ``max_steps``, the step size
    below ``step_size_min`` (ALGORITHM.md, "Stopping"; ``solver/compiled.py`` states the same
    rule for one region)."""
    return (gap <= p.convergence_tol, s.i.view(-1) > p.max_steps,
            s.step.view(-1) < p.step_size_min)


def _status(converged: torch.Tensor, timeout: torch.Tensor) -> torch.Tensor:
    """QC status of retiring regions: TIMEOUT once the step counter passes max_steps, even when
    the gap converged on that very step (finemo retires such a region with its "has not
    converged within max_steps" warning), else CONVERGED, else FAILED."""
    return torch.where(timeout, TIMEOUT, torch.where(converged, CONVERGED, FAILED))


def _numpy(columns: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy(force=True) for k, v in columns.items()}


def _frame(parts: list[dict[str, np.ndarray]], dtypes: dict) -> pl.DataFrame:
    """Concatenate recorded columns, ordered by region (and motif, position for hits)."""
    if not parts:
        return pl.DataFrame(schema=dtypes)
    cols = {k: np.concatenate([p[k] for p in parts]) for k in dtypes}
    df = pl.DataFrame({k: pl.Series(k, v).cast(dtypes[k]) for k, v in cols.items()})
    order = [c for c in ("region", "motif_id", "hit_start") if c in df.columns]
    return df.sort(order)


def _stacklevel_outside_package() -> int:
    """The ``stacklevel`` that points a warning issued by its caller at the first frame outside
    nemo_dask (the user's call), however deep inside the solver it was raised."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # nemo_dask/
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level
