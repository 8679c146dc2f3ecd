"""Observed vs nominal FDR and recall of call-hits' q-values on planted-truth inputs.

Planted sets are drawn by ``nemo_dask.calibration.planted`` (fixture-sized: 350 regions of
L = 1000, instances ~ Normal(summit, 110 bp) as in the public fixture) in several kinds --
synthetic, noisy synthetic, network-like (unrecorded native instances and other features a
trained network attributes) -- and in kinds that bend the flank null's assumptions (instances
spread wider, noise much stronger at the summit, unrecorded structure near the summit,
L = 500 and 2000); several seeds each; optionally the public fixture with its
ground_truth.tsv. Each set is fitted once in one process (``nemo_dask.calibration.evaluate``:
finemo's fit, then each null's fit if it needs one, and the per-motif q-values a run
computes) and printed as README "Calibrated hits" tables: hits kept, observed false share
(hits on no recorded instance of any kind) and recall (planted instances hit by their motif)
at q <= 0.01, 0.05, 0.1; the average precision of planted-overlapping hits ranked by each
score; and the time of each null's fit relative to finemo's fit::

    python benchmarks/calibration_planted.py [--seeds 1 2 3] [--kinds ...] [--nulls ...]
        [--fixture DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from nemo_dask.calibration.evaluate import (
    average_precision,
    calibrated_fit,
    on_truth,
    summary,
)
from nemo_dask.calibration.params import SCORES, CalibrationParams
from nemo_dask.calibration.planted import make_planted
from nemo_dask.solver.stream import fit_block

NETWORK = {"native_rate": 2.0, "feature_rate": 2.0, "jitter": 0.4}
NOISY = {"noise_sd": 1.0, "null_fraction": 0.25, "strength_sigma": 0.8}
#: Kinds of data: name -> make_planted settings (on top of 350 regions, L 1000, sd 110).
KINDS = {
    "synthetic": {},
    "synthetic, noisy": NOISY,
    "network-like": NETWORK,
    "network-like, instances sd 200": {**NETWORK, "position_sd": 200.0},
    "network-like, summit noise x3": {**NETWORK, "summit_noise": 2.4},
    "noisy, summit noise x3": {**NOISY, "summit_noise": 2.4},
    "network-like, structure near summit (sd 250)": {**NETWORK, "extra_position_sd": 250.0},
    "network-like, L = 500": {**NETWORK, "width": 500},
    "network-like, L = 2000": {**NETWORK, "width": 2000},
}
NULLS = ("flank", "decoy", "flank+decoy", "background")
HEADER = ("| data, null | hits | false (all) | recall (all) | q <= 0.01: kept / false / "
          "recall | q <= 0.05 | q <= 0.1 |\n|---|---|---|---|---|---|---|")


def _row(name: str, s: dict[str, float]) -> str:
    cells = [f"{int(s['hits'])}", f"{s['false_all']:.3f}", f"{s['recall_all']:.3f}"]
    for level in ("0.01", "0.05", "0.1"):
        false = f"{s['false_' + level]:.3f}" if s["kept_" + level] else "-"
        cells.append(f"{int(s['kept_' + level])} / {false} / {s['recall_' + level]:.3f}")
    return f"| {name} | " + " | ".join(cells) + " |"


def _ap(hits: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    y = on_truth(hits, truth).to_numpy()
    aps = {k: average_precision(hits[c].to_numpy(), y) for k, c in SCORES.items()}
    # The ranking the flank null's q-values make: by q, ties by the score.
    order = hits.with_row_index("_i").sort(["hit_qvalue", "hit_importance_sq"],
                                          descending=[False, True])["_i"].to_numpy()
    rank = np.empty(order.size)
    rank[order] = -np.arange(order.size, dtype=np.float64)
    aps["flank q"] = average_precision(rank, y)
    return aps


def planted_sets(kinds: list[str], nulls: list[str], seeds: list[int], n_regions: int) -> None:
    print(HEADER, flush=True)
    aps: dict[str, list[dict[str, float]]] = {}
    costs: dict[str, list[float]] = {}
    for kind in kinds:
        settings = {"n_regions": n_regions, "width": 1000, "position_sd": 110.0,
                    **KINDS[kind]}
        for seed in seeds:
            p = make_planted(seed=seed, **settings)
            # Background: the same kind of regions with nothing planted (what a network's
            # attributions on non-peak regions would hold: native instances, features, noise).
            bg = make_planted(seed=seed + 1000, motif_seed=seed,
                              **{**settings, "null_fraction": 1.0, "decoy_rate": 0.0})
            t0 = time.perf_counter()
            real = fit_block(p.sequences, p.contributions, p.motifs)
            t_real = time.perf_counter() - t0
            for null in nulls:
                params = CalibrationParams(null=null, background="bg" if "background" in null
                                           else None)
                t0 = time.perf_counter()
                hits = calibrated_fit(p.sequences, p.contributions, p.motifs, params,
                                      background=(bg.sequences, bg.contributions), real=real)
                costs.setdefault(null, []).append((time.perf_counter() - t0) / t_real)
                print(_row(f"{kind} seed {seed}, {null}", summary(hits, p.truth)), flush=True)
                if null == "flank":
                    aps.setdefault(kind, []).append(_ap(hits, p.truth))
    print("\nAverage precision (planted-overlapping hits), mean over seeds:\n")
    names = [*SCORES, "flank q"]
    print("| data | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for kind, rows in aps.items():
        print(f"| {kind} | " + " | ".join(f"{np.mean([r[k] for r in rows]):.4f}"
                                          for k in names) + " |")
    print("\nq-value time / finemo's fit time (in process, one thread), median:",
          {k: round(float(np.median(v)), 3) for k, v in costs.items()})


def fixture(d: Path, nulls: list[str]) -> None:
    """The public fixture: its regions.npz, modisco.h5 and ground_truth.tsv."""
    from nemo_dask.motifs import load_motifs

    with np.load(d / "regions.npz") as z:
        seqs, contribs = z["sequences"], z["contributions"]
    motifs = load_motifs(d / "modisco.h5")
    gt = pl.read_csv(d / "ground_truth.tsv", separator="\t").filter(pl.col("in_window") == 1)
    truth = gt.select(region="peak_id", start="rel_start", end="rel_end", motif="motif",
                      kind=pl.when(pl.col("kind") == "pair").then(pl.lit("planted"))
                      .otherwise(pl.col("kind")))
    matches = pl.read_csv(d / "modisco_pattern_matches.tsv", separator="\t")
    motif_of = dict(zip(matches["pattern"], matches["best_motif"], strict=True))
    print(HEADER)
    real = fit_block(seqs, contribs, motifs)
    for null in (n for n in nulls if "background" not in n):
        hits = calibrated_fit(seqs, contribs, motifs, CalibrationParams(null=null), real=real)
        print(_row(f"public fixture, {null}", summary(hits, truth, motif_of=motif_of)),
              flush=True)
        if null == "flank":
            print("AP:", {k: round(v, 4) for k, v in _ap(hits, truth).items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--regions", type=int, default=350)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--nulls", nargs="+", default=list(NULLS))
    ap.add_argument("--fixture", type=Path, default=None,
                    help="a fixture directory with regions.npz, modisco.h5, ground_truth.tsv")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.fixture is not None:
        fixture(args.fixture, args.nulls)
    planted_sets(args.kinds, args.nulls, args.seeds, args.regions)


if __name__ == "__main__":
    main()
