"""Do two hit callings agree? The one rule for comparing hits with finemo (or with ourselves).

finemo stops a region when its duality gap falls to ``convergence_tol``. The gap is a sum over
the region's window, so the CPU's last bits of rounding decide on which step a region whose gap
lands within a hair of the tolerance stops: two correct runs on two CPUs can stop such a region
at steps 56 and 145 and report coefficients that differ by several percent. Everything else
(which region, motif, position and strand a hit has, its similarity and importance) does not
depend on when the optimiser stopped. The rule, used by ``nemo-dask compare-hits`` and by the
tests:

- **Hits** are matched on ``(peak_id, motif_name, strand, start)``. Shared hits must also agree
  in ``end``, ``start_untrimmed``, ``end_untrimmed``, ``chr`` and ``peak_name``.
- **Knife-edge region**: both sides have per-region QC, the region's ``num_steps`` differ, and
  the side that stopped first has a final ``dual_gap`` within ``band * tol`` of its tolerance
  ``tol`` (``convergence_tol`` from that side's ``parameters.json``, else ``tol``); ``band`` is
  ``knife_edge_frac`` or the pair's measured rounding spread (below).
  That side stopped because the gap crossed the tolerance by less than rounding noise; the other
  side's gap at that step was just above it, so it ran on. (Issue 13: region 162 of the test
  fixture has gap 5.00031e-4 at step 56 on an AMD EPYC and 4.9998e-4 on an Intel Xeon; the
  band of 1e-3 x tol = 5e-7 is ten times that shift and 1/1000 of the tolerance.) Only the side
  that stopped first is asked, a narrower rule than "either side": a run that went on past a
  gap near the tolerance proves nothing. A region whose steps differ for any other reason is a
  disagreement.
- In knife-edge regions the optimiser's iterate differs, so what depends on it is exempt:
  ``hit_coefficient`` and ``hit_coefficient_global``, and whether a hit exists at all (a hit is
  a non-zero coefficient of the final iterate, so a small one can appear or vanish with a
  different stopping step; region 162's 3 hits happened to survive both stops). Such hits are
  counted and reported. ``hit_similarity``, ``hit_importance`` and ``hit_importance_sq`` of
  their shared hits stay under the strict tolerances: they are computed from the inputs, not
  from the iterate.
- **The band is measured, not guessed.** Rounding moves a run's gap at a given step by an
  amount that grows as lambda falls (dense iterates, hundreds of steps): on a held-out-like set
  the final gaps of regions that both runs stop at the same step differ by up to 3e-3 x tol at
  lambda 0.7 and 0.1 x tol at 0.05, between finemo 0.41 at batch 1 and at batch 16 as between
  finemo and nemo_dask. A region whose first stopper's gap lies nearer ``tol`` than that
  cannot be told apart from rounding. So the band is ``knife_edge_frac`` (the floor) widened to
  the largest ``|gap_A - gap_B| / tol`` over the regions both sides converged in at the same
  step (the pair's own *rounding spread*), at most ``max_edge_frac`` (0.5). It is measured
  only when those regions are at least half the compared ones (a pair that disagrees on most
  regions' steps differs in kind, and keeps the floor); ``knife_edge_frac=0`` turns knife-edges
  off, and ``measured_edge=False`` keeps the fixed band.
- At most ``max_knife_edge_share`` of the compared regions may be knife-edge (default 1 % at the
  floor band, growing in proportion to the band, since the share of regions whose gap lands in
  it does); more means the runs differ in kind, not in rounding.
- Everywhere else: the same hits (Jaccard of the hits outside knife-edge regions at least
  ``min_jaccard``, default 1; a hit on one side only is a coefficient that is zero on the other,
  so one within the coefficient tolerance of zero, ``coef_rtol x coef_floor`` x its region's
  largest, is exempt and counted: at lambda 0.05 a coefficient of 6e-8 x its region's largest
  was a hit in finemo and zero in nemo_dask, at the same step), the same ``num_steps``,
  coefficients within ``coef_rtol`` (at most ``max_coef_outlier_share`` of those shared hits
  beyond it, default 0.2 %, and those within ``coef_outlier_rtol``, default 1e-2), similarity
  and importance within ``sim_rtol`` and ``imp_rtol``. The outliers are finemo's own: an
  ill-conditioned coefficient (two overlapping, similar motifs sharing a site) moves by more
  than 1e-3 under any change of rounding, e.g. finemo 0.41 at batch 1
  against batch 16 on the test fixture (1 of 1714 hits outside knife-edge regions, 1.7e-3),
  or at batch 16 against 32 on a held-out-like set (up to 5.3e-3).

Relative differences are ``|a - b| / max(|a|, |b|)`` (0 where both are 0), symmetric in A and B;
for coefficients the denominator is at least ``coef_floor`` (0.1) x the largest coefficient of
the region (over both sides' hits). The stop is a gap over the whole region, so it resolves the
region's coefficients to one absolute accuracy, not each to its own size: at lambda 0.05 (hh,
about 1,600 hits per region of a held-out-like set) finemo at batch 1 against batch 16 moves 1 %
of the coefficients of the regions it stops together by more than 1e-3 of themselves, nearly
all of them under 1 % of their region's largest (median 2e-5), and none by more than 2.2e-4 of
the region's largest. At the
usual lambdas a region has a few hits of like size and the floor changes little: nemo_dask
against finemo's recorded fixture run (another CPU), 1 of 1711 shared coefficients beyond
1e-3 without it (1.7e-3), 0 with it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from .dataset import HITS_DIR, MOTIFS_FILE, PARAMS_FILE, QC_DIR
from .errors import InputError
from .finemo.directory import finemo_file, read_json_file
from .finemo.formats import FINEMO_NEUTRAL_PARAMETERS, FINEMO_QC_DTYPES, QC_FILE
from .finemo.read import finemo_qc, load_hits, read_tsv
from .params import SolverParams

#: finemo 0.41's default ``convergence_tol`` (used when a side has no parameters.json).
DEFAULT_TOL: float = SolverParams.convergence_tol
#: The knife-edge band's floor, as a fraction of tol, and the share of regions it may hold.
KNIFE_EDGE_FRAC: float = 1e-3
MAX_KNIFE_EDGE_SHARE: float = 0.01
#: The widest band a measured rounding spread may give (a safety limit: half the tolerance).
MAX_EDGE_FRAC: float = 0.5
#: Columns that identify a hit.
HIT_KEY: tuple[str, ...] = ("peak_id", "motif_name", "strand", "start")
#: Columns of a shared hit that must be equal (they follow from the key and the peak table).
_EQUAL_COLUMNS: tuple[str, ...] = ("end", "start_untrimmed", "end_untrimmed", "chr", "peak_name")
#: Compared value columns -> the tolerance that governs them.
_VALUE_COLUMNS: dict[str, str] = {
    "hit_coefficient": "coef", "hit_coefficient_global": "coef",
    "hit_similarity": "sim",
    "hit_importance": "imp", "hit_importance_sq": "imp",
}


@dataclass(frozen=True)
class Side:
    """One side of a comparison, as read from disk."""

    path: Path
    kind: str  #: "nemo_dask", "finemo" or "hits.tsv"
    hits: pl.DataFrame
    qc: pl.DataFrame | None  #: peak_id, num_steps, dual_gap (None without QC)
    tol: float | None  #: convergence_tol of its parameters.json
    params: dict[str, Any] = field(default_factory=dict)  #: its parameters.json, if any


@dataclass(frozen=True)
class ValueDiff:
    """Relative differences of one column over shared hits."""

    column: str
    max_all: float  #: over every shared hit
    p999_all: float  #: 99.9th percentile over every shared hit
    max_strict: float  #: over the shared hits this column's rule applies to
    n_beyond: int  #: of those, how many exceed the tolerance
    n_strict: int
    rtol: float


@dataclass(frozen=True)
class KnifeEdge:
    """A region whose step counts differ, with what decides whether it is knife-edge."""

    peak_id: int
    steps_a: int
    steps_b: int
    gap_a: float
    gap_b: float
    knife_edge: bool


@dataclass
class HitComparison:
    """What :func:`compare_hits` found; ``agrees`` is the verdict, ``reasons`` why not."""

    a: str
    b: str
    kind_a: str
    kind_b: str
    n_a: int
    n_b: int
    n_shared: int
    jaccard: float
    jaccard_strict: float  #: over hits outside knife-edge regions
    values: list[ValueDiff]
    n_field_mismatches: int
    n_regions: int | None  #: regions compared on QC (None when a side has no QC)
    regions_only_a: int
    regions_only_b: int
    steps_differ: list[KnifeEdge]
    n_unshared_knife_edge: int  #: hits present on one side only, in knife-edge regions
    #: hits present on one side only elsewhere whose coefficient is within the coefficient
    #: tolerance of zero (``coef_rtol x coef_floor x`` the region's largest): exempt
    n_unshared_near_zero: int
    tol_a: float
    tol_b: float
    options: dict[str, Any]
    param_diffs: dict[str, tuple[Any, Any]] = field(default_factory=dict)  #: key -> (A, B)
    edge: StepAgreement | None = None  #: the knife-edge band used (None without QC)
    agrees: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def knife_edge_regions(self) -> list[int]:
        """peak_ids of the knife-edge regions."""
        return [r.peak_id for r in self.steps_differ if r.knife_edge]

    def value(self, column: str) -> ValueDiff:
        """The differences of ``column`` (e.g. ``"hit_coefficient"``)."""
        return next(v for v in self.values if v.column == column)

    def format(self) -> str:
        """A human-readable report (what ``nemo-dask compare-hits`` prints)."""
        o = self.options
        lines = [
            f"A: {self.a} ({self.kind_a})",
            f"B: {self.b} ({self.kind_b})",
            f"hits: {self.n_a} in A, {self.n_b} in B, {self.n_shared} shared, "
            f"Jaccard {self.jaccard:.6f}"
            + (f" ({self.jaccard_strict:.6f} outside knife-edge regions and near-zero "
               "hits)" if self.knife_edge_regions or self.n_unshared_near_zero else ""),
            f"{'relative difference':<24}{'max':>10}{'99.9th pct':>12}{'tolerance':>11}"
            "  beyond",
        ]
        for v in self.values:
            exempt = ""
            if _VALUE_COLUMNS[v.column] == "coef":
                exempt = f" (floor {o['coef_floor']:g} × region's largest"
                if self.knife_edge_regions:
                    exempt += f"; knife-edge regions exempt, max outside them {v.max_strict:.2e}"
                exempt += ")"
            lines.append(f"{v.column:<24}{v.max_all:>10.2e}{v.p999_all:>12.2e}{v.rtol:>11.0e}"
                         f"  {v.n_beyond} of {v.n_strict}{exempt}")
        if self.n_field_mismatches:
            lines.append(f"shared hits with other {'/'.join(_EQUAL_COLUMNS)}: "
                         f"{self.n_field_mismatches}")
        if self.n_regions is None:
            lines.append("regions: num_steps not compared (a side has no peaks_qc.tsv or qc/)")
        else:
            extra = "".join(f", {n} only in {s}" for n, s in
                            ((self.regions_only_a, "A"), (self.regions_only_b, "B")) if n)
            n_ke = len(self.knife_edge_regions)
            e = self.edge
            lines.append(f"regions: {self.n_regions} in both{extra}; num_steps differ in "
                         f"{len(self.steps_differ)}, knife-edge {n_ke} "
                         f"(at most {e.max_share:.1%} allowed; "
                         f"tol {_tols(self.tol_a, self.tol_b)}, edge "
                         f"±{e.edge_frac:.3g} × tol)")
            if e.spread is not None:
                lines.append(f"rounding spread: final dual_gap differs by up to "
                             f"{e.spread:.3g} × tol in the {e.n_equal} regions both runs "
                             f"stopped at the same step (edge floor {o['knife_edge_frac']:g}, "
                             f"widest {o['max_edge_frac']:g})")
            for r in self.steps_differ[:20]:
                lines.append(f"  peak_id {r.peak_id}: steps {r.steps_a} (A) vs {r.steps_b} (B), "
                             f"dual_gap {r.gap_a:.6g} vs {r.gap_b:.6g} -> "
                             + ("knife-edge" if r.knife_edge else "NOT knife-edge"))
            if len(self.steps_differ) > 20:
                lines.append(f"  ... and {len(self.steps_differ) - 20} more")
            if self.n_unshared_knife_edge:
                lines.append(f"hits on one side only, in knife-edge regions (exempt): "
                             f"{self.n_unshared_knife_edge}")
        if self.n_unshared_near_zero:
            lines.append(f"hits on one side only elsewhere, their coefficient within "
                         f"{o['coef_rtol']:g} × {o['coef_floor']:g} × the region's largest of "
                         f"zero (exempt): {self.n_unshared_near_zero}")
        if self.param_diffs:
            lines.append("note: the runs' parameters differ: " + ", ".join(
                f"{k} {a!r} (A) vs {b!r} (B)" for k, (a, b) in self.param_diffs.items()))
        if self.agrees:
            lines.append("verdict: AGREE")
        else:
            lines.append("verdict: DIFFER")
            lines.extend(f"  - {r}" for r in self.reasons)
        return "\n".join(lines)

    __str__ = format


def _tols(a: float, b: float) -> str:
    return f"{a:g}" if a == b else f"{a:g} (A), {b:g} (B)"


def compare_hits(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    coef_rtol: float = 1e-3,
    sim_rtol: float = 1e-5,
    imp_rtol: float = 1e-5,
    min_jaccard: float = 1.0,
    max_coef_outlier_share: float = 0.002,
    coef_outlier_rtol: float = 1e-2,
    coef_floor: float = 0.1,
    knife_edge_frac: float = KNIFE_EDGE_FRAC,
    max_knife_edge_share: float = MAX_KNIFE_EDGE_SHARE,
    measured_edge: bool = True,
    max_edge_frac: float = MAX_EDGE_FRAC,
    tol: float | None = None,
) -> HitComparison:
    """Compare two hit callings under the rule in this module's docstring.

    Parameters
    ----------
    a, b : path
        Each a nemo_dask output directory (``hits/``, ``qc/``, ...), a finemo call-hits output
        directory (``hits.tsv``, ``peaks_qc.tsv``, ``parameters.json``) or a hits TSV. A TSV's
        run is its directory's ``peaks_qc.tsv`` and ``parameters.json`` when they exist (as
        beside finemo's ``hits_unique.tsv``); without them, step counts are not compared and no
        region can be knife-edge.
    coef_rtol : float
        Largest relative difference of ``hit_coefficient`` and ``hit_coefficient_global``
        outside knife-edge regions.
    sim_rtol, imp_rtol : float
        Largest relative difference of ``hit_similarity``, and of ``hit_importance`` and
        ``hit_importance_sq``, over all shared hits.
    min_jaccard : float
        Smallest Jaccard index (shared / union) of the hits outside knife-edge regions.
    max_coef_outlier_share : float
        Share (0-1) of the shared hits outside knife-edge regions that may exceed ``coef_rtol``
        (finemo's own batch sizes move ~0.1 % of coefficients by a little more than 1e-3).
    coef_outlier_rtol : float
        Largest relative difference of those outliers.
    coef_floor : float
        A coefficient's relative difference is taken against at least this fraction of the
        largest coefficient of its region (both sides' hits): the optimiser's stop resolves a
        region's coefficients to one absolute accuracy, not each to its own size.
    knife_edge_frac : float
        A region is knife-edge when its steps differ and the side that stopped first has
        ``|dual_gap - tol| <= band * tol``; ``band`` is at least this (0: no knife-edges).
    max_knife_edge_share : float
        Largest share (0-1) of the compared regions that may be knife-edge at the floor band;
        it grows in proportion to a measured band (see :func:`step_agreement`).
    measured_edge : bool
        Widen the band to the pair's measured rounding spread (this module's docstring).
    max_edge_frac : float
        The widest band a measurement may give.
    tol : float, optional
        The convergence tolerance of both sides; default: each side's ``convergence_tol`` from
        its ``parameters.json``, else finemo's default 5e-4.

    Returns
    -------
    HitComparison
        Counts, differences, the regions whose steps differ, ``agrees`` and ``reasons``.

    Raises
    ------
    InputError
        A path is neither kind of output nor a readable hits TSV, or an option is out of range.
    """
    options = dict(coef_rtol=coef_rtol, sim_rtol=sim_rtol, imp_rtol=imp_rtol,
                   min_jaccard=min_jaccard, max_coef_outlier_share=max_coef_outlier_share,
                   coef_outlier_rtol=coef_outlier_rtol, coef_floor=coef_floor,
                   knife_edge_frac=knife_edge_frac, max_knife_edge_share=max_knife_edge_share,
                   measured_edge=measured_edge, max_edge_frac=max_edge_frac, tol=tol)
    _check_options(options)
    sa, sb = read_side(a), read_side(b)
    tol_a = tol if tol is not None else (sa.tol if sa.tol is not None else DEFAULT_TOL)
    tol_b = tol if tol is not None else (sb.tol if sb.tol is not None else DEFAULT_TOL)
    reasons: list[str] = []
    steps = _compare_steps(sa, sb, tol_a, tol_b, options, reasons)
    knife = [r.peak_id for r in steps.differ if r.knife_edge]
    sets = _compare_hit_sets(sa.hits, sb.hits, knife, min_jaccard, coef_rtol * coef_floor,
                             reasons)
    values, n_field = _compare_values(sets.shared, {"coef": coef_rtol, "sim": sim_rtol,
                                                    "imp": imp_rtol},
                                      max_coef_outlier_share, coef_outlier_rtol, coef_floor,
                                      reasons)
    return HitComparison(
        a=str(a), b=str(b), kind_a=sa.kind, kind_b=sb.kind, n_a=sa.hits.height,
        n_b=sb.hits.height, n_shared=sets.shared.height, jaccard=sets.jaccard,
        jaccard_strict=sets.jaccard_strict, values=values, n_field_mismatches=n_field,
        n_regions=steps.n_regions, regions_only_a=steps.only_a, regions_only_b=steps.only_b,
        steps_differ=steps.differ, edge=steps.edge, n_unshared_knife_edge=sets.n_unshared_knife,
        n_unshared_near_zero=sets.n_unshared_near_zero,
        tol_a=tol_a, tol_b=tol_b, options=options, param_diffs=_param_diffs(sa, sb),
        agrees=not reasons, reasons=reasons)


def _check_options(options: dict[str, float | None]) -> None:
    for name, value in options.items():
        if value is None:
            continue
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} must be a non-negative number, got {value}")
        if name in ("min_jaccard", "max_coef_outlier_share", "max_knife_edge_share",
                    "max_edge_frac", "coef_floor") and value > 1:
            raise InputError(f"{name} is a share between 0 and 1, got {value}")


#: A measured band needs the equal-step converged regions to be at least this share of the
#: compared ones: a pair that stops most regions at different steps differs in kind.
MIN_EQUAL_SHARE: float = 0.5


@dataclass(frozen=True)
class StepAgreement:
    """Which regions' step counts differ and which of those are knife-edge.

    ``differ`` indexes the compared regions; ``knife_edge`` is one flag per entry of it."""

    differ: np.ndarray
    knife_edge: np.ndarray
    edge_frac: float  #: the band used, as a fraction of tol
    max_share: float  #: the share (0-1) of regions that may be knife-edge
    spread: float | None  #: measured rounding spread (fraction of tol), None if not measured
    n_equal: int  #: converged regions with equal steps it was measured on


def step_agreement(steps_a: np.ndarray, gaps_a: np.ndarray, steps_b: np.ndarray,
                   gaps_b: np.ndarray, tol_a: float, tol_b: float, *,
                   knife_edge_frac: float = KNIFE_EDGE_FRAC,
                   max_knife_edge_share: float = MAX_KNIFE_EDGE_SHARE,
                   measured_edge: bool = True,
                   max_edge_frac: float = MAX_EDGE_FRAC) -> StepAgreement:
    """Classify the regions whose ``num_steps`` differ between two runs of the same regions.

    Parameters
    ----------
    steps_a, steps_b : (N,) int arrays
        Each run's ``num_steps`` per region, in the same region order.
    gaps_a, gaps_b : (N,) float arrays
        Each run's final ``dual_gap`` (finemo's gap per position; NaN where unknown).
    tol_a, tol_b : float
        Each run's ``convergence_tol``.
    knife_edge_frac, max_knife_edge_share, measured_edge, max_edge_frac
        As for :func:`compare_hits`.

    Returns
    -------
    StepAgreement
        The differing regions, their knife-edge flags (the run that stopped first has
        ``|gap - tol| <= edge_frac * tol``), the band and share used, and the rounding spread:
        ``max |gap_a - gap_b| / tol`` over the regions both runs converged in (gap <= tol) at
        the same step, used as the band when ``measured_edge``, ``knife_edge_frac > 0``, the
        tolerances are equal and those regions are at least ``MIN_EQUAL_SHARE`` of all.
    """
    steps_a, steps_b = np.asarray(steps_a), np.asarray(steps_b)
    gaps_a = np.asarray(gaps_a, dtype=np.float64)
    gaps_b = np.asarray(gaps_b, dtype=np.float64)
    equal = (steps_a == steps_b) & (gaps_a <= tol_a) & (gaps_b <= tol_b)  # NaN: False
    n_equal = int(equal.sum())
    spread = None
    if tol_a == tol_b and n_equal and n_equal >= MIN_EQUAL_SHARE * steps_a.size:
        spread = float(np.max(np.abs(gaps_a[equal] - gaps_b[equal]))) / tol_a
    edge = knife_edge_frac
    if measured_edge and knife_edge_frac > 0 and spread is not None:
        edge = max(knife_edge_frac, min(spread, max_edge_frac))
    # The share of regions whose gap lands within the band grows with the band.
    share = (min(1.0, max_knife_edge_share * edge / knife_edge_frac) if knife_edge_frac > 0
             else max_knife_edge_share)
    differ = np.flatnonzero(steps_a != steps_b)
    first_a = steps_a[differ] < steps_b[differ]
    gap = np.where(first_a, gaps_a[differ], gaps_b[differ])
    tol = np.where(first_a, tol_a, tol_b)
    knife = np.abs(gap - tol) <= edge * tol  # NaN: not knife-edge
    return StepAgreement(differ, knife, edge, share, spread, n_equal)


class _Steps(NamedTuple):
    differ: list[KnifeEdge]
    n_regions: int | None
    only_a: int
    only_b: int
    edge: StepAgreement | None


def _compare_steps(sa: Side, sb: Side, tol_a: float, tol_b: float, options: dict[str, Any],
                   reasons: list[str]) -> _Steps:
    """Regions whose step counts differ, each knife-edge or not (:func:`step_agreement`);
    appends to ``reasons`` what fails."""
    if sa.qc is None or sb.qc is None:
        return _Steps([], None, 0, 0, None)
    q = sa.qc.join(sb.qc, on="peak_id", how="inner", suffix="_b").sort("peak_id")
    n_regions = q.height
    only_a = sa.qc.height - q.height
    only_b = sb.qc.height - q.height
    if only_a or only_b:
        reasons.append(f"the region sets differ: {only_a} regions only in A, {only_b} only "
                       "in B")
    gap_a = q["dual_gap"].fill_null(float("nan")).to_numpy()
    gap_b = q["dual_gap_b"].fill_null(float("nan")).to_numpy()
    steps_a, steps_b = q["num_steps"].to_numpy(), q["num_steps_b"].to_numpy()
    agree = step_agreement(
        steps_a, gap_a, steps_b, gap_b, tol_a, tol_b,
        **{k: options[k] for k in ("knife_edge_frac", "max_knife_edge_share", "measured_edge",
                                   "max_edge_frac")})
    peak = q["peak_id"].to_numpy()
    steps_differ = [KnifeEdge(int(peak[i]), int(steps_a[i]), int(steps_b[i]), float(gap_a[i]),
                              float(gap_b[i]), bool(k))
                    for i, k in zip(agree.differ, agree.knife_edge, strict=True)]
    not_edge = [r.peak_id for r in steps_differ if not r.knife_edge]
    if not_edge:
        reasons.append(f"num_steps differ in {len(not_edge)} regions that are not "
                       f"knife-edge: peak_id {_ids(not_edge)}")
    n_knife = len(steps_differ) - len(not_edge)
    if n_regions and n_knife > agree.max_share * n_regions + 1e-9:
        reasons.append(f"{n_knife} of {n_regions} regions are knife-edge "
                       f"({n_knife / n_regions:.2%} > {agree.max_share:.2%})")
    return _Steps(steps_differ, n_regions, only_a, only_b, agree)


class _HitSets(NamedTuple):
    shared: pl.DataFrame
    jaccard: float
    jaccard_strict: float
    n_unshared_knife: int
    n_unshared_near_zero: int


def _compare_hit_sets(ha: pl.DataFrame, hb: pl.DataFrame, knife: list[int], min_jaccard: float,
                      near_zero: float, reasons: list[str]) -> _HitSets:
    """The shared hits (by :data:`HIT_KEY`) and the Jaccard indices, over all hits and outside
    knife-edge regions and near-zero one-sided hits (a hit on one side only is a coefficient
    that is zero on the other: exempt when the coefficient rule would pass it, within
    ``near_zero`` x its region's largest of zero); appends to ``reasons`` what fails."""
    key = list(HIT_KEY)
    for side, h in (("A", ha), ("B", hb)):
        dup = h.select(key).is_duplicated().sum()
        if dup:
            reasons.append(f"{side} has {dup} hits with the same {'/'.join(key)}")
    joined = ha.join(hb, on=key, how="full", coalesce=True, suffix="_b", nulls_equal=True)
    in_a = pl.col("hit_coefficient").is_not_null()
    in_b = pl.col("hit_coefficient_b").is_not_null()
    in_knife = pl.col("peak_id").is_in(pl.Series(knife, dtype=pl.Int64).implode())
    joined = joined.with_columns(
        _in_a=in_a, _in_b=in_b, _knife=in_knife,
        # Each coefficient column's largest magnitude in the region, over both sides' hits.
        **{f"_scale_{c}": pl.max_horizontal(pl.col(c).abs(), pl.col(f"{c}_b").abs())
           .max().over("peak_id") for c, g in _VALUE_COLUMNS.items() if g == "coef"})
    one_sided = ~(pl.col("_in_a") & pl.col("_in_b"))
    coef = pl.coalesce("hit_coefficient", "hit_coefficient_b").abs()
    joined = joined.with_columns(_near_zero=one_sided & ~pl.col("_knife")
                                 & (coef <= near_zero * pl.col("_scale_hit_coefficient")))
    shared = joined.filter(pl.col("_in_a") & pl.col("_in_b"))
    n_union = joined.height
    jaccard = shared.height / n_union if n_union else 1.0
    strict_all = joined.filter(~pl.col("_knife") & ~pl.col("_near_zero"))
    strict_shared = strict_all.filter(pl.col("_in_a") & pl.col("_in_b")).height
    jaccard_strict = strict_shared / strict_all.height if strict_all.height else 1.0
    n_unshared_knife = joined.filter(pl.col("_knife") & one_sided).height
    n_near_zero = int(joined["_near_zero"].sum())
    if jaccard_strict < min_jaccard:
        miss_b = strict_all.filter(~pl.col("_in_b")).height
        miss_a = strict_all.filter(~pl.col("_in_a")).height
        where = strict_all.filter(~(pl.col("_in_a") & pl.col("_in_b")))["peak_id"].unique()
        reasons.append(f"hit sets differ outside knife-edge regions (near-zero hits aside): "
                       f"{miss_b} hits only in A, "
                       f"{miss_a} only in B (Jaccard {jaccard_strict:.6f} < {min_jaccard}), "
                       f"in peak_id {_ids(sorted(where.to_list()))}")
    return _HitSets(shared, jaccard, jaccard_strict, n_unshared_knife, n_near_zero)


def _compare_values(shared: pl.DataFrame, rtols: dict[str, float], max_coef_outlier_share: float,
                    coef_outlier_rtol: float, coef_floor: float,
                    reasons: list[str]) -> tuple[list[ValueDiff], int]:
    """The shared hits' exact fields and relative value differences against their tolerances
    (coefficients outside knife-edge regions only, relative to at least ``coef_floor`` x their
    region's largest); appends to ``reasons`` what fails."""
    n_field = 0
    if shared.height:
        mism = pl.any_horizontal([~pl.col(c).eq_missing(pl.col(f"{c}_b")) for c in _EQUAL_COLUMNS])
        n_field = shared.filter(mism).height
        if n_field:
            reasons.append(f"{n_field} shared hits differ in {'/'.join(_EQUAL_COLUMNS)}")
    values: list[ValueDiff] = []
    knife_mask = shared["_knife"].to_numpy() if shared.height else np.zeros(0, bool)
    for col, group in _VALUE_COLUMNS.items():
        floor = (coef_floor * shared[f"_scale_{col}"].to_numpy() if group == "coef"
                 else None)
        rel = _rel_diff(shared[col].to_numpy(), shared[f"{col}_b"].to_numpy(), floor)
        strict = rel[~knife_mask] if group == "coef" else rel
        rtol = rtols[group]
        beyond = int(np.count_nonzero(~(strict <= rtol)))  # NaN counts as beyond
        values.append(ValueDiff(
            column=col, max_all=_max(rel),
            p999_all=float(np.percentile(rel, 99.9)) if rel.size else 0.0,
            max_strict=_max(strict), n_beyond=beyond, n_strict=int(strict.size), rtol=rtol))
        # The 1e-9 keeps a share given as k / n from rounding to just under k hits.
        allowed = math.floor(max_coef_outlier_share * strict.size + 1e-9) if group == "coef" else 0
        if beyond > allowed:
            what = "outside knife-edge regions " if group == "coef" else ""
            reasons.append(f"{col}: {beyond} of {strict.size} shared hits {what}differ by more "
                           f"than {rtol:g} relative (max {_max(strict):.3g})")
        elif group == "coef" and beyond and not _max(strict) <= max(rtol, coef_outlier_rtol):
            reasons.append(f"{col}: {beyond} of {strict.size} shared hits outside knife-edge "
                           f"regions differ by more than {rtol:g} relative, up to "
                           f"{_max(strict):.3g} (outliers may reach {coef_outlier_rtol:g})")
    return values, n_field


def read_side(source: str | os.PathLike[str]) -> Side:
    """Read the hits, QC and tolerance of one side (see :func:`compare_hits` for the kinds).

    Raises
    ------
    InputError
        ``source`` is missing, or a directory of neither kind, or a file that is not a hits TSV.
    """
    from .storage.urls import is_url, localize, remote_input

    source = localize(source)
    if is_url(source):
        # Read eagerly from a local copy (a directory's files, or the TSV's parent's files).
        text = str(source).rstrip("/")
        from .storage.urls import filesystem

        fs, root = filesystem(text)
        if fs.isfile(root):
            parent, _, name = text.rpartition("/")
            with remote_input(parent, "hits input") as local:
                side = read_side(Path(local) / name)
        else:
            with remote_input(text, "hits input") as local:
                side = read_side(local)
        return replace(side, path=text)  # type: ignore[arg-type]
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a nemo_dask or finemo output directory "
                         "or a hits.tsv")
    tol = None
    params: dict[str, Any] = {}
    qc: pl.DataFrame | None = None
    if path.is_dir() and (path / HITS_DIR).is_dir():
        kind = "nemo_dask"
        for needed in (QC_DIR, MOTIFS_FILE):
            if not (path / needed).exists():
                raise InputError(f"{path} has hits/ but no {needed}; it is not a complete "
                                 "nemo_dask output directory (rerun call-hits into it)")
        qc = finemo_qc(path).collect()
    else:
        # A finemo directory, or a hits TSV with (when finemo wrote it there) the run's
        # peaks_qc.tsv and parameters.json beside it, e.g. finemo_out/hits_unique.tsv.
        kind = "finemo" if path.is_dir() else "hits.tsv"
        run_dir = path if path.is_dir() else path.parent
        qc_file = finemo_file(run_dir, QC_FILE)  # plain or compressed
        if qc_file is not None:
            qc = read_tsv(qc_file, FINEMO_QC_DTYPES, kind=QC_FILE)
    hits = load_hits(path).drop("count").collect()
    params_file = finemo_file(path if path.is_dir() else path.parent, PARAMS_FILE)
    if qc is not None and params_file is not None:
        params = read_json_file(params_file)
        if params.get("convergence_tol") is not None:
            tol = float(params["convergence_tol"])
    if qc is not None:
        qc = qc.select(pl.col("peak_id").cast(pl.Int64), "num_steps",
                       pl.col("dual_gap").cast(pl.Float64))
    # One key dtype on both sides, whatever reader produced it.
    hits = hits.with_columns(pl.col("peak_id").cast(pl.Int64), pl.col("start").cast(pl.Int64))
    return Side(path=path, kind=kind, hits=hits, qc=qc, tol=tol, params=params)


#: parameters.json keys that change no hit, and nemo_dask's own record.
_NEUTRAL_PARAMS = FINEMO_NEUTRAL_PARAMETERS | {"nemo_dask"}


def _param_diffs(a: Side, b: Side) -> dict[str, tuple[Any, Any]]:
    """Hit-changing parameters both runs record with different values (a note, not a verdict)."""
    keys = [k for k in a.params if k in b.params and k not in _NEUTRAL_PARAMS]
    return {k: (a.params[k], b.params[k]) for k in keys if a.params[k] != b.params[k]}


def _rel_diff(a: np.ndarray, b: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
    """``|a - b| / max(|a|, |b|, floor)``, 0 where ``a == b``."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    if floor is not None:
        scale = np.maximum(scale, floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(diff == 0, 0.0, diff / scale)


def _max(x: np.ndarray) -> float:
    return float(np.max(x)) if x.size else 0.0


def _ids(ids: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


__all__ = ("DEFAULT_TOL", "HIT_KEY", "HitComparison", "KnifeEdge", "ValueDiff", "compare_hits",
           "read_side")
