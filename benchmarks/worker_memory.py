"""Worker memory against the number of regions: is it flat in N? (issue 29, item 15)

Tiles a regions store to N regions (streamed chunk by chunk: region i of the new store is
region i mod n of the source, so memory stays bounded while it is written), then runs
``call_hits`` on the embedded local cluster (defaults: one worker per core) and samples every
worker's resident memory once a second from ``/proc`` (VmRSS, and the kernel's own peak,
VmHWM). Prints the driver's and each worker's peak, and each worker's RSS at 25/50/75/100 % of
the regions done, so that growth during the run shows::

    python benchmarks/worker_memory.py --source r3600.zarr -m modisco10.h5 -n 300000 -w /tmp/wm

(``python benchmarks/make_heldout_like.py DIR -n 3600`` and ``nemo-dask convert npz`` make the
source.) The tiled store is kept in ``-w`` and reused by later runs of the same N.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import threading
import time
from pathlib import Path

import numpy as np


def tile_store(source: str, n: int, out: Path) -> str:
    """A store of ``n`` regions, region i being region ``i % len(source)`` of ``source``."""
    from nemo_dask.regions.convert._pipeline import Source, run_conversion
    from nemo_dask.regions.store import open_store

    if out.exists():
        if open_store(str(out)).n_regions == n:
            return str(out)
        shutil.rmtree(out)
    src = open_store(source)
    m = src.n_regions

    def read(start: int, stop: int, _peaks: object) -> tuple[np.ndarray, list[np.ndarray]]:
        idx = np.arange(start, stop) % m
        # At most a few contiguous runs of the source per chunk.
        cuts = np.flatnonzero(np.diff(idx) != 1) + 1
        seqs, contribs = [], []
        for run in np.split(idx, cuts):
            block = src.read_block(int(run[0]), int(run[-1]) + 1)
            seqs.append(block.sequences)
            contribs.append(block.contributions)
        return np.concatenate(seqs), [np.concatenate(contribs)]

    spec = Source(n_regions=n, width=src.width, contrib_kind=src.contrib_kind, read=read,
                  seq_label=f"{source} (tiled)", contrib_labels=[f"{source} (tiled)"],
                  attrs={"source": {"tiled_from": source, "n": n}})
    run_conversion(spec, out, peaks=None, chunk_size=src.chunk_size,
                   contrib_dtype=src.contrib_dtype, overwrite=True, progress=False,
                   desc="tiling")
    return str(out)


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    import nemo_dask
    from nemo_dask.clusters.connect import ClusterOptions, connect

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="regions store to tile")
    p.add_argument("-m", "--modisco-h5", required=True)
    p.add_argument("-n", "--regions", type=int, required=True)
    p.add_argument("-w", "--workdir", type=Path, required=True)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--block-size", type=int, default=None)
    a = p.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = tile_store(a.source, a.regions, a.workdir / f"tiled{a.regions}.zarr")
    print(f"store: {store} ({a.regions} regions, {time.perf_counter() - t0:.0f} s)", flush=True)
    out = a.workdir / f"out{a.regions}"
    shutil.rmtree(out, ignore_errors=True)
    with connect(ClusterOptions(n_workers=a.workers), announce=False) as client:
        pids = client.run(os.getpid)
        samples: list[tuple[float, dict[str, int]]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                rss = {}
                for w, pid in pids.items():
                    try:
                        rss[w] = _status_kb(pid, "VmRSS")
                    except OSError:
                        pass
                samples.append((time.perf_counter(), rss))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t1 = time.perf_counter()
        result = nemo_dask.call_hits(store, a.modisco_h5, out, client=client,
                                     block_size=a.block_size, progress=False)
        elapsed = time.perf_counter() - t1
        peaks = {w: _status_kb(pid, "VmHWM") / 1024 for w, pid in pids.items()}
        stop.set()
        sampler.join()
    solved = sorted(s["solved_at"] for s in result.summaries)
    sizes = sorted({s["stop"] - s["start"] for s in result.summaries})
    print(f"{a.regions} regions, {len(result.summaries)} blocks of {sizes[0]}-{sizes[-1]}, "
          f"{result.n_hits} hits, {elapsed:.0f} s ({a.regions / elapsed:.0f} regions/s)")
    print(f"driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    for w in sorted(peaks):
        row = []
        for q in (0.25, 0.5, 0.75, 1.0):
            # RSS when this fraction of the blocks had been solved (wall clock on the worker).
            t_q = solved[min(len(solved) - 1, int(q * len(solved)) - 1)]
            t_q_local = t1 + (t_q - solved[0]) * (elapsed / max(solved[-1] - solved[0], 1e-9))
            near = min(samples, key=lambda s: abs(s[0] - t_q_local), default=(0, {}))
            row.append(f"{near[1].get(w, 0) / 1024:.0f}")
        print(f"worker {w}: peak RSS {peaks[w]:.0f} MB; RSS at 25/50/75/100 % of blocks "
              f"{'/'.join(row)} MB")
    total = [sum(s[1].values()) / 1024 for s in samples]
    if total:
        print(f"all workers: RSS max {max(total):.0f} MB, mean over the last quarter of the run "
              f"{np.mean(total[-max(1, len(total) // 4):]):.0f} MB")


if __name__ == "__main__":
    main()
