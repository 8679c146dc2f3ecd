"""What verified reads cost: a store's blocks read with chunk checks against the same store read
unchecked (its checksum record removed, as a store of an older version), interleaved, next to
the time call-hits spends per block on the same machine.

    python benchmarks/verified_reads.py STORE.zarr MODISCO.h5 [--rounds 7] [--block-size N]

Prints the median seconds to read every block (as call-hits lays them out) each way, their
ratio, and the extra seconds as a share of what one call-hits run of the store costs the
workers (its wall time times the number of workers, embedded cluster, same session).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def unverified_copy(store: Path, where: Path) -> Path:
    """The store as a version without checksums wrote it (same chunks, no record)."""
    from nemo_dask.regions.checksums import CHECKSUM_ATTR, CHECKSUM_GROUP
    from nemo_dask.regions.store import ATTRS_KEY

    copy = where / "unverified.zarr"
    shutil.copytree(store, copy)
    shutil.rmtree(copy / CHECKSUM_GROUP)
    meta = json.loads((copy / "zarr.json").read_text())
    del meta["attributes"][ATTRS_KEY][CHECKSUM_ATTR]
    (copy / "zarr.json").write_text(json.dumps(meta))
    return copy


def read_pass(store: Path, blocks: list[tuple[int, int]]) -> float:
    """Seconds to read every block once, as one worker does (one open store, blocks in turn)."""
    from nemo_dask.regions.store import open_store

    t0 = time.perf_counter()
    regions = open_store(store)
    for start, stop in blocks:
        regions.read_block(start, stop)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("modisco", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block-size", type=int, default=None)
    args = parser.parse_args()

    from nemo_dask import call_hits
    from nemo_dask.calling.plan import default_block_size
    from nemo_dask.regions.store import open_store

    store = open_store(args.store)
    size = args.block_size or default_block_size(store.n_regions, store.chunk_size, False)
    blocks = [(s, min(s + size, store.n_regions)) for s in range(0, store.n_regions, size)]
    with tempfile.TemporaryDirectory() as tmp:
        plain = unverified_copy(args.store, Path(tmp))
        verified, unverified = [], []
        for _ in range(args.rounds):  # A B A B: drifts of the machine hit both
            verified.append(read_pass(args.store, blocks))
            unverified.append(read_pass(plain, blocks))
        result = call_hits(args.store, args.modisco, Path(tmp) / "out", block_size=size,
                           progress=False)
    workers = len({s["worker"] for s in result.summaries})
    task_s = result.elapsed_s * workers
    v, u = statistics.median(verified), statistics.median(unverified)
    ratios = [a / b for a, b in zip(verified, unverified, strict=True)]
    print(f"{store.n_regions} regions, {len(blocks)} blocks of {size}, chunks of "
          f"{store.chunk_size}, {args.rounds} rounds")
    print(f"read every block: verified {v:.3f} s, unverified {u:.3f} s (medians; ratio "
          f"{v / u:.2f}; per-round ratios {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"call-hits: {result.elapsed_s:.1f} s wall x {workers} workers = {task_s:.1f} "
          f"worker-seconds; verified reads add {v - u:+.3f} s = {100 * (v - u) / task_s:+.2f} "
          "% of it")


if __name__ == "__main__":
    main()
