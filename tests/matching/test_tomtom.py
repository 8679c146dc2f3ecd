"""TOMTOM matches: q-values, ranking, orientation, and the fixture's planted JASPAR motifs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nemo_dask.matching.database import MotifDatabase, open_database
from nemo_dask.matching.query import pattern_ppms
from nemo_dask.matching.tomtom import benjamini_hochberg, tomtom_matches

D = Path(__file__).parents[1] / "data" / "matching"


def planted() -> dict[str, tuple[str, str, str]]:
    """Fixture pattern -> (planted motif, its JASPAR2024 matrix ID, orientation)."""
    ids = dict(pl.read_csv(D / "ground_truth_motifs.tsv", separator="\t")
               .select("motif", "matrix_id").iter_rows())
    rows = pl.read_csv(D / "modisco_pattern_matches.tsv", separator="\t")
    return {p: (m, ids[m], o) for p, m, o in rows.select("pattern", "best_motif",
                                                        "orientation").iter_rows()}


def test_benjamini_hochberg() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005 0.01 0.03 0.04 0.5 -> x5/(1..5): 0.025 0.025 0.05 0.05 0.5 (monotone)
    assert np.allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    assert benjamini_hochberg(np.array([0.9, 0.95])).max() <= 1.0
    assert benjamini_hochberg(np.array([])).size == 0


@pytest.mark.parametrize("method", ["hcwm", "sequence"])
def test_fixture_patterns_top_match_is_the_planted_motif(modisco_h5, method) -> None:
    truth = planted()
    db = open_database("jaspar")
    queries = pattern_ppms(modisco_h5, list(truth), method=method)
    found = tomtom_matches([queries[p].ppm for p in truth], db, top_k=3)
    for (pattern, (motif, matrix_id, orientation)), matches in zip(truth.items(), found,
                                                                    strict=True):
        assert len(matches) == 3
        assert [m.pvalue for m in matches] == sorted(m.pvalue for m in matches)
        best = matches[0]
        assert best.id == matrix_id, (pattern, motif, matches)
        target = db.ppms[db.ids.index(matrix_id)]
        if np.abs(target - target[::-1, ::-1]).mean() > 0.1:  # CEBPB's is a palindrome
            assert best.orientation == orientation, (pattern, motif, matches)
        assert best.qvalue <= 0.05 and best.pvalue <= best.qvalue


def test_small_database_warns_and_keeps_every_motif(modisco_h5) -> None:
    db = open_database(D / "two_motifs.meme")
    queries = pattern_ppms(modisco_h5, ["pos_patterns.pattern_0", "neg_patterns.pattern_0"])
    with pytest.warns(UserWarning, match="holds 2 motifs.*unreliable"):
        found = tomtom_matches([q.ppm for q in queries.values()], db, top_k=5)
    assert [len(m) for m in found] == [2, 2]  # k is capped by the database's size
    assert [m[0].name for m in found] == ["CTCF", "REST"]


def test_top_k_and_tie_order() -> None:
    ppm = np.array([[0.9, 0.05, 0.05, 0.9], [0.05, 0.9, 0.05, 0.05],
                    [0.025, 0.025, 0.85, 0.025], [0.025, 0.025, 0.05, 0.025]])
    # Two copies of one target: equal p-values and scores, kept in database order.
    db = MotifDatabase("x", "x", ("a", "b", "c"), ("A", "B", "C"),
                       (ppm, ppm.copy(), np.full((4, 4), 0.25)))
    with pytest.warns(UserWarning):
        (matches,) = tomtom_matches([ppm], db, top_k=2)
    assert [m.id for m in matches] == ["a", "b"] and matches[0].orientation == "+"
    with pytest.raises(ValueError, match="at least 1"):
        tomtom_matches([ppm], db, top_k=0)
