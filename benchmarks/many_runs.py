"""A sheet of many small runs against one run over the same regions (issue 26's bar).

Builds, in DIR, the bundled fixture's 350 regions tiled K times (default 20) in a shuffled
order (seed 0) as one store, ``all.zarr``, and the same regions cut into K stores of 350,
``s00.zarr`` ... (each a different run: its regions differ), plus ``RUNS.tsv`` naming them
(out ``out_s00`` ...). Then time, interleaved, on the embedded cluster:

    nemo-dask call-hits -r DIR/all.zarr -m DIR/modisco.h5 -o DIR/out_all --no-progress
    nemo-dask call-hits --runs DIR/RUNS.tsv --no-progress

(remove ``DIR/out_*`` before each). ``--check`` afterwards: the runs' hits together are
``out_all``'s, value for value (but their q-values: each run's are its own).

    python benchmarks/many_runs.py DIR [--runs 20]
    python benchmarks/many_runs.py DIR --check
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data"


def build(workdir: Path, k: int) -> None:
    from nemo_dask.regions.convert import convert_npz

    workdir.mkdir(parents=True, exist_ok=True)
    with np.load(FIXTURE / "regions.npz") as d:
        arrays = {name: d[name] for name in d.files}
    n = len(arrays["sequences"])
    order = np.random.default_rng(0).permutation(n * k) % n
    tiled = {name: a[order] for name, a in arrays.items()}
    np.savez(workdir / "all.npz", **tiled)
    convert_npz(workdir / "all.npz", workdir / "all.zarr", chunk_size=256, overwrite=True,
                progress=False)
    lines = ["name\tregions\tmotifs\tout"]
    for i in range(k):
        part = workdir / f"s{i:02d}.npz"
        np.savez(part, **{name: a[i * n:(i + 1) * n] for name, a in tiled.items()})
        convert_npz(part, workdir / f"s{i:02d}.zarr", chunk_size=256, overwrite=True,
                    progress=False)
        part.unlink()
        lines.append(f"s{i:02d}\ts{i:02d}.zarr\tmodisco.h5\tout_s{i:02d}")
    (workdir / "all.npz").unlink()
    shutil.copy(FIXTURE / "modisco.h5", workdir / "modisco.h5")
    (workdir / "RUNS.tsv").write_text("\n".join(lines) + "\n")
    print(f"{workdir}: all.zarr ({n * k} regions), {k} stores of {n}, RUNS.tsv")


def check(workdir: Path) -> None:
    """The runs' hits together are out_all's, value for value (as multisets of rows: the
    tiles repeat the fixture's peaks), but for ``hit_qvalue``: each run's q-values are
    estimated over its own hits, as its solo run's are."""
    import polars as pl

    import nemo_dask

    def hits(out: Path) -> pl.DataFrame:
        return nemo_dask.scan_hits(out).drop("hit_qvalue", strict=False).collect()

    whole = hits(workdir / "out_all")
    runs = sorted(p for p in os.listdir(workdir) if p.startswith("out_s"))
    parts = pl.concat([hits(workdir / name) for name in runs])
    assert parts.sort(parts.columns).equals(whole.sort(whole.columns)), "hits differ"
    print(f"{len(runs)} runs: {len(parts)} hits, the same as out_all's, value for value")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.check:
        check(args.dir)
    else:
        build(args.dir, args.runs)


if __name__ == "__main__":
    main()
