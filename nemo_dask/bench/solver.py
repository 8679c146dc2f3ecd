"""Solver throughput against finemo 0.41 on the same inputs, in one process.

Used by ``nemo-dask bench``. It prints figures and asserts nothing: timings belong in notes,
not in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from ..errors import InputError
from ..motifs import Motifs, load_motifs
from ..params import MotifParams, SolverParams


@dataclass(frozen=True)
class BenchRow:
    """One timed run."""

    tool: str
    batch_size: int
    seconds: float
    regions: int
    hits: int
    jaccard: float | None = None  # of the hit set against finemo's (region, motif, start)

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


def resize_motifs(motifs: Motifs, n_motifs: int) -> Motifs:
    """A motif set of ``n_motifs`` motifs (both strands counted) made from ``motifs``, to time
    the solver at other M: the first ``n_motifs`` when there are enough, else the set plus
    blends of two of its patterns (w x one + (1 - w) x another forward CWM, w = 0.6, 0.75,
    0.9, renormalised, trimmed to the union of both windows) and their reverse complements. Blends are distinct
    motifs that look like real ones; both tools receive the same arrays.

    Raises
    ------
    InputError
        ``n_motifs`` is odd or below 2, or needs more blends than the patterns give.
    """
    if n_motifs < 2 or n_motifs % 2:
        raise InputError(f"--motifs {n_motifs}: give an even number >= 2 (forward and reverse)")
    cwms = motifs.cwms.astype(np.float32)
    masks = motifs.trim_masks.astype(np.int8)
    fwd, fmask = cwms[0::2], masks[0::2]
    k = fwd.shape[0]
    pairs = [(a, b) for a in range(k) for b in range(k) if a != b]
    n_blends = max(0, (n_motifs - cwms.shape[0]) // 2)
    if n_blends and (not pairs or n_blends > 3 * len(pairs)):
        raise InputError(f"--motifs {n_motifs}: too many for blends of {k} pattern(s)")
    new_c, new_m = [cwms[:n_motifs]], [masks[:n_motifs]]
    for j in range(n_blends):
        a, b = pairs[j % len(pairs)]
        w = 0.6 + 0.15 * (j // len(pairs))  # 0.6, 0.75, 0.9: each round a new blend
        cwm = w * fwd[a] + (1 - w) * fwd[b]
        mask = fmask[a] | fmask[b]
        cwm = cwm * mask / np.sqrt(((cwm * mask) ** 2).sum())
        new_c.append(np.stack([cwm, cwm[::-1, ::-1]]))
        new_m.append(np.stack([mask, mask[::-1]]))
    cwms_out = np.concatenate(new_c).astype(np.float16)
    masks_out = np.concatenate(new_m)
    lambdas = np.full(n_motifs, float(motifs.lambdas[0]))
    table = pl.DataFrame({"motif_id": np.arange(n_motifs),
                          "motif_name": [f"bench_{i // 2}" for i in range(n_motifs)],
                          "strand": ["+-"[i % 2] for i in range(n_motifs)],
                          "lambda": lambdas})
    return Motifs(cwms_out, masks_out, lambdas, table)


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, refused in one line when it is a GPU torch cannot see."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: torch sees no CUDA GPU on this machine "
                         "(torch.cuda.is_available() is False); run it on a GPU node")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: use cpu, cuda or cuda:N")
    return dev


def _hit_keys(df: pl.DataFrame, region: str) -> set[tuple[int, int, int]]:
    return set(df.select(region, "motif_id", "hit_start").iter_rows())


def run_bench(regions: str, modisco_h5: str, *, mode: str = "pp", repeat: int = 1,
              batch_sizes: Sequence[int] | None = None, finemo_batch_sizes: Sequence[int] = (16, 64, 256),
              device: str = "cpu", threads: int | None = None, exact: bool = False,
              n_motifs: int | None = None, lam: float = 0.7) -> list[BenchRow]:
    """Time nemo_dask's solver and finemo's ``fit_contribs`` on the same arrays (one cell of
    :mod:`.matrix`), a row per tool and batch size.

    ``batch_sizes`` None means the solver's default for the device and torch threads (on a
    GPU, from its free memory). ``exact``: nemo_dask's exact step (``--exact``).
    ``n_motifs``: a motif set of that size (:func:`resize_motifs`). Each nemo_dask row gives
    the Jaccard index of its hit set against finemo's.
    """
    from .matrix import Cell, run_cell

    dev = check_device(device)
    try:
        import finemo.hitcaller  # noqa: F401
    except ImportError:
        raise InputError("the benchmark compares with finemo: pip install finemo==0.41") from None
    if threads:
        torch.set_num_threads(threads)
    seqs, contribs = load_arrays(regions, repeat)
    res = run_cell(Cell(mode, n_motifs, lam), modisco_h5, seqs, contribs,
                   finemo_batches=finemo_batch_sizes,
                   batch_sizes=list(batch_sizes) if batch_sizes else [None], device=device,
                   exact=exact)
    n = res.regions
    rows = [BenchRow("finemo", b, n / rate, n, res.finemo_hits) for b, rate in res.finemo.items()]
    hits = round(res.hits * n)
    mp = MotifParams(mode=mode)
    motifs = load_motifs(modisco_h5, mp)
    if n_motifs is not None:
        motifs = resize_motifs(motifs, n_motifs)
    for b, rate in res.ours.items():
        used = b or default_batch(SolverParams(use_hypothetical=mp.use_hypothetical, exact=exact),
                                  dev, motifs, seqs.shape[-1])
        rows.append(BenchRow("nemo_dask", used, n / rate, n, hits, res.jaccard))
    return rows


def default_batch(params: SolverParams, dev: torch.device, motifs: Motifs, length: int) -> int:
    """The batch nemo_dask's solver takes by default for these motifs and regions of width
    ``length`` on ``dev`` (the calling thread's torch threads; the machine's memory)."""
    from ..solver.cpu import default_chunk
    from ..solver.stream import cuda_batch_size, uses_compiled_cpu

    n_pos = length - motifs.width + 1
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return cuda_batch_size(free, motifs.n_motifs, n_pos, length)
    if uses_compiled_cpu(params, dev):
        return default_chunk(motifs.n_motifs, n_pos, length, torch.get_num_threads())
    return params.batch_size_for(dev.type, torch.get_num_threads())


def format_rows(rows: list[BenchRow]) -> str:
    """A table of the runs and the ratio of the best of each tool."""
    lines = [f"{'tool':<10} {'batch':>6} {'regions':>8} {'seconds':>8} {'regions/s':>10} "
             f"{'hits':>7} {'jaccard':>8}"]
    for r in rows:
        jac = "" if r.jaccard is None else f"{r.jaccard:.4f}"
        lines.append(f"{r.tool:<10} {r.batch_size:>6} {r.regions:>8} {r.seconds:>8.2f} "
                     f"{r.rate:>10.1f} {r.hits:>7} {jac:>8}")
    best = {tool: max((r for r in rows if r.tool == tool), key=lambda r: r.rate)
            for tool in {r.tool for r in rows}}
    if len(best) == 2:
        ratio = best["nemo_dask"].rate / best["finemo"].rate
        lines.append(f"best nemo_dask (batch {best['nemo_dask'].batch_size}) / best finemo "
                     f"(batch {best['finemo'].batch_size}): {ratio:.2f}x")
    return "\n".join(lines)
