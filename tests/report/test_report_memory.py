"""Peak memory of the report is bounded: it does not grow with the number of hits.

The fixture's run (1721 hits on 350 regions) is tiled K times: hits and regions are repeated
with shifted peak_id and coordinates, and the regions are served by a virtual source that
repeats the fixture's arrays. Each report runs in a fresh subprocess that prints its own peak
RSS (``VmHWM``). Run this file as a script for the figures quoted in the notes::

    python tests/test_report_memory.py --tiles 1500 3000       # 2.6M and 5.2M hits
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

DATA = Path(__file__).parents[1] / "data"
_SHIFT = 400_000  # bp between copies: copies never overlap, so every hit stays distinct

_CHILD = """
import json, resource, sys, time
import numpy as np, polars as pl
from nemo_dask.regions.npz import NpzRegions
from nemo_dask.report import report_tables, write_tables
from nemo_dask.report import cwms, distinct
from nemo_dask.regions.store import RegionBlock

k, run, out, per_part = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
SHIFT = int(sys.argv[7])
if per_part:
    distinct.HITS_PER_PART = cwms.WINDOWS_PER_CHUNK = per_part


class Tiled:
    def __init__(self, npz, k):
        self.base = NpzRegions(npz)
        self.block = self.base.read_block(0, self.base.n_regions)
        n = self.base.n_regions
        p = self.base.peaks
        self.peaks = pl.concat([p.with_columns(peak_id=pl.col("peak_id") + i * n,
                                               peak_region_start=pl.col("peak_region_start")
                                               + i * SHIFT) for i in range(k)])
        self.n_regions, self.width = n * k, self.base.width

    def read_block(self, start, stop):
        rows = np.arange(start, stop) % self.base.n_regions
        return RegionBlock(self.block.sequences[rows], self.block.contributions[rows],
                           self.peaks[start:stop])


t0 = time.perf_counter()
tables = report_tables(Tiled(sys.argv[5], k), run, sys.argv[6])
write_tables(tables, out)
try:
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"hits": int(tables.motif_report["num_hits_total"].sum()),
                  "maxrss_mb": peak / 1024, "seconds": time.perf_counter() - t0}))
"""


def tiled_run(k: int, where: Path) -> Path:
    """The fixture's run tiled ``k`` times, as a nemo-dask dataset; returns its directory."""
    from conftest import write_recorded_blocks

    from nemo_dask import dataset
    from nemo_dask.finemo.importing import import_finemo

    one = where / "one"
    if not one.exists():
        import_finemo(DATA / "finemo_out", one, regions_per_partition=350)
    hits, qc = dataset.scan_hits(one).collect(), dataset.scan_qc(one).collect()
    n = qc.height
    out = where / f"tiled-{k}"
    shutil.rmtree(out, ignore_errors=True)

    def tile(df: pl.DataFrame, ks: np.ndarray, coords: list[str]) -> pl.DataFrame:
        reps = pl.concat([df.with_columns(_k=pl.lit(int(i), pl.Int64)) for i in ks])
        return reps.with_columns(
            peak_id=(pl.col("peak_id").cast(pl.Int64) + pl.col("_k") * n).cast(pl.UInt32),
            **{c: (pl.col(c).cast(pl.Int64) + pl.col("_k") * _SHIFT).cast(df.schema[c])
               for c in coords},
        ).drop("_k")

    per_part = 100
    blocks = {}
    for part, k0 in enumerate(range(0, k, per_part)):
        ks = np.arange(k0, min(k, k0 + per_part))
        blocks[part] = (tile(hits, ks, ["start", "end", "start_untrimmed", "end_untrimmed"]),
                        tile(qc, ks, ["peak_region_start"]), int(k0) * n, int(ks[-1] + 1) * n)
    write_recorded_blocks(out, blocks, replace=True)  # partitions and their manifest
    for name in ("motifs.parquet", "motif_cwms.npy", "parameters.json"):
        shutil.copy(one / name, out / name)
    return out


def peak_rss(k: int, where: Path, per_part: int = 0) -> dict:
    """Peak RSS (MB), hits and seconds of the report on the fixture tiled ``k`` times.

    ``per_part`` > 0 shrinks the hits per de-duplication part and windows per CWM chunk, so
    that a small test walks the same code paths as millions of hits do.
    """
    run = tiled_run(k, where)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(k), str(run), str(where / f"report-{k}"),
         str(per_part), str(DATA / "regions.npz"), str(DATA / "modisco.h5"), str(_SHIFT)],
        capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_report_peak_rss_does_not_grow_with_hits(tmp_path: Path) -> None:
    small = peak_rss(100, tmp_path, per_part=40_000)
    large = peak_rss(800, tmp_path, per_part=40_000)
    assert large["hits"] == 8 * small["hits"] > 100_000
    # Measured: 295 and ~310 MB. State that grows by ~100 bytes a hit (as the CWM windows
    # once did: 313 -> 541 MB from 0.17M to 2M hits) adds over 100 MB here.
    assert large["maxrss_mb"] < 1.15 * small["maxrss_mb"], (small, large)


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, nargs="+", default=[1500, 3000])
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for k in opts.tiles:
            r = peak_rss(k, Path(tmp))
            print(f"{k} tiles: {r['hits']} hits, report tables in {r['seconds']:.1f} s, "
                  f"peak RSS {r['maxrss_mb']:.0f} MB", flush=True)
