"""Tile and call a synthetic chromosome: conversion and calling speed and peak memory.

Writes a chromosome of ``--mb`` megabases (random sequence, Gaussian contributions, a planted
CTCF-like CWM of the test fixture's modisco.h5 every 5 kb) as FASTA + bigWig, converts it with
``convert_intervals(whole_genome=True)`` in a fresh process (its peak RSS = VmHWM), and with
``--call`` calls hits on an embedded local cluster (workers' peak RSS read on each worker) and
checks the planted instances::

    python benchmarks/tiled_genome.py --mb 50            # conversion of 50 Mb
    python benchmarks/tiled_genome.py --mb 2 --call      # conversion and calling
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests" / "intervals"))

_CONVERT = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from nemo_dask.regions.convert import convert_intervals
r = convert_intervals(sys.argv[1], sys.argv[2], sys.argv[3], whole_genome=True,
                      progress=sys.argv[4] == "1")
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"windows": r.n_regions, "seconds": time.perf_counter() - t0,
                  "maxrss_mb": peak / 1024}))
"""


def _vmhwm() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=50.0)
    p.add_argument("--call", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    opts = p.parse_args()
    from intervals_synth import pattern_cwm, write_long_genome

    modisco = ROOT / "tests" / "data" / "modisco.h5"
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        where = Path(tmp)
        length = int(opts.mb * 1_000_000)
        t0 = time.perf_counter()
        fasta, bw = write_long_genome(where, length, pattern_cwm(modisco))
        print(f"genome: {length:,} bp written in {time.perf_counter() - t0:.1f} s", flush=True)
        store = where / "tiled.zarr"
        proc = subprocess.run([sys.executable, "-c", _CONVERT, str(fasta), str(bw), str(store),
                               "1" if sys.stderr.isatty() else "0"],
                              stdout=subprocess.PIPE, text=True, check=True)
        conv = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"convert: {conv['windows']} windows in {conv['seconds']:.1f} s = "
              f"{conv['windows'] / conv['seconds']:.0f} windows/s, peak RSS "
              f"{conv['maxrss_mb']:.0f} MB", flush=True)
        if not opts.call:
            return
        import polars as pl

        from nemo_dask.calling.api import call_hits
        from nemo_dask.clusters.connect import ClusterOptions, connect

        with connect(ClusterOptions(n_workers=opts.workers, dashboard_address=None),
                     announce=False) as client:
            t0 = time.perf_counter()
            res = call_hits(str(store), modisco, where / "out", client=client,
                            device=opts.device, progress=sys.stderr.isatty())
            seconds = time.perf_counter() - t0
            workers = client.run(_vmhwm)
        hits = res.hits.collect()
        planted = set(range(2500, length - 50, 5000))
        found = set(hits.filter((pl.col("motif_name") == "pos_patterns.pattern_0")
                                & (pl.col("strand") == "+"))["start_untrimmed"].to_list())
        dup = hits.select("chr", "start", "motif_name", "strand").is_duplicated().sum()
        print(f"call-hits: {conv['windows']} windows in {seconds:.1f} s = "
              f"{conv['windows'] / seconds:.1f} windows/s ({opts.workers} workers, device "
              f"{opts.device}); worker peak RSS {max(workers.values()):.0f} MB, driver "
              f"{_vmhwm():.0f} MB; {hits.height} hits, planted found "
              f"{len(planted & found)}/{len(planted)}, duplicates {dup}", flush=True)


if __name__ == "__main__":
    main()
