"""Calibration against planted truth: observed false share vs nominal q, and recall.

Inputs are drawn by nemo_dask.calibration.planted (planted instances, partial decoys,
noise-only regions), several seeds and settings, fitted in process with the same null fit and
q-value tables a calibrated run uses (nemo_dask.calibration.evaluate) (tests/calibration/test_run.py runs them through
call-hits). Issue 25's criteria: at q <= 0.05 and 0.10 the share of kept hits on no recorded
instance is at most 1.5 x the level, and at q <= 0.05 recall is at least 90 % of the recall
of all hits.
"""

from __future__ import annotations

import polars as pl
import pytest

from nemo_dask.calibration.evaluate import calibrated_fit, on_truth, recall
from nemo_dask.calibration.params import CalibrationParams
from nemo_dask.calibration.planted import make_planted


def calibrated_hits(planted, params):
    return calibrated_fit(planted.sequences, planted.contributions, planted.motifs, params)

SETTINGS = {
    "fixture-like": {},
    "noisy": {"noise_sd": 1.0, "null_fraction": 0.25, "strength_sigma": 0.8},
    "dense": {"instances_per_region": 5.0, "decoy_rate": 0.8, "noise_smooth": 2.0},
}


@pytest.mark.parametrize("seed", [101, 102])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_decoy_qvalues_are_calibrated(setting, seed):
    planted = make_planted(seed=seed, n_regions=240, width=400, **SETTINGS[setting])
    hits = calibrated_hits(planted, CalibrationParams())
    true = on_truth(hits, planted.truth)
    base = recall(hits, planted.truth)
    assert hits.height > 200 and base > 0.6
    for level in (0.05, 0.1):
        kept = hits.filter(pl.col("hit_qvalue") <= level)
        false_share = 1 - true.filter(hits["hit_qvalue"] <= level).mean() if kept.height else 0
        assert false_share <= 1.5 * level, (level, false_share)
    assert recall(hits.filter(pl.col("hit_qvalue") <= 0.05), planted.truth) >= 0.9 * base


def test_noise_only_regions_get_no_confident_hits():
    # Every region noise only: whatever hits there are, none is confident at q <= 0.1.
    planted = make_planted(seed=7, n_regions=150, width=400, null_fraction=1.0,
                           noise_sd=1.5, decoy_rate=0.0)
    hits = calibrated_hits(planted, CalibrationParams())
    assert (hits["hit_qvalue"] <= 0.1).sum() <= max(1, int(0.15 * hits.height))


def test_shuffle_null_runs_and_orders_like_the_score():
    planted = make_planted(seed=8, n_regions=80, width=400)
    hits = calibrated_hits(planted, CalibrationParams(null="shuffle"))
    assert hits["hit_qvalue"].is_not_null().all()
    for _, g in hits.group_by("motif_name"):
        g = g.sort("hit_importance_sq")
        assert (g["hit_qvalue"].diff().drop_nulls() <= 0).all()  # higher score, lower q


def test_background_null_sees_what_decoys_cannot():
    # Unrecorded native instances of the motifs (what a trained network attributes beyond the
    # planted motifs): decoys cannot see them, background regions of the same kind can.
    settings = {"native_rate": 2.0, "feature_rate": 2.0, "jitter": 0.4}
    planted = make_planted(seed=9, n_regions=200, width=400, **settings)
    background = make_planted(seed=1009, motif_seed=9, n_regions=200, width=400,
                              **{**settings, "null_fraction": 1.0, "decoy_rate": 0.0})
    arrays = (background.sequences, background.contributions)

    def false_share(null: str, level: float) -> float:
        params = CalibrationParams(null=null, background="bg" if null == "background" else None)
        hits = calibrated_fit(planted.sequences, planted.contributions, planted.motifs, params,
                              background=arrays)
        kept = hits["hit_qvalue"] <= level
        return float(1 - on_truth(hits, planted.truth).filter(kept).mean()) if kept.any() else 0.0

    assert false_share("decoy", 0.1) > 0.2  # blind to the native instances
    assert false_share("background", 0.1) <= 0.15
