"""How call-hits scales with workers: embedded clusters of several sizes against the solver run
in one process on the same regions.

Used by ``nemo-dask bench --workers 1,2``. It prints figures and asserts nothing; it does check
that every cluster size wrote the same hits, since a fast wrong answer is no figure.
"""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..motifs import load_motifs
from ..params import MotifParams, SolverParams
from .solver import load_arrays


@dataclass(frozen=True)
class WorkersRow:
    """One timed run: ``workers`` 0 is the in-process solver."""

    workers: int
    seconds: float
    regions: int
    hits: int
    blocks: int = 0
    worker_rss_mb: tuple[float, ...] = ()


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tiled_store(regions: str, repeat: int, workdir: Path) -> str:
    """A regions store holding ``regions`` tiled ``repeat`` times (the input itself when it is
    already a store and ``repeat`` is 1)."""
    if repeat == 1 and not regions.endswith(".npz"):
        return regions
    from ..regions.convert import convert_npz

    seqs, contribs = load_arrays(regions, repeat)
    npz = workdir / "regions.npz"
    np.savez(npz, sequences=seqs, contributions=contribs)
    store = workdir / "regions.zarr"
    convert_npz(npz, store, progress=False)
    npz.unlink()
    return str(store)


def _in_process(store: str, modisco_h5: str, mode: str, device: str, threads: int) -> WorkersRow:
    import torch

    from ..regions.store import open_store
    from ..solver.stream import fit_block

    torch.set_num_threads(threads)
    mp = MotifParams(mode=mode)
    motifs = load_motifs(modisco_h5, mp)
    regions = open_store(store)
    block = regions.read_block(0, regions.n_regions)
    dev = torch.device(device)
    t = time.perf_counter()
    res = fit_block(block.sequences, block.contributions, motifs,
                    params=SolverParams(use_hypothetical=mp.use_hypothetical), device=dev,
                    threads=threads)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return WorkersRow(0, time.perf_counter() - t, regions.n_regions, res.hits.height)


def _sorted_hits(out: Path) -> pl.DataFrame:
    from ..dataset import scan_hits

    hits = scan_hits(out).collect()
    return hits.sort(hits.columns)


def run_workers_bench(regions: str, modisco_h5: str, workers: Sequence[int], *,
                      mode: str = "pp", repeat: int = 1, cluster: str = "local",
                      threads_per_worker: int = 1, block_size: int | None = None,
                      in_process: bool = True) -> list[WorkersRow]:
    """Time ``call_hits`` on a fresh, warmed embedded cluster for each worker count.

    Parameters
    ----------
    regions, modisco_h5
        The inputs, as for ``call-hits``; an npz is converted to a temporary store first.
    workers
        Cluster sizes to time, in order.
    repeat
        Tile the regions this many times.
    cluster
        ``local`` (CPU worker processes) or ``cuda`` (one worker per GPU).
    in_process
        Also time the solver on all regions in this process (device and threads as one worker).

    Returns the rows, the in-process one first; raises ``RuntimeError`` when two cluster sizes
    wrote different hits.
    """
    from ..calling.api import call_hits
    from ..clusters.connect import ClusterOptions, connect

    rows: list[WorkersRow] = []
    with tempfile.TemporaryDirectory(prefix="nemo-dask-bench-") as tmp:
        workdir = Path(tmp)
        store = _tiled_store(regions, repeat, workdir)
        if in_process:
            # In a fresh process: this one must not hold a CUDA context (and its cached GPU
            # memory) while the workers run, and the timing must not include torch's import.
            device = "cuda" if cluster == "cuda" else "cpu"
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                rows.append(pool.submit(_in_process, store, modisco_h5, mode, device,
                                        threads_per_worker).result())
        reference: pl.DataFrame | None = None
        for n in workers:
            out = workdir / f"out-{n}"
            opts = ClusterOptions(cluster=cluster, n_workers=n,
                                  threads_per_worker=threads_per_worker, dashboard_address=None)
            with connect(opts, announce=False) as client:
                client.run(lambda: None)  # every worker up before the clock starts
                t = time.perf_counter()
                with warnings.catch_warnings():
                    # the tiled benchmark store has no coordinates, and needs none
                    warnings.filterwarnings("ignore", message="No peak region data")
                    res = call_hits(store, modisco_h5, out, client=client, mode=mode,
                                    block_size=block_size, progress=False)
                seconds = time.perf_counter() - t
                rss = tuple(sorted(client.run(_peak_rss_mb).values()))
            hits = _sorted_hits(out)
            if reference is None:
                reference = hits
            elif not hits.equals(reference):
                raise RuntimeError(f"{n} workers wrote other hits than {workers[0]} workers")
            rows.append(WorkersRow(n, seconds, int(res.qc.select(pl.len()).collect().item()),
                                   res.n_hits, res.n_blocks, rss))
    return rows


def format_workers_rows(rows: list[WorkersRow]) -> str:
    """A table of the runs with speed-ups against the smallest cluster and the in-process run."""
    base = next((r for r in rows if r.workers > 0), None)
    solo = next((r for r in rows if r.workers == 0), None)
    lines = [f"{'run':<12} {'regions':>8} {'blocks':>6} {'seconds':>8} {'regions/s':>10} "
             f"{'hits':>7} {'speed-up':>9} {'/in-process':>11}  worker peak RSS MB"]
    for r in rows:
        name = "in-process" if r.workers == 0 else f"{r.workers} worker" + "s" * (r.workers > 1)
        speedup = f"{base.seconds / r.seconds:.2f}x" if base and r.workers else ""
        vs_solo = f"{r.seconds / solo.seconds:.2f}x" if solo and r.workers else ""
        rss = ", ".join(f"{m:.0f}" for m in r.worker_rss_mb)
        lines.append(f"{name:<12} {r.regions:>8} {r.blocks or '':>6} {r.seconds:>8.2f} "
                     f"{r.regions / r.seconds:>10.1f} {r.hits:>7} {speedup:>9} {vs_solo:>11}  "
                     f"{rss}")
    return "\n".join(lines)
