"""q-value estimate, weights, several nulls, strata, the flank null and decoys: exact small
cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from nemo_dask.calibration.decoys import cross_similarity, make_decoys
from nemo_dask.calibration.flank import flank_null, stratum_expr, zone_positions
from nemo_dask.calibration.params import CalibrationParams, resolve_calibration
from nemo_dask.calibration.planted import make_planted, motifs_from_matrices
from nemo_dask.calibration.qvalues import (
    POOLED,
    NullSample,
    group_of,
    lookup,
    qvalue_table,
    qvalue_tables,
)
from nemo_dask.errors import InputError


def test_qvalue_table_by_hand():
    # Targets 5..1, nulls 3.5 and 1.5: FDR(5)=1/1, FDR(4)=1/2, FDR(3)=2/3, FDR(2)=2/4, FDR(1)=3/5.
    t = qvalue_table(np.array([5.0, 4, 3, 2, 1]), NullSample.of(np.array([3.5, 1.5])))
    assert t.scores.tolist() == [1, 2, 3, 4, 5]
    fdr = [3 / 5, 2 / 4, 2 / 3, 1 / 2, 1.0]
    assert np.allclose(t.q, np.minimum.accumulate(fdr))  # q(s) = min FDR over s' <= s
    assert np.all(np.diff(t.q) <= 0)  # a higher score never has a larger q


def test_weights_and_the_larger_of_two_nulls():
    target = np.arange(1.0, 11.0)  # 10 targets
    # A null hit standing for 2 false hits (a flank position for two window positions):
    # FDR(s) = (2 x null hits >= s + 2) / targets >= s.
    weighted = NullSample(np.array([9.5]), np.array([2.0]), 2.0)
    t = qvalue_table(target, weighted)
    fdr = np.minimum(1, (2.0 * (target <= 9.5) + 2.0) / (11 - target))
    assert np.allclose(t.q, np.minimum.accumulate(fdr))
    # With a second null the estimate is the larger of the two at every threshold.
    other = NullSample.of(np.array([2.5, 3.5, 4.5]))
    both = qvalue_table(target, weighted, other)
    fdr2 = np.minimum(1, ((target <= np.array([[2.5], [3.5], [4.5]])).sum(0) + 1) / (11 - target))
    assert np.allclose(both.q, np.minimum.accumulate(np.maximum(fdr, fdr2)))
    with pytest.raises(ValueError, match="at least one null"):
        qvalue_table(target)


def test_ties_share_a_qvalue_and_order_does_not_matter():
    rng = np.random.default_rng(0)
    target = np.round(rng.exponential(size=200), 1)
    null = np.round(rng.exponential(size=30) * 0.5, 1)
    a = lookup(qvalue_table(target, NullSample.of(null)), target)
    perm = rng.permutation(200)
    b = lookup(qvalue_table(target[perm], NullSample.of(null[::-1])), target[perm])
    assert np.array_equal(a[perm], b)
    for v in np.unique(target):
        assert np.unique(a[target == v]).size == 1


def test_no_null_hits_and_no_targets():
    t = qvalue_table(np.arange(1.0, 101.0), NullSample.of(np.array([])))
    assert t.q.min() == pytest.approx(1 / 100)  # the +1: never 0
    assert qvalue_table(np.array([]), NullSample.of(np.array([1.0]))).q.size == 0
    with pytest.raises(ValueError, match="finite"):
        qvalue_table(np.array([np.nan]), NullSample.of(np.array([])))
    with pytest.raises(ValueError, match="not among"):
        lookup(t, np.array([0.5]))


def test_small_motifs_are_pooled_per_stratum():
    assert group_of({"a": 100, "b": 3, "c": 4}, 50) == {"a": "a", "b": POOLED, "c": POOLED}
    assert group_of({"a": 100, "b": 3}, 50) == {"a": "a", "b": "b"}  # nothing to pool with
    targets = pl.DataFrame({"motif": ["a"] * 60 + ["b"] * 2 + ["c"] * 2,
                            "stratum": [0] * 30 + [1] * 30 + [0, 1, 0, 1],
                            "score": np.arange(64, dtype=float)})
    nulls = pl.DataFrame({"source": ["decoy"], "motif": ["b"], "stratum": [1], "score": [100.0],
                          "weight": [1.0]})
    units = {("decoy", 0): 1.0, ("decoy", 1): 1.0}
    groups, tables = qvalue_tables(targets, nulls, units, min_hits=50)
    assert tables[(POOLED, 0)].n_targets == 2 and tables[(POOLED, 1)].n_null == 1
    assert tables[(POOLED, 0)].n_null == 0 and tables[("a", 1)].n_targets == 30


def _one_motif(width: int = 30):
    cwm = np.zeros((4, width))
    cwm[0, 10:20] = 1.0  # trimmed to [10, 20): its centre is 15 bp into the untrimmed window
    return motifs_from_matrices({"pos_patterns.pattern_0": cwm})


def test_flank_strata_and_weights():
    motifs = _one_motif()
    # L = 200, W = 30: hit centres hs + 15 for hs in 0..170; flanks beyond 0.5 x 100 = 50 bp.
    counts = zone_positions(motifs.table, 200, 30, 0.5, 2)[0]
    centres = np.arange(171) + 15.0
    d = np.abs(centres - 100)
    # rings [0, 25) and [25, 50] bp from the centre, then the flanks
    assert counts.tolist() == [(d < 25).sum(), ((d >= 25) & (d <= 50)).sum(), (d > 50).sum()]
    hits = pl.DataFrame({"motif_id": [0, 0, 0, 1], "hit_start": [85, 100, 160, 0],
                         "motif_name": ["pos_patterns.pattern_0"] * 4,
                         "hit_importance_sq": [1.0, 2.0, 3.0, 4.0]})
    strata = (hits.join(motifs.table.select("motif_id", "motif_start", "motif_end"),
                        on="motif_id", maintain_order="left")
              .select(stratum_expr(200, 0.5, 2)).to_series().to_list())
    assert strata == [0, 0, 2, 2]  # distances 0, 15, 75 (flank), 85 (flank)
    nulls, units = flank_null(hits, motifs.table, 200, 30, 0.5, 2, "hit_importance_sq")
    # Each flank hit is a null hit of every stratum, weighted by that stratum's positions.
    assert nulls.height == 2 * 3
    w = nulls.filter(pl.col("stratum") == 0)["weight"].unique().to_list()
    assert w == [pytest.approx(counts[0] / counts[2])]
    assert units[("flank", 2)] == 1.0  # in the flanks a flank hit is one of their own: q = 1
    with pytest.raises(InputError, match="no position in the flanks"):
        zone_positions(motifs.table, 60, 30, 0.99, 2)


def test_resolve_calibration_rules():
    assert resolve_calibration(None, None, "importance_sq", tiled=False, where="r").null == "flank"
    assert resolve_calibration(None, "bg", "importance_sq", tiled=False,
                               where="r").null == "background"
    assert resolve_calibration("none", None, "importance_sq", tiled=False, where="r") is None
    with pytest.warns(UserWarning, match="no summit"):
        assert resolve_calibration(None, None, "importance_sq", tiled=True, where="r") is None
    with pytest.raises(InputError, match="no summit"):
        resolve_calibration("flank", None, "importance_sq", tiled=True, where="r")
    assert resolve_calibration("decoy", None, "importance_sq", tiled=True,
                               where="r").null == "decoy"
    assert CalibrationParams(null="decoy+flank").null == "flank+decoy"
    with pytest.raises(InputError, match="at most one"):
        CalibrationParams(null="decoy+shuffle")
    with pytest.raises(InputError, match="needs a background"):
        CalibrationParams(null="flank+background")
    with pytest.raises(InputError, match="--null none"):
        resolve_calibration("none", "bg", "importance_sq", tiled=False, where="r")


def test_decoys_keep_composition_and_match_no_motif():
    planted = make_planted(seed=5, n_regions=2)
    m = planted.motifs
    d = make_decoys(m, seed=1, max_similarity=0.5)
    assert np.all(d.similarity < 0.5)
    assert np.array_equal(d.motifs.trim_masks, m.trim_masks)
    assert np.array_equal(d.motifs.lambdas, m.lambdas)
    for i in range(m.n_motifs):
        a, b = m.cwms[i].astype(np.float64), d.motifs.cwms[i].astype(np.float64)
        assert np.linalg.norm(a) == pytest.approx(np.linalg.norm(b), rel=1e-3)
        assert np.allclose(np.sort(a.sum(axis=0)), np.sort(b.sum(axis=0)))  # columns permuted
        mask = m.trim_masks[i].astype(bool)
        for j in range(m.n_motifs):
            assert cross_similarity(b[:, mask], m.cwms[j][:, m.trim_masks[j].astype(bool)]) < 0.5
    again = make_decoys(m, seed=1, max_similarity=0.5)
    assert np.array_equal(again.motifs.cwms, d.motifs.cwms)  # deterministic for a seed
    names = d.motifs.table["motif_name"].to_list()
    assert all(n.startswith("decoy:") for n in names)


def test_cross_similarity_of_a_motif_with_itself_is_one():
    x = np.random.default_rng(1).normal(size=(4, 9))
    assert cross_similarity(x, x) == pytest.approx(1.0)
    assert cross_similarity(x, -x) < 0.5
