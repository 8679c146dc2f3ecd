"""q-value estimate, pooling and decoys: exact small cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from nemo_dask.calibration.decoys import cross_similarity, make_decoys
from nemo_dask.calibration.planted import make_planted
from nemo_dask.calibration.qvalues import POOLED, group_of, lookup, qvalue_table, qvalue_tables


def test_qvalue_table_by_hand():
    # Targets 5..1, nulls 3.5 and 1.5: FDR(5)=1/1, FDR(4)=1/2, FDR(3)=2/3, FDR(2)=2/4, FDR(1)=3/5.
    t = qvalue_table(np.array([5.0, 4, 3, 2, 1]), np.array([3.5, 1.5]))
    assert t.scores.tolist() == [1, 2, 3, 4, 5]
    fdr = [3 / 5, 2 / 4, 2 / 3, 1 / 2, 1.0]
    assert np.allclose(t.q, np.minimum.accumulate(fdr))  # q(s) = min FDR over s' <= s
    assert np.all(np.diff(t.q) <= 0)  # a higher score never has a larger q


def test_ties_share_a_qvalue_and_order_does_not_matter():
    rng = np.random.default_rng(0)
    target = np.round(rng.exponential(size=200), 1)
    null = np.round(rng.exponential(size=30) * 0.5, 1)
    a = lookup(qvalue_table(target, null), target)
    perm = rng.permutation(200)
    b = lookup(qvalue_table(target[perm], null[::-1]), target[perm])
    assert np.array_equal(a[perm], b)
    for v in np.unique(target):
        assert np.unique(a[target == v]).size == 1


def test_no_null_hits_and_no_targets():
    t = qvalue_table(np.arange(1.0, 101.0), np.array([]))
    assert t.q.min() == pytest.approx(1 / 100)  # the +1: never 0
    assert qvalue_table(np.array([]), np.array([1.0])).q.size == 0
    with pytest.raises(ValueError, match="finite"):
        qvalue_table(np.array([np.nan]), np.array([]))
    with pytest.raises(ValueError, match="not among"):
        lookup(t, np.array([0.5]))


def test_small_motifs_are_pooled():
    assert group_of({"a": 100, "b": 3, "c": 4}, 50) == {"a": "a", "b": POOLED, "c": POOLED}
    assert group_of({"a": 100, "b": 3}, 50) == {"a": "a", "b": "b"}  # nothing to pool with
    targets = pl.DataFrame({"motif": ["a"] * 60 + ["b"] * 2 + ["c"] * 2,
                            "score": np.arange(64, dtype=float)})
    nulls = pl.DataFrame({"motif": ["b"], "score": [100.0]})
    groups, tables = qvalue_tables(targets, nulls, min_hits=50)
    assert tables[POOLED].n_targets == 4 and tables[POOLED].n_null == 1
    assert tables["a"].n_null == 0


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
