"""Tiled calling on a fixture genome versus the per-peak run: recall, precision, hits per Mb.

Reads a fixture directory (genome.fa, contribs_projected.bw, peaks.narrowPeak, modisco.h5,
ground_truth.tsv, modisco_pattern_matches.tsv), then:

1. ``convert bigwig`` of the peaks (one L window per summit) and ``call-hits``: the per-peak run;
2. ``convert intervals`` of ``--intervals`` (``genome``: every chromosome whole; ``merged``:
   the peaks' windows merged when closer than ``--gap`` bases, several peaks per interval);
3. ``call-hits`` on the tiled store with finemo's per-window scale and with the fixed scale
   ``--global-scale-from PEAKS:50`` (the median of the peak windows' own scales);

With ``--fill-background`` the bigWig's empty spacers are first filled with noise like the
quietest covered flanks (Gaussian, smoothed with sigma 1 bp, the sd of the covered values more
than 450 bp from every summit), so that "background" is not simply absent data.

Prints, per run: hits, duplicates, recall of the planted instances (kinds planted + pair,
inside a finemo window; found = a hit of the matching pattern overlapping it), precision (hits
in peak windows overlapping any planted, pair or decoy instance), and hits per Mb inside the
peak windows and outside them::

    python benchmarks/fixture_intervals.py /work/shared/fixtures/small --intervals genome
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl


def _overlaps(starts: np.ndarray, ends: np.ndarray, qs: np.ndarray, qe: np.ndarray) -> np.ndarray:
    """For each query [qs, qe): does it overlap any of the sorted, disjoint [starts, ends)?"""
    i = np.searchsorted(ends, qs, side="right")
    ok = i < len(starts)
    out = np.zeros(len(qs), dtype=bool)
    out[ok] = starts[i[ok]] < qe[ok]
    return out


def _union(chrom_starts: dict[str, list[tuple[int, int]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for c, spans in chrom_starts.items():
        spans.sort()
        merged: list[list[int]] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        arr = np.array(merged, dtype=np.int64)
        out[c] = (arr[:, 0], arr[:, 1])
    return out


def evaluate(name: str, hits: pl.DataFrame, truth: pl.DataFrame, windows: dict,
             called_bp: int, matches: dict[str, str]) -> None:
    """Print one run's figures; background = called bases outside the peak windows."""
    hits = hits.with_columns(motif=pl.col("motif_name").replace_strict(matches, default=None))
    dup = hits.select("chr", "start", "motif_name", "strand").is_duplicated().sum()
    in_peak = np.zeros(hits.height, dtype=bool)
    true_hit = np.zeros(hits.height, dtype=bool)
    recalled = 0
    targets = truth.filter(pl.col("kind").is_in(["planted", "pair"]) & (pl.col("in_window") == 1)
                           ).unique("instance_id")
    for c in hits["chr"].unique().to_list():
        sel = (hits["chr"] == c).to_numpy()
        h = hits.filter(pl.col("chr") == c)
        hs, he = h["start"].to_numpy(), h["end"].to_numpy()
        if c in windows:
            in_peak[sel] = _overlaps(*windows[c], hs, he)
        t = truth.filter(pl.col("chr") == c)
        tt = _union({c: list(zip(t["start"].to_list(), t["end"].to_list(), strict=True))})
        true_hit[sel] = _overlaps(*tt[c], hs, he) if len(t) else False
    for row in targets.iter_rows(named=True):
        h = hits.filter((pl.col("chr") == row["chr"]) & (pl.col("motif") == row["motif"])
                        & (pl.col("start") < row["end"]) & (pl.col("end") > row["start"]))
        recalled += h.height > 0
    peak_bp = sum(int((e - s).sum()) for s, e in windows.values())
    n_peak, n_bg = int(in_peak.sum()), int((~in_peak).sum())
    precision = true_hit[in_peak].mean() if n_peak else float("nan")
    print(f"{name:34s} hits {hits.height:5d}  dup {dup}  recall {recalled}/{len(targets)} = "
          f"{recalled / len(targets):.3f}  precision(in peaks) {precision:.3f}  "
          f"hits/Mb peaks {n_peak / peak_bp * 1e6:8.1f}  background {n_bg:5d} hits = "
          f"{n_bg / max(called_bp - peak_bp, 1) * 1e6:7.1f}/Mb of "
          f"{max(called_bp - peak_bp, 0):,} bp", flush=True)


def fill_background(src: Path, peaks: Path, dest: Path, seed: int = 0) -> Path:
    """A copy of ``src`` whose bases without data hold noise like the quiet covered flanks."""
    import pyBigWig
    from scipy.ndimage import gaussian_filter1d

    summits: dict[str, list[int]] = {}
    for line in peaks.read_text().splitlines():
        f = line.split("\t")
        summits.setdefault(f[0], []).append(int(f[1]) + int(f[9]))
    rng = np.random.default_rng(seed)
    bw = pyBigWig.open(str(src))
    chroms = bw.chroms()
    values, quiet = {}, []
    for c, n in chroms.items():
        v = np.asarray(bw.values(c, 0, n, numpy=True), dtype=np.float64)
        near = np.zeros(n, dtype=bool)
        for sm in summits.get(c, []):
            near[max(sm - 450, 0):sm + 450] = True
        quiet.append(v[~np.isnan(v) & ~near])
        values[c] = v
    sd = float(np.concatenate(quiet).std())
    out = pyBigWig.open(str(dest), "w")
    out.addHeader(list(chroms.items()))
    for c, v in values.items():
        noise = gaussian_filter1d(rng.normal(0, 1, len(v)), 1.0)
        noise *= sd / noise.std()
        filled = np.where(np.isnan(v), noise, v)
        out.addEntries(c, 0, values=filled, span=1, step=1)
    out.close()
    bw.close()
    print(f"background filled with noise of sd {sd:.4g} (that of the covered flanks)")
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fixture", type=Path)
    p.add_argument("--intervals", choices=["genome", "merged"], default="genome")
    p.add_argument("--gap", type=int, default=5000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--fill-background", action="store_true")
    opts = p.parse_args()
    warnings.simplefilter("ignore")
    from nemo_dask.calling.api import call_hits
    from nemo_dask.clusters.connect import ClusterOptions, connect
    from nemo_dask.regions.convert import convert_bigwig, convert_intervals
    from nemo_dask.regions.scale import peak_scale

    fx = opts.fixture
    truth = pl.read_csv(fx / "ground_truth.tsv", separator="\t")
    matches = dict(pl.read_csv(fx / "modisco_pattern_matches.tsv", separator="\t")
                   .select("pattern", "best_motif").iter_rows())
    sizes = dict(line.split("\t")[:2] for line in (fx / "genome.chrom.sizes").read_text().split("\n") if line)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bigwig = fx / "contribs_projected.bw"
        if opts.fill_background:
            bigwig = fill_background(bigwig, fx / "peaks.narrowPeak", tmp / "filled.bw")
        peaks = convert_bigwig(fx / "peaks.narrowPeak", fx / "genome.fa", bigwig,
                               tmp / "peaks.zarr", region_width=opts.width, progress=False)
        spans: dict[str, list[tuple[int, int]]] = {}
        for c, s in zip(peaks.peaks["chr"], peaks.peaks["peak_region_start"], strict=True):
            spans.setdefault(c, []).append((int(s), int(s) + opts.width))
        windows = _union({c: list(v) for c, v in spans.items()})
        if opts.intervals == "genome":
            kw = {"whole_genome": True}
        else:
            gapped = _union({c: [(s - opts.gap // 2, e + opts.gap // 2) for s, e in v]
                             for c, v in spans.items()})
            bed = tmp / "merged.bed"
            with open(bed, "w") as f:
                for c, (ss, ee) in gapped.items():
                    for s, e in zip(ss.tolist(), ee.tolist(), strict=True):
                        f.write(f"{c}\t{max(s + opts.gap // 2, 0)}\t"
                                f"{min(e - opts.gap // 2, int(sizes[c]))}\n")
            kw = {"intervals": bed}
            print(f"merged intervals: {sum(len(v[0]) for v in gapped.values())} covering "
                  f"{len(peaks.peaks)} peaks")
        tiled = convert_intervals(fx / "genome.fa", bigwig,
                                  tmp / "tiled.zarr", region_width=opts.width, progress=False, **kw)
        scale = peak_scale(peaks.url, 50)
        print(f"peaks: {peaks.n_regions} windows; tiled ({opts.intervals}): {tiled.n_regions} "
              f"windows over {tiled.attrs['tiling']['bases']:,} bp; median peak-window scale "
              f"{scale:.5g}", flush=True)
        with connect(ClusterOptions(n_workers=opts.workers, dashboard_address=None),
                     announce=False) as client:
            runs = [("per-peak (finemo windows)", peaks, None),
                    (f"tiled {opts.intervals}, per-window scale", tiled, None),
                    (f"tiled {opts.intervals}, fixed scale p50", tiled, scale)]
            for i, (name, store, gs) in enumerate(runs):
                t0 = time.perf_counter()
                res = call_hits(store.url, fx / "modisco.h5", tmp / f"out{i}", client=client,
                                global_scale=gs, progress=False)
                hits = res.hits.collect()
                if store is peaks:  # finemo's hits_unique: the overlapping windows' copies once
                    hits = hits.unique(["chr", "start", "motif_name", "strand"], keep="first")
                print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
                called = (store.attrs["tiling"]["bases"] if store is tiled
                          else sum(int((e - s).sum()) for s, e in windows.values()))
                evaluate(name, hits, truth, windows, called, matches)


if __name__ == "__main__":
    main()
