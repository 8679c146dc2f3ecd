"""Per-block overhead of call-hits with many cheap blocks (scheduling, manifest, writes).

Builds a synthetic store of N short regions (the fixture's centre 100 bp, tiled) with the
package's own writer, and runs call-hits with one region per block and one motif pattern, on the
embedded local cluster. Prints, per N: wall time, the time inside the solver, per-block times
(read, annotate + write) in ms, the share of the wall time that is not solving, and the
driver's CPU time and peak RSS (the driver also hosts the scheduler). Task times overlap
(a task reads its block while the previous one is solved), so they do not add up to the wall.
Run one size per process for a clean peak RSS.

    python benchmarks/per_block_overhead.py 1000 10000
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_store(n: int, workdir: Path) -> str:
    from nemo_dask.regions.convert import convert_npz

    src = Path(__file__).resolve().parents[1] / "tests" / "data" / "regions.npz"
    with np.load(src) as d:
        seqs, contribs = d["sequences"][:, :, 450:550], d["contributions"][:, :, 450:550]
    reps = -(-n // len(seqs))
    npz = workdir / f"regions{n}.npz"
    np.savez(npz, sequences=np.concatenate([seqs] * reps)[:n],
             contributions=np.concatenate([contribs] * reps)[:n])
    store = workdir / f"regions{n}.zarr"
    convert_npz(npz, store, chunk_size=1000, progress=False)
    return str(store)


def measure(n: int, workdir: Path) -> dict[str, float]:
    from nemo_dask import call_hits
    from nemo_dask.calling import execute, plan

    store = synthetic_store(n, workdir)
    modisco = Path(__file__).resolve().parents[1] / "tests" / "data" / "modisco.h5"
    manifest_s: list[float] = []
    original = execute.write_manifest

    def timed(*args, **kwargs):
        t = time.perf_counter()
        original(*args, **kwargs)
        manifest_s.append(time.perf_counter() - t)

    plan.write_manifest = execute.write_manifest = timed
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = call_hits(store, modisco, workdir / f"out{n}", block_size=1, progress=False,
                       motifs_include=["pos_patterns.pattern_1"])
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    plan.write_manifest = execute.write_manifest = original
    s = result.summaries
    workers = len({x["worker"] for x in s})
    solve = sum(x["solve_s"] for x in s)
    read = sum(x["read_s"] for x in s)
    task = sum(x["total_s"] for x in s)
    return {"blocks": result.n_blocks, "workers": workers, "wall_s": wall,
            "solve_s": solve, "ms_per_block_wall": 1e3 * wall * workers / n,
            "ms_read": 1e3 * read / n, "ms_write_annotate": 1e3 * (task - read - solve) / n,
            "ms_solve": 1e3 * solve / n,
            "overhead_share": 1 - solve / (wall * workers),
            "manifest_ms_total": 1e3 * sum(manifest_s), "manifest_writes": len(manifest_s),
            "driver_cpu_ms_per_block": 1e3 * cpu / n,
            "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            row = measure(n, Path(tmp))
            print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
