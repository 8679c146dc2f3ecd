"""Solver throughput against finemo 0.41 on the same inputs, in one process.

Used by ``nemo-dask bench``. It prints figures and asserts nothing: timings belong in notes,
not in tests.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..motifs import load_motifs
from ..params import MotifParams, SolverParams
from ..solver.stream import fit_block


@dataclass(frozen=True)
class BenchRow:
    """One timed run."""

    tool: str
    batch_size: int
    seconds: float
    regions: int
    hits: int

    @property
    def rate(self) -> float:
        """Regions per second."""
        return self.regions / self.seconds


def load_arrays(regions: str, repeat: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sequences and contributions of a regions.npz or store, tiled ``repeat`` times."""
    from ..regions.source import open_regions

    source = open_regions(regions)
    block = source.read_block(0, source.n_regions)
    seqs, contribs = block.sequences, block.contributions
    if repeat > 1:
        seqs = np.concatenate([seqs] * repeat)
        contribs = np.concatenate([contribs] * repeat)
    return seqs, contribs


def run_bench(regions: str, modisco_h5: str, *, mode: str = "pp", repeat: int = 1,
              batch_sizes: Sequence[int] | None = None, finemo_batch_sizes: Sequence[int] = (16, 64, 256),
              device: str = "cpu", threads: int | None = None) -> list[BenchRow]:
    """Time nemo_dask's solver and finemo's ``fit_contribs`` on the same arrays.

    ``batch_sizes`` None means the solver's default for the device and torch threads.
    """
    try:
        from finemo.hitcaller import fit_contribs
    except ImportError:
        raise InputError("the benchmark compares with finemo: pip install finemo==0.41") from None
    if threads:
        torch.set_num_threads(threads)
    mp = MotifParams(mode=mode)
    motifs = load_motifs(modisco_h5, mp)
    seqs, contribs = load_arrays(regions, repeat)
    n = seqs.shape[0]
    rows: list[BenchRow] = []
    dev = torch.device(device)
    if batch_sizes is None:
        batch_sizes = [SolverParams().batch_size_for(dev.type, torch.get_num_threads())]
    for bs in finemo_batch_sizes:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hits, _ = fit_contribs(motifs.cwms, contribs, seqs, motifs.trim_masks,
                                   mp.use_hypothetical, motifs.lambdas, 3.0, 0.08, False, 0.0005,
                                   10000, bs, 0.7, True, dev, False)
        rows.append(BenchRow("finemo", bs, time.perf_counter() - t, n, hits.height))
    for bs in batch_sizes:
        t = time.perf_counter()
        res = fit_block(seqs, contribs, motifs, params=SolverParams(batch_size=bs, mode=mode),
                        device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rows.append(BenchRow("nemo_dask", bs, time.perf_counter() - t, n, res.hits.height))
    return rows


def format_rows(rows: list[BenchRow]) -> str:
    """A table of the runs and the ratio of the best of each tool."""
    lines = [f"{'tool':<10} {'batch':>6} {'regions':>8} {'seconds':>8} {'regions/s':>10} {'hits':>7}"]
    for r in rows:
        lines.append(f"{r.tool:<10} {r.batch_size:>6} {r.regions:>8} {r.seconds:>8.2f} "
                     f"{r.rate:>10.1f} {r.hits:>7}")
    best = {tool: max((r for r in rows if r.tool == tool), key=lambda r: r.rate)
            for tool in {r.tool for r in rows}}
    if len(best) == 2:
        ratio = best["nemo_dask"].rate / best["finemo"].rate
        lines.append(f"best nemo_dask (batch {best['nemo_dask'].batch_size}) / best finemo "
                     f"(batch {best['finemo'].batch_size}): {ratio:.2f}x")
    return "\n".join(lines)
