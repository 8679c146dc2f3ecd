"""Make a large synthetic call-hits output directory for export benchmarks (not a test).

Tiles the fixture's hits and QC (tests/data/finemo_out, imported with nemo_dask.importing)
``--copies`` times. Copy c shifts peak_id by c x 350, renames chromosome ``chrK`` to
``chrK_<c mod 8>`` and shifts coordinates by (c // 8) x 600 kb, so the result has 24
chromosomes whose hits interleave across partitions as a real run's do (its peaks are ordered by
signal, not position). ``--copies-per-block`` copies make one partition.

    python benchmarks/make_synthetic_hits.py -o /tmp/nemo_bench/out --copies 5811
    /usr/bin/time -v nemo-dask export -H /tmp/nemo_bench/out -o /tmp/nemo_bench/export

5811 copies give 10,000,731 hits and 2,033,850 regions.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import polars as pl

from nemo_dask.dataset import write_block, write_manifest
from nemo_dask.finemo.importing import import_finemo

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "finemo_out"
N_CHR_SPLIT = 8
SHIFT = 600_000


def _tile(frame: pl.DataFrame, copies: range, n_regions: int, n_chr: int,
          coord_cols: tuple[str, ...]) -> pl.DataFrame:
    c = pl.DataFrame({"_c": list(copies)}, schema={"_c": pl.Int64})
    split = pl.col("_c") % N_CHR_SPLIT
    shift = (pl.col("_c") // N_CHR_SPLIT) * SHIFT
    return (
        frame.join(c, how="cross")
        .with_columns(
            peak_id=(pl.col("peak_id").cast(pl.Int64) + pl.col("_c") * n_regions).cast(pl.UInt32),
            chr=pl.col("chr") + "_" + split.cast(pl.String),
            chr_id=(pl.col("chr_id").cast(pl.Int64) * N_CHR_SPLIT + split).cast(pl.UInt32),
            peak_name=pl.col("peak_name") + "_" + pl.col("_c").cast(pl.String),
            **{k: (pl.col(k).cast(pl.Int64) + shift).cast(pl.Int32) for k in coord_cols},
        )
        .drop("_c")
        .sort("peak_id")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--copies", type=int, default=5811)
    ap.add_argument("--copies-per-block", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        import_finemo(DATA, base, regions_per_partition=10**9)
        hits = pl.read_parquet(base / "hits" / "*.parquet")
        qc = pl.read_parquet(base / "qc" / "*.parquet")
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for name in ("motifs.parquet", "motif_cwms.npy", "parameters.json"):
            shutil.copyfile(base / name, args.out / name)
    n_regions = qc.height
    n_chr = int(qc["chr_id"].max()) + 1  # type: ignore[arg-type]
    finished = {}
    per = args.copies_per_block
    n_blocks = -(-args.copies // per)
    for b in range(n_blocks):
        copies = range(b * per, min((b + 1) * per, args.copies))
        h = _tile(hits, copies, n_regions, n_chr,
                  ("start", "end", "start_untrimmed", "end_untrimmed"))
        q = _tile(qc, copies, n_regions, n_chr, ("peak_region_start",))
        n_h, n_q = write_block(args.out, b, h, q)
        finished[b] = {"start": copies.start * n_regions, "stop": copies.stop * n_regions,
                       "hits": n_h, "regions": n_q}
    write_manifest(args.out, "synthetic", n_blocks, finished, complete=True)
    total = sum(v["hits"] for v in finished.values())
    print(f"{args.out}: {total} hits, {args.copies * n_regions} regions, {n_blocks} partitions")


if __name__ == "__main__":
    main()
