"""Worker memory of call-hits with an atlas-wide motif compendium (issue 24, item 3).

Writes a tfmodisco-lite H5 of ``--patterns`` patterns (default 150, so M = 300 motifs with
their reverse complements): the input H5's own patterns, then blends of two of them
(w x one + (1 - w) x another shifted by -6..6 positions, w = 0.55..0.9, for the CWM and the
hypothetical CWM each). Then runs ``call_hits`` with its defaults on the embedded cluster
(2 workers unless ``--workers``), each worker with ``--memory-limit``, and prints the
workers' memory limit, their peak RSS, the run's regions/s and the CPU batch the solver
took (:func:`nemo_dask.solver.cpu.default_chunk`). For comparison, the (B, M, P) tensors of
finemo's default batch of 2000 at this M::

    python benchmarks/make_heldout_like.py /tmp/ho
    python benchmarks/compendium_memory.py /tmp/ho/r3000.npz tests/data/modisco.h5 -n 600
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def write_compendium(src: Path, target: Path, n_patterns: int, seed: int = 3) -> int:
    """Copy ``src`` to ``target`` and add blended patterns until it has ``n_patterns``."""
    rng = np.random.default_rng(seed)
    shutil.copy(src, target)
    with h5py.File(target, "a") as f:
        pos = f["pos_patterns"]
        names = sorted(pos.keys(), key=lambda s: int(s.split("_")[-1]))
        base = [pos[n] for n in names]
        k = len(names) + sum(len(f[g]) for g in ("neg_patterns",) if g in f)
        j = 0
        while k < n_patterns:
            a, b = rng.choice(len(base), size=2, replace=False)
            w = float(rng.uniform(0.55, 0.9))
            name = f"pattern_{len(names) + j}"
            f.copy(base[a], pos, name=name)
            for key in ("contrib_scores", "hypothetical_contribs"):
                shift = int(rng.integers(-6, 7))
                mix = w * base[a][key][()] + (1 - w) * np.roll(base[b][key][()], shift, axis=0)
                del pos[name][key]
                pos[name][key] = mix
            j += 1
            k += 1
    return k


def _worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("regions", help="finemo regions.npz (or a regions store)")
    parser.add_argument("modisco_h5", help="tfmodisco-lite H5 whose patterns seed the set")
    parser.add_argument("--patterns", type=int, default=150)
    parser.add_argument("-n", "--max-regions", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GB", help="per worker (dask's format)")
    args = parser.parse_args()

    import nemo_dask
    from nemo_dask.clusters.connect import ClusterOptions, connect
    from nemo_dask.motifs import load_motifs
    from nemo_dask.solver.cpu import default_chunk

    with tempfile.TemporaryDirectory(prefix="nemo-dask-compendium-") as tmp:
        tmp = Path(tmp)
        h5 = tmp / "compendium.h5"
        k = write_compendium(Path(args.modisco_h5), h5, args.patterns)
        motifs = load_motifs(h5)
        with np.load(args.regions) as src:
            arrays = {key: src[key][:args.max_regions] for key in src.files}
        npz = tmp / "regions.npz"
        np.savez(npz, **arrays)
        length = arrays["sequences"].shape[-1]
        n_pos = length - motifs.width + 1
        options = ClusterOptions(n_workers=args.workers, threads_per_worker=1,
                                 memory_limit=args.memory_limit, dashboard_address=None)
        with connect(options, announce=False) as client:
            info = client.scheduler_info()["workers"]
            limits = sorted(w["memory_limit"] for w in info.values())
            t = time.perf_counter()
            res = nemo_dask.call_hits(npz, h5, tmp / "out", client=client, progress=False)
            seconds = time.perf_counter() - t
            peaks = sorted(client.run(_worker_peak_mb).values())
        n = arrays["sequences"].shape[0]
        print(f"{k} patterns, M = {motifs.n_motifs}, W = {motifs.width}, {n} regions of "
              f"{length}; {args.workers} workers, 1 thread each")
        print(f"worker memory limit {limits[0] / 2**20:.0f} MiB; worker peak RSS "
              f"{', '.join(f'{p:.0f}' for p in peaks)} MiB")
        print(f"CPU batch {default_chunk(motifs.n_motifs, n_pos, length, 1, limits[0])} "
              f"regions; {res.n_hits} hits; {n / seconds:.1f} regions/s ({seconds:.1f} s)")
        finemo = 2000 * motifs.n_motifs * n_pos * 4
        print(f"finemo's default batch of 2000 holds {finemo / 2**30:.1f} GiB per (B, M, P) "
              f"float32 tensor (its step keeps about ten)")


if __name__ == "__main__":
    main()
