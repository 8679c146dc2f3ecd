"""The speed matrix of ``nemo-dask bench --matrix``: nemo_dask's solver against finemo 0.41's
``fit_contribs`` in one process, cell by cell over lambda, motif-set size, mode and region
width, each tool at its best batch, with the parity of every cell's hits.

It prints figures and asserts nothing (timings belong in notes, not in tests); it does report
whether each cell keeps finemo's steps and hits, since a fast wrong answer is no figure.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from ..compare import StepAgreement, step_agreement
from ..errors import InputError
from ..motifs import Motifs, load_motifs
from ..params import MotifParams, SolverParams
from ..solver.precision import ieee_float32
from ..solver.stream import fit_block
from .solver import check_device, resize_motifs

#: The grid of issue 24: every lambda x motif-set size x mode at the regions' own width, and
#: the default lambda at other widths.
MATRIX_LAMBDAS = (0.3, 0.5, 0.7, 1.0)
MATRIX_MOTIFS = (20, 60, 150)
MATRIX_MODES = ("pp", "hh")
MATRIX_WIDTHS = (500, 2000)
DEFAULT_LAMBDA = 0.7
#: finemo's batch sizes tried per device (its best is kept): small batches win on a CPU.
FINEMO_BATCHES = {"cpu": (16, 32), "cuda": (2000, 8000)}


@dataclass(frozen=True)
class Cell:
    """One point of the matrix; ``width`` None: the regions' own width."""

    mode: str
    n_motifs: int | None
    lam: float
    width: int | None = None


@dataclass
class CellResult:
    """Both tools on one cell: rates (regions/s) by batch size, medians over rounds."""

    cell: Cell
    regions: int
    width: int
    finemo: dict[int, float] = field(default_factory=dict)
    ours: dict[int, float] = field(default_factory=dict)
    steps: float = 0.0  #: mean finemo-style step count per region (nemo_dask's run)
    nonzeros: float = 0.0  #: mean non-zeros of the final iterate per region (before the filter)
    hits: float = 0.0  #: mean hits per region (nemo_dask)
    finemo_hits: int = 0  #: finemo's hit count
    jaccard: float = 0.0  #: of the (region, motif, start) hit sets, against finemo's
    steps_differ: int = 0  #: regions taking another step count than finemo
    knife_edge: int = 0  #: of which, knife-edge (compare-hits' rule, its measured band)
    #: finemo against itself, its first two batch sizes (a change of rounding only): regions
    #: whose steps differ, and the Jaccard of the hit sets (None with one batch size)
    finemo_steps_differ: int | None = None
    finemo_jaccard: float | None = None

    @property
    def best_finemo(self) -> tuple[int, float]:
        return max(self.finemo.items(), key=lambda kv: kv[1])

    @property
    def best_ours(self) -> tuple[int, float]:
        return max(self.ours.items(), key=lambda kv: kv[1])

    @property
    def ratio(self) -> float:
        return self.best_ours[1] / self.best_finemo[1]


def matrix_cells(lambdas: Sequence[float] = MATRIX_LAMBDAS,
                 motif_counts: Sequence[int] = MATRIX_MOTIFS,
                 modes: Sequence[str] = MATRIX_MODES,
                 widths: Sequence[int] = MATRIX_WIDTHS,
                 default_lambda: float = DEFAULT_LAMBDA) -> list[Cell]:
    """Every lambda x M x mode at the regions' width, then every width x M x mode at
    ``default_lambda``."""
    cells = [Cell(mode, m, lam) for mode in modes for m in motif_counts for lam in lambdas]
    cells += [Cell(mode, m, default_lambda, w) for mode in modes for m in motif_counts
              for w in widths]
    return cells


def resize_regions(sequences: np.ndarray, contributions: np.ndarray,
                   width: int) -> tuple[np.ndarray, np.ndarray]:
    """Regions of another width from the same data: narrower ones are the centre ``width``
    of each region; wider ones join ``k`` consecutive regions end to end (N // k regions)
    and keep the centre ``width`` of each join.

    Raises
    ------
    InputError
        ``width`` is odd or below 2, or more than the joined regions hold.
    """
    if width < 2 or width % 2:
        raise InputError(f"--width {width}: give an even width >= 2 (finemo's regions are even)")
    n, length = sequences.shape[0], sequences.shape[-1]
    if width > length:
        k = -(-width // length)
        if n < k:
            raise InputError(f"--width {width}: joining {k} regions of {length} needs at "
                             f"least {k} regions, there are {n}")
        n_out = n // k
        sequences = _join(sequences[: n_out * k], k)
        contributions = _join(contributions[: n_out * k], k)
        length = k * length
    start = (length - width) // 2
    return (np.ascontiguousarray(sequences[..., start:start + width]),
            np.ascontiguousarray(contributions[..., start:start + width]))


def _join(a: np.ndarray, k: int) -> np.ndarray:
    """(N, ..., L) -> (N // k, ..., k L): k consecutive regions end to end."""
    n = a.shape[0] // k
    parts = a.reshape(n, k, *a.shape[1:])
    return np.concatenate([parts[:, j] for j in range(k)], axis=-1)


def cell_motifs(base: Motifs, n_motifs: int | None, lam: float) -> Motifs:
    """The cell's motif set: ``n_motifs`` (the H5's, then blends) with lambda ``lam``."""
    motifs = resize_motifs(base, n_motifs) if n_motifs is not None else base
    lambdas = np.full(motifs.n_motifs, float(lam))
    table = motifs.table.with_columns(pl.lit(float(lam)).alias("lambda"))
    return Motifs(motifs.cwms, motifs.trim_masks, lambdas, table)


def run_cell(cell: Cell, h5: str, sequences: np.ndarray, contributions: np.ndarray, *,
             finemo_batches: Sequence[int], batch_sizes: Sequence[int | None] = (None,),
             device: str = "cpu", rounds: int = 1, exact: bool = False,
             finemo_tf32: bool = False,
             log: Callable[[str], None] | None = None) -> CellResult:
    """Time both tools on one cell, ``rounds`` times interleaved (finemo's batches, then
    nemo_dask's, per round), and compare their hits and step counts.

    On CUDA finemo runs in IEEE float32 as nemo_dask does (:mod:`nemo_dask.solver.precision`),
    so that the hit and step columns compare solvers, not TF32 rounding; ``finemo_tf32`` times
    it with torch's default TF32 convolutions instead (its out-of-the-box GPU setting)."""
    from finemo.hitcaller import fit_contribs

    dev = check_device(device)
    mp = MotifParams(mode=cell.mode, lambda_default=cell.lam)
    motifs = cell_motifs(load_motifs(h5, mp), cell.n_motifs, cell.lam)
    if cell.width is not None:
        sequences, contributions = resize_regions(sequences, contributions, cell.width)
    n, width = sequences.shape[0], sequences.shape[-1]
    res = CellResult(cell, n, width)
    finemo_times: dict[int, list[float]] = {b: [] for b in finemo_batches}
    our_times: dict[int | None, list[float]] = {b: [] for b in batch_sizes}
    refs: dict[int, tuple[pl.DataFrame, pl.DataFrame]] = {}
    ours = None
    for _ in range(rounds):
        for bs in finemo_batches:
            t = time.perf_counter()
            with warnings.catch_warnings(), \
                    (nullcontext() if finemo_tf32 else ieee_float32(dev)):
                warnings.simplefilter("ignore")
                hits, qc = fit_contribs(motifs.cwms, contributions, sequences,
                                        motifs.trim_masks, mp.use_hypothetical, motifs.lambdas,
                                        3.0, 0.08, False, 0.0005, 10000, bs, 0.7, True, dev,
                                        False)
            _sync(dev)
            finemo_times[bs].append(time.perf_counter() - t)
            refs.setdefault(bs, (hits, qc))
        for bs in batch_sizes:
            params = SolverParams(batch_size=bs, use_hypothetical=mp.use_hypothetical,
                                  exact=exact)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = fit_block(sequences, contributions, motifs, params=params, device=dev)
            _sync(dev)
            our_times[bs].append(time.perf_counter() - t)
            ours = ours or out
        if log is not None:
            log(".")
    res.finemo = {b: n / float(np.median(v)) for b, v in finemo_times.items()}
    res.ours = {(b if b is not None else 0): n / float(np.median(v))
                for b, v in our_times.items()}
    _compare(res, ours, refs)
    with warnings.catch_warnings():  # untimed: the final iterates' non-zeros
        warnings.simplefilter("ignore")
        raw = fit_block(sequences, contributions, motifs, device=dev,
                        params=SolverParams(use_hypothetical=mp.use_hypothetical, exact=exact,
                                            post_filter=False))
    res.nonzeros = raw.hits.height / n
    return res


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _compare(res: CellResult, ours, refs: dict[int, tuple[pl.DataFrame, pl.DataFrame]]) -> None:
    """nemo_dask's hits and steps against finemo's at its first batch size, and finemo's first
    two batch sizes against each other (the spread a change of rounding alone gives), each
    judged by compare-hits' step rule (:func:`nemo_dask.compare.step_agreement`)."""
    runs = list(refs.values())
    hits, qc = runs[0]
    theirs = _keys(hits, "peak_id")
    mine = _keys(ours.hits, "region")
    res.jaccard = _jaccard(mine, theirs)
    res.hits = ours.hits.height / res.regions
    res.finemo_hits = hits.height
    res.steps = float(ours.qc["num_steps"].mean())
    agree = _steps(ours.qc, qc.sort("peak_id"))
    res.steps_differ = int(agree.differ.size)
    res.knife_edge = int(agree.knife_edge.sum())
    if len(runs) > 1:
        hits2, qc2 = runs[1]
        res.finemo_jaccard = _jaccard(_keys(hits2, "peak_id"), theirs)
        res.finemo_steps_differ = int(_steps(qc2.sort("peak_id"), qc.sort("peak_id")).differ.size)


def _keys(hits: pl.DataFrame, region: str) -> set[tuple[int, int, int]]:
    return set(hits.select(region, "motif_id", "hit_start").iter_rows())


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _steps(qc_a: pl.DataFrame, qc_b: pl.DataFrame) -> StepAgreement:
    tol = SolverParams.convergence_tol
    return step_agreement(qc_a["num_steps"].to_numpy(), qc_a["dual_gap"].to_numpy(),
                          qc_b["num_steps"].to_numpy(), qc_b["dual_gap"].to_numpy(), tol, tol)


def format_cells(results: Sequence[CellResult]) -> str:
    """One row per cell: the best rate of each tool (and its batch), their ratio, nemo_dask's
    steps, non-zeros and hits per region, the hit sets' Jaccard index and step agreement."""
    lines = [f"{'mode':<4} {'M':>4} {'L':>5} {'lambda':>6} {'regions':>7} "
             f"{'finemo r/s':>10} {'(b)':>5} {'nemo r/s':>9} {'(b)':>5} {'ratio':>6} "
             f"{'steps':>7} {'nnz':>6} {'hits':>5} {'jaccard':>8} {'steps!=':>8} "
             f"{'finemo/finemo':>13}"]
    for r in results:
        fb, fr = r.best_finemo
        ob, orate = r.best_ours
        m = r.cell.n_motifs if r.cell.n_motifs is not None else "h5"
        lines.append(
            f"{r.cell.mode:<4} {m:>4} {r.width:>5} {r.cell.lam:>6g} {r.regions:>7} "
            f"{fr:>10.1f} {fb:>5} {orate:>9.1f} {ob or 'def':>5} {r.ratio:>5.2f}x "
            f"{r.steps:>7.1f} {r.nonzeros:>6.1f} {r.hits:>5.2f} {r.jaccard:>8.4f} "
            f"{r.steps_differ:>4} ({r.knife_edge}) "
            + (f"{r.finemo_steps_differ:>4} {r.finemo_jaccard:>8.4f}"
               if r.finemo_steps_differ is not None else f"{'-':>13}"))
    return "\n".join(lines)
