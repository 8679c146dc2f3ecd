"""compare_hits and ``nemo-dask compare-hits``: the rule itself, on edited copies of finemo runs.

Each test edits a copy of finemo's recorded run (tests/data/finemo_out, 350 regions, 1721 hits)
and checks that the rule accepts what rounding on another CPU produces and rejects anything else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import nemo_dask
from nemo_dask.cli import main
from nemo_dask.compare import compare_hits
from nemo_dask.errors import InputError

from .conftest import DATA, edit_finemo_dir

REF = DATA / "finemo_out"
TOL = 5e-4
#: The region that stopped at another step on an Intel Xeon than on the AMD EPYC that recorded
#: tests/data (issue 13): its gap at step 56 was 4.9998e-4 there, 5.00031e-4 here.
INTEL_REGION = 162


def _edit_steps(regions: dict[int, tuple[int, float]]):
    """A QC edit: region -> (num_steps, dual_gap)."""
    def edit(qc: pl.DataFrame) -> pl.DataFrame:
        for r, (steps, gap) in regions.items():
            hit = pl.col("peak_id") == r
            qc = qc.with_columns(num_steps=pl.when(hit).then(steps).otherwise("num_steps"),
                                 dual_gap=pl.when(hit).then(gap).otherwise("dual_gap"))
        return qc
    return edit


def _scale(regions: list[int], factor: float, columns=("hit_coefficient",
                                                        "hit_coefficient_global")):
    def edit(hits: pl.DataFrame) -> pl.DataFrame:
        hit = pl.col("peak_id").is_in(regions)
        return hits.with_columns(pl.when(hit).then(pl.col(c) * factor).otherwise(pl.col(c))
                                 .alias(c) for c in columns)
    return edit


def _steps_and_coefs(regions: list[int], gap: float, factor: float = 1.09):
    """Regions stopped at step 30 with ``gap`` and coefficients ``factor`` times finemo's."""
    return dict(qc=_edit_steps({r: (30, gap) for r in regions}), hits=_scale(regions, factor))


def test_identical_runs_agree():
    res = compare_hits(REF, REF)
    assert res.agrees and res.reasons == []
    assert (res.n_a, res.n_b, res.n_shared, res.jaccard) == (1721, 1721, 1721, 1.0)
    assert res.n_regions == 350 and res.steps_differ == []
    assert all(v.max_all == 0 for v in res.values)


def test_parameters_that_differ_are_noted():
    res = compare_hits(REF, DATA / "finemo_out_hh")
    assert not res.agrees
    assert res.param_diffs == {"mode": ("pp", "hh")}
    assert "note: the runs' parameters differ: mode 'pp' (A) vs 'hh' (B)" in res.format()
    assert compare_hits(REF, REF).param_diffs == {}


def test_knife_edge_region_is_exempt_from_coefficients(tmp_path):
    b = edit_finemo_dir(REF, tmp_path / "b", **_steps_and_coefs([INTEL_REGION], TOL * (1 - 1e-4)))
    res = compare_hits(REF, b)
    assert res.agrees, res.format()
    assert res.knife_edge_regions == [INTEL_REGION]
    coef = res.value("hit_coefficient")
    assert coef.max_all == pytest.approx(0.09 / 1.09, rel=1e-4)  # reported, not held against it
    assert coef.max_strict == 0 and coef.n_strict == 1721 - 3
    assert f"peak_id {INTEL_REGION}: steps 145 (A) vs 30 (B)" in res.format()
    assert "knife-edge" in res.format()


def test_gap_just_outside_the_edge_is_a_disagreement(tmp_path):
    # 1.001e-3 x tol away: just outside the band.
    b = edit_finemo_dir(REF, tmp_path / "b",
                        **_steps_and_coefs([INTEL_REGION], TOL * (1 - 1.001e-3)))
    res = compare_hits(REF, b)
    assert not res.agrees
    assert res.knife_edge_regions == []
    assert any("not knife-edge" in r and str(INTEL_REGION) in r for r in res.reasons)
    assert any(r.startswith("hit_coefficient:") for r in res.reasons)


def test_gap_far_from_tol_is_a_disagreement(tmp_path):
    b = edit_finemo_dir(REF, tmp_path / "b", **_steps_and_coefs([INTEL_REGION], 3e-4))
    res = compare_hits(REF, b)
    assert not res.agrees and res.knife_edge_regions == []
    # Only the steps differ (coefficients equal): still not accepted.
    b2 = edit_finemo_dir(REF, tmp_path / "b2", qc=_edit_steps({INTEL_REGION: (30, 3e-4)}))
    res = compare_hits(REF, b2)
    assert not res.agrees and len(res.reasons) == 1 and "num_steps" in res.reasons[0]


def test_the_side_that_stopped_first_decides(tmp_path):
    # B ran longer (200 steps) and ended near tol, but A, which stopped first at 145 steps,
    # ended far from it: its stop was not a coin toss.
    b = edit_finemo_dir(REF, tmp_path / "b", qc=_edit_steps({INTEL_REGION: (200, TOL)}))
    assert not compare_hits(REF, b).agrees


def test_tolerance_comes_from_parameters_or_option(tmp_path):
    b = edit_finemo_dir(REF, tmp_path / "b", **_steps_and_coefs([INTEL_REGION], 1e-3 * 0.99995))
    assert not compare_hits(REF, b).agrees  # parameters.json says 5e-4
    assert compare_hits(REF, b, tol=1e-3).agrees


def test_similarity_and_importance_stay_strict_in_knife_edge_regions(tmp_path):
    for col in ("hit_similarity", "hit_importance", "hit_importance_sq"):
        def hits(h, col=col):
            return _scale([INTEL_REGION], 1.09)(_scale([INTEL_REGION], 1 + 5e-5, (col,))(h))
        b = edit_finemo_dir(REF, tmp_path / col, qc=_edit_steps({INTEL_REGION: (30, TOL)}),
                            hits=hits)
        res = compare_hits(REF, b)
        assert not res.agrees, col
        assert res.knife_edge_regions == [INTEL_REGION]
        assert [r.split(":")[0] for r in res.reasons] == [col]


def test_coefficients_outside_knife_edges_are_held_to_coef_rtol(tmp_path):
    b = edit_finemo_dir(REF, tmp_path / "b", hits=_scale([18], 1 + 2e-3, ("hit_coefficient",)))
    res = compare_hits(REF, b)
    assert not res.agrees
    n18 = _n_hits(18)
    assert res.value("hit_coefficient").n_beyond == n18
    assert compare_hits(REF, b, coef_rtol=3e-3).agrees
    assert compare_hits(REF, b, max_coef_outlier_share=n18 / 1721).agrees
    assert not compare_hits(REF, b, max_coef_outlier_share=(n18 - 1) / 1721).agrees
    small = edit_finemo_dir(REF, tmp_path / "small",
                            hits=_scale([18], 1 + 5e-4, ("hit_coefficient",)))
    assert compare_hits(REF, small).agrees


def _n_hits(region: int) -> int:
    return pl.read_csv(REF / "hits.tsv", separator="\t").filter(pl.col("peak_id") == region).height


def test_missing_hit_lowers_jaccard_and_fails(tmp_path):
    b = edit_finemo_dir(REF, tmp_path / "b", hits=lambda h: h.filter(
        ~((pl.col("peak_id") == 18) & (pl.col("start") == 2912))))
    res = compare_hits(REF, b)
    assert (res.n_a, res.n_b, res.n_shared) == (1721, 1720, 1720)
    assert res.jaccard == pytest.approx(1720 / 1721) and res.jaccard < 1
    assert not res.agrees and "hit sets differ" in res.reasons[0] and "18" in res.reasons[0]
    assert compare_hits(REF, b, min_jaccard=0.999).agrees


def test_hit_sets_may_differ_inside_knife_edge_regions(tmp_path):
    def hits(h: pl.DataFrame) -> pl.DataFrame:
        h = _scale([INTEL_REGION], 1.09)(h)
        return h.filter(~((pl.col("peak_id") == INTEL_REGION)
                          & (pl.col("motif_name") == "neg_patterns.pattern_0")))
    b = edit_finemo_dir(REF, tmp_path / "b", qc=_edit_steps({INTEL_REGION: (56, 4.9998e-4)}),
                        hits=hits)
    res = compare_hits(REF, b)
    assert res.agrees, res.format()
    assert res.jaccard < 1 and res.jaccard_strict == 1 and res.n_unshared_knife_edge == 1


def test_shared_hits_must_agree_in_coordinates(tmp_path):
    b = edit_finemo_dir(REF, tmp_path / "b", hits=lambda h: h.with_columns(
        end=pl.when(pl.col("peak_id") == 18).then(pl.col("end") + 1).otherwise("end")))
    res = compare_hits(REF, b)
    assert not res.agrees and res.n_field_mismatches == _n_hits(18)


def _knife_regions(n: int) -> list[int]:
    qc = pl.read_csv(REF / "peaks_qc.tsv", separator="\t")
    return qc.filter(pl.col("num_steps") > 40)["peak_id"].head(n).to_list()


@pytest.mark.parametrize("n,agrees", [(3, True), (4, False)])
def test_at_most_one_percent_of_regions_may_be_knife_edge(tmp_path, n, agrees):
    regions = _knife_regions(n)
    b = edit_finemo_dir(REF, tmp_path / "b", **_steps_and_coefs(regions, TOL))
    res = compare_hits(REF, b)
    assert sorted(res.knife_edge_regions) == sorted(regions)
    assert res.agrees is agrees  # 3.5 of 350 regions make 1 %
    if not agrees:
        assert res.reasons == ["4 of 350 regions are knife-edge (1.14% > 1.00%)"]
    assert compare_hits(REF, b, max_knife_edge_share=0).agrees is False


def test_hits_tsv_uses_the_qc_beside_it_if_any(tmp_path):
    b = edit_finemo_dir(REF, tmp_path / "b", **_steps_and_coefs([INTEL_REGION], TOL))
    res = compare_hits(REF / "hits.tsv", b / "hits.tsv")
    assert res.kind_a == "hits.tsv" and res.n_regions == 350
    assert res.agrees and res.knife_edge_regions == [INTEL_REGION]
    (tmp_path / "bare").mkdir()
    bare = tmp_path / "bare" / "hits.tsv"
    bare.write_bytes((b / "hits.tsv").read_bytes())
    res = compare_hits(REF / "hits.tsv", bare)
    assert res.n_regions is None
    assert not res.agrees  # no QC: no region can be shown to be knife-edge
    assert "not compared" in res.format()


def test_python_api_is_exported():
    assert nemo_dask.compare_hits is compare_hits
    assert "compare_hits" in nemo_dask.__all__ and "HitComparison" in nemo_dask.__all__


def test_bad_inputs_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        compare_hits(REF, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a nemo_dask output directory"):
        compare_hits(tmp_path / "empty", REF)
    (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="expected finemo's hits.tsv columns"):
        compare_hits(tmp_path / "x.tsv", REF)
    with pytest.raises(InputError, match="coef_rtol"):
        compare_hits(REF, REF, coef_rtol=-1)
    with pytest.raises(InputError, match="share between 0 and 1"):
        compare_hits(REF, REF, max_knife_edge_share=5)


def test_cli_exit_codes_and_figures(tmp_path, capsys):
    assert main(["compare-hits", str(REF), str(REF)]) == 0
    out = capsys.readouterr().out
    assert "hits: 1721 in A, 1721 in B, 1721 shared, Jaccard 1.000000" in out
    assert "verdict: AGREE" in out

    b = edit_finemo_dir(REF, tmp_path / "b", hits=_scale([18], 1 + 2e-3, ("hit_coefficient",)))
    assert main(["compare-hits", str(REF), str(b)]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("hit_coefficient "))
    assert float(line.split()[1]) == pytest.approx(2e-3 / (1 + 2e-3), rel=5e-3)  # max
    assert float(line.split()[3]) == 1e-3  # tolerance
    assert f"{_n_hits(18)} of 1721" in line
    assert "verdict: DIFFER" in out
    assert main(["compare-hits", str(REF), str(b), "--coef-rtol", "3e-3"]) == 0
    capsys.readouterr()

    assert main(["compare-hits", str(REF), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nemo-dask compare-hits: error:") and "nope" in err[0]


def test_simulated_intel_run_is_accepted_and_other_regressions_are_not(tmp_path, regions_npz,
                                                                        modisco_h5):
    """What the Intel Xeon of issue 13 computed for region 162, against the AMD recording.

    Region 162's gap at step 56 is 5.0003e-4 on the recording CPU and was 4.9998e-4 on the
    Intel one, which stopped there. Solving it here (exact: finemo's arithmetic) with a tolerance
    just above its step-56 gap gives that step's iterate (the Intel coefficients, 9 % off); the
    copy takes them with the Intel machine's gap. The same edit of a region whose gap is not at the edge must fail.
    """
    from nemo_dask.motifs import load_motifs
    from nemo_dask.params import SolverParams
    from nemo_dask.solver.stream import fit_block

    motifs = load_motifs(modisco_h5)

    def early_stop(region: int) -> tuple[int, dict[tuple[str, str, int], float]]:
        sl = slice(region, region + 1)
        res = fit_block(regions_npz["sequences"][sl], regions_npz["contributions"][sl], motifs,
                        params=SolverParams(convergence_tol=5.001e-4, exact=True))
        hits = res.hits.join(motifs.table.select("motif_id", "motif_name", "strand"),
                             on="motif_id")
        start = int(regions_npz["start"][region])
        coef = {(r["motif_name"], r["strand"], start + r["hit_start"]): r["hit_coefficient"]
                for r in hits.iter_rows(named=True)}
        return int(res.qc["num_steps"][0]), coef

    def intel_copy(region: int, gap: float, dst: Path) -> Path:
        steps, coef = early_stop(region)

        def hits(h: pl.DataFrame) -> pl.DataFrame:
            rows = h.with_row_index("_i").filter(pl.col("peak_id") == region)
            new = h["hit_coefficient"].to_numpy().copy()
            glob = h["hit_coefficient_global"].to_numpy().copy()
            for r in rows.iter_rows(named=True):
                c = coef[(r["motif_name"], r["strand"], r["start_untrimmed"])]
                glob[r["_i"]] *= c / new[r["_i"]]
                new[r["_i"]] = c
            return h.with_columns(hit_coefficient=new, hit_coefficient_global=glob)

        return edit_finemo_dir(REF, dst, qc=_edit_steps({region: (steps, gap)}), hits=hits)

    steps, coef = early_stop(INTEL_REGION)
    assert steps == 56 and len(coef) == 3
    intel = intel_copy(INTEL_REGION, 4.9998e-4, tmp_path / "intel")
    res = compare_hits(REF, intel)
    assert res.agrees, res.format()
    assert res.knife_edge_regions == [INTEL_REGION]
    assert 0.08 < res.value("hit_coefficient").max_all < 0.1  # the 9 % of issue 13
    # The tests before issue 13 (num_steps equal, coefficients within 1e-3) reject it.
    assert not compare_hits(REF, intel, knife_edge_frac=0).agrees

    # Another long-running region stopped early with a gap nowhere near tol: a regression.
    qc = pl.read_csv(REF / "peaks_qc.tsv", separator="\t")
    other = int(qc.filter((pl.col("num_steps") > 100) & (pl.col("peak_id") != INTEL_REGION)
                          & (pl.col("dual_gap") < 4e-4))["peak_id"][0])
    broken = edit_finemo_dir(REF, tmp_path / "broken",
                             **_steps_and_coefs([other], 3e-4, factor=np.float64(1.05)))
    res = compare_hits(REF, broken)
    assert not res.agrees and res.knife_edge_regions == []
    assert any(str(other) in r for r in res.reasons)


def _spread_qc(rng: np.random.Generator, n: int, spread: float):
    """Two runs' QC over ``n`` regions that stop together, their final gaps in
    (0.5 tol, tol] apart by up to ``spread`` x tol (the largest exactly)."""
    steps = rng.integers(50, 500, n)
    gap_a = TOL * rng.uniform(0.5, 1.0 - spread, n)
    gap_b = gap_a + TOL * spread * rng.uniform(0, 1, n)
    gap_b[0] = gap_a[0] + TOL * spread
    return steps, gap_a, steps.copy(), gap_b


def test_step_agreement_measures_the_band_from_regions_that_stop_together():
    """The band widens to the pair's rounding spread: how far the final gaps of the regions
    both runs stop at the same step lie apart (at lambda 0.05 finemo's batch 1 and 16 are up to
    0.1 x tol apart); a region whose first stopper's gap lies within it is knife-edge."""
    from nemo_dask.compare import step_agreement

    rng = np.random.default_rng(0)
    sa, ga, sb, gb = _spread_qc(rng, 100, 0.05)
    # Region 1 stops a step early in B with its gap 0.04 x tol under tol: within the spread.
    # Region 2 stops 100 steps early in A with its gap 0.2 x tol under tol: beyond it.
    sb[1], gb[1] = sa[1] - 1, TOL * 0.96
    sa[2], ga[2] = sb[2] - 100, TOL * 0.8
    res = step_agreement(sa, ga, sb, gb, TOL, TOL)
    assert res.spread == pytest.approx(0.05) and res.n_equal == 98
    assert res.edge_frac == pytest.approx(0.05)
    assert res.max_share == pytest.approx(0.5)  # 1 % at the 1e-3 floor, in proportion
    assert res.differ.tolist() == [1, 2] and res.knife_edge.tolist() == [True, False]
    fixed = step_agreement(sa, ga, sb, gb, TOL, TOL, measured_edge=False)
    assert fixed.edge_frac == 1e-3 and fixed.knife_edge.tolist() == [False, False]
    assert fixed.max_share == 0.01
    assert not step_agreement(sa, ga, sb, gb, TOL, TOL, knife_edge_frac=0).knife_edge.any()
    capped = step_agreement(sa, ga, sb, gb, TOL, TOL, max_edge_frac=0.03)
    assert capped.edge_frac == pytest.approx(0.03) and not capped.knife_edge.any()


def test_step_agreement_keeps_the_floor_when_most_regions_stop_apart():
    """Regions that stop together must be at least half of all for a measured band: a pair
    that disagrees on most regions' steps differs in kind, not in rounding."""
    from nemo_dask.compare import step_agreement

    rng = np.random.default_rng(1)
    sa, ga, sb, gb = _spread_qc(rng, 100, 0.05)
    sb[:51] += 1
    res = step_agreement(sa, ga, sb, gb, TOL, TOL)
    assert res.n_equal == 49 and res.spread is None and res.edge_frac == 1e-3
    # Other tolerances on the two sides: the gaps are not comparable, nothing is measured.
    assert step_agreement(sa, ga, sa, ga, TOL, 2 * TOL).spread is None


def test_compare_hits_reports_the_measured_band(tmp_path):
    """End to end on finemo's recorded run: spread the final gaps of 300 regions by up to
    0.02 x tol (equal steps) and stop 4 regions a step apart with their gaps 0.01 x tol from
    tol: knife-edge by the measured band (4 of 350 is within 20 %), not by the fixed one."""
    qc = pl.read_csv(REF / "peaks_qc.tsv", separator="\t")
    regions = _knife_regions(4)
    moved = qc.filter((pl.col("dual_gap") < TOL * 0.97) & ~pl.col("peak_id").is_in(regions)
                      )["peak_id"].head(300).to_list()
    assert len(regions) == 4 and len(moved) == 300

    def edit(q: pl.DataFrame) -> pl.DataFrame:
        q = q.with_columns(dual_gap=pl.when(pl.col("peak_id").is_in(moved))
                           .then(pl.col("dual_gap") + TOL * 0.02).otherwise("dual_gap"))
        return _edit_steps({r: (30, TOL * 0.99) for r in regions})(q)
    b = edit_finemo_dir(REF, tmp_path / "b", qc=edit)
    res = compare_hits(REF, b)
    assert res.edge.spread == pytest.approx(0.02, rel=1e-4), res.format()
    assert sorted(res.knife_edge_regions) == sorted(regions) and res.agrees, res.format()
    assert "rounding spread: final dual_gap differs by up to 0.02 × tol" in res.format()
    fixed = compare_hits(REF, b, measured_edge=False)
    assert not fixed.agrees and fixed.knife_edge_regions == []
    assert main(["compare-hits", str(REF), str(b), "--fixed-edge"]) == 1


def test_small_coefficients_are_judged_against_their_regions_largest(tmp_path):
    """A coefficient under 10 % of its region's largest is held to 1e-3 of 10 % of that
    largest (``coef_floor``), not of itself: the stop resolves a region's coefficients to one
    absolute accuracy. A large one is still held to 1e-3 of itself."""
    hits = pl.read_csv(REF / "hits.tsv", separator="\t")
    big = hits.group_by("peak_id").agg(pl.col("hit_coefficient").abs().max().alias("mx"))
    small = (hits.join(big, on="peak_id")
             .filter(pl.col("hit_coefficient").abs() < 0.02 * pl.col("mx"))
             .sort("peak_id").head(1))
    assert small.height == 1
    row = small.row(0, named=True)
    target = ((pl.col("peak_id") == row["peak_id"]) & (pl.col("start") == row["start"])
              & (pl.col("motif_name") == row["motif_name"]) & (pl.col("strand") == row["strand"]))

    def bump(factor: float):
        def edit(h: pl.DataFrame) -> pl.DataFrame:
            return h.with_columns(pl.when(target).then(pl.col(c) * factor).otherwise(pl.col(c))
                                  .alias(c) for c in ("hit_coefficient",
                                                      "hit_coefficient_global"))
        return edit
    b = edit_finemo_dir(REF, tmp_path / "b", hits=bump(1.02))  # 2 % of itself, < 4e-4 of 10 %
    assert compare_hits(REF, b).agrees
    assert not compare_hits(REF, b, coef_floor=0, max_coef_outlier_share=0).agrees
    c = edit_finemo_dir(REF, tmp_path / "c", hits=bump(1.5))  # 50 % of itself: > 1e-2 of 10 %
    assert not compare_hits(REF, c).agrees


def test_a_near_zero_hit_on_one_side_only_is_exempt(tmp_path):
    """A hit on one side only is a coefficient that is zero on the other: one within the
    coefficient tolerance of zero (1e-3 x 0.1 x its region's largest) is counted, not held
    against the hit sets (at lambda 0.05 a hit of 6e-8 x its region's largest was finemo's only,
    at the same step); a larger one still is."""
    hits = pl.read_csv(REF / "hits.tsv", separator="\t")
    first = hits.filter(pl.col("peak_id") == 18)
    largest = first["hit_coefficient"].abs().max()

    def add(frac: float):
        def edit(h: pl.DataFrame) -> pl.DataFrame:
            extra = first.head(1).with_columns(
                start=pl.col("start") + 3, end=pl.col("end") + 3,
                start_untrimmed=pl.col("start_untrimmed") + 3,
                end_untrimmed=pl.col("end_untrimmed") + 3,
                hit_coefficient=pl.lit(frac * largest),
                hit_coefficient_global=pl.col("hit_coefficient_global") * 0 + frac * largest)
            return pl.concat([h, extra.select(h.columns)])
        return edit
    tiny = compare_hits(REF, edit_finemo_dir(REF, tmp_path / "tiny", hits=add(5e-5)))
    assert tiny.agrees and tiny.n_unshared_near_zero == 1 and tiny.jaccard < 1, tiny.format()
    assert "near-zero" in tiny.format()
    big = compare_hits(REF, edit_finemo_dir(REF, tmp_path / "big", hits=add(2e-4)))
    assert not big.agrees and big.n_unshared_near_zero == 0
    assert any(r.startswith("hit sets differ") for r in big.reasons)
