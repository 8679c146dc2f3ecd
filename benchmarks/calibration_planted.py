"""Observed vs nominal FDR and recall of call-hits' q-values on planted-truth inputs.

Planted sets are drawn by ``nemo_dask.calibration.planted`` (fixture-sized: 350 regions of
L = 1000) in three settings, several seeds each; optionally the public fixture with its
ground_truth.tsv. Each is fitted in one process (``nemo_dask.calibration.evaluate``: finemo's
fit, then the null fit and the per-motif q-values a calibrated run computes) and printed as
README "Calibrated hits" tables: hits kept, observed false share (hits on no recorded instance
of any kind) and recall (planted instances hit by their motif) at q <= 0.01, 0.05, 0.1, and the
average precision of planted-overlapping hits ranked by each score::

    python benchmarks/calibration_planted.py [--seeds 1 2 3] [--fixture DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import torch

from nemo_dask.calibration.evaluate import average_precision, calibrated_fit, on_truth, summary
from nemo_dask.calibration.params import SCORES, CalibrationParams
from nemo_dask.calibration.planted import make_planted

SETTINGS = {
    "synthetic (fixture-like)": {},
    "synthetic, noisy": {"noise_sd": 1.0, "null_fraction": 0.25, "strength_sigma": 0.8},
    "network-like (unrecorded native instances and features)": {
        "native_rate": 2.0, "feature_rate": 2.0, "jitter": 0.4},
}


def _row(name: str, s: dict[str, float]) -> str:
    cells = [f"{int(s['hits'])}", f"{s['false_all']:.3f}", f"{s['recall_all']:.3f}"]
    for level in ("0.01", "0.05", "0.1"):
        cells.append(f"{int(s['kept_' + level])} / {s['false_' + level]:.3f} / "
                     f"{s['recall_' + level]:.3f}")
    return f"| {name} | " + " | ".join(cells) + " |"


HEADER = ("| input, null | hits | false share (all) | recall (all) | q <= 0.01: kept / false / "
          "recall | q <= 0.05 | q <= 0.1 |\n|---|---|---|---|---|---|---|")


def _ap(hits: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    y = on_truth(hits, truth).to_numpy()
    return {k: average_precision(hits[c].to_numpy(), y) for k, c in SCORES.items()}


def planted_sets(seeds: list[int], n_regions: int, width: int) -> None:
    print(HEADER)
    aps: dict[str, list[dict[str, float]]] = {}
    for name, settings in SETTINGS.items():
        nulls = ["decoy", "shuffle"] + (["background"] if "network" in name else [])
        for seed in seeds:
            p = make_planted(seed=seed, n_regions=n_regions, width=width, **settings)
            # Background: the same kind of regions with nothing planted (what a network's
            # attributions on non-peak regions would hold: native instances, features, noise).
            bg = make_planted(seed=seed + 1000, motif_seed=seed, n_regions=n_regions,
                              width=width,
                              **{**settings, "null_fraction": 1.0, "decoy_rate": 0.0})
            for null in nulls:
                params = CalibrationParams(null=null, background="bg" if null == "background"
                                           else None)
                hits = calibrated_fit(p.sequences, p.contributions, p.motifs, params,
                                      background=(bg.sequences, bg.contributions))
                print(_row(f"{name}, seed {seed}, {null}", summary(hits, p.truth)), flush=True)
                if null == "decoy":
                    aps.setdefault(name, []).append(_ap(hits, p.truth))
    print("\nAverage precision (planted-overlapping hits), mean over seeds:\n")
    print("| input | " + " | ".join(SCORES) + " |\n|---|" + "---|" * len(SCORES))
    for name, rows in aps.items():
        print(f"| {name} | " + " | ".join(f"{np.mean([r[k] for r in rows]):.4f}"
                                          for k in SCORES) + " |")


def fixture(d: Path) -> None:
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
    for null in ("decoy", "shuffle"):
        hits = calibrated_fit(seqs, contribs, motifs, CalibrationParams(null=null))
        print(_row(f"public fixture (350 regions), {null}",
                   summary(hits, truth, motif_of=motif_of)), flush=True)
        if null == "decoy":
            print("AP:", {k: round(v, 4) for k, v in _ap(hits, truth).items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--regions", type=int, default=350)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--fixture", type=Path, default=None,
                    help="a fixture directory with regions.npz, modisco.h5, ground_truth.tsv")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.fixture is not None:
        fixture(args.fixture)
    planted_sets(args.seeds, args.regions, args.width)


if __name__ == "__main__":
    main()
