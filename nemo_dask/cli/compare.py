"""``nemo-dask compare-hits A B``: do two hit callings agree under the parity rule?

The rule and its tolerances live in :mod:`nemo_dask.compare`; the defaults here are read from
:func:`nemo_dask.compare.compare_hits` so that the CLI, the Python API and the tests share them.
Exit status 0 when the callings agree, 1 when they do not, 2 on unusable inputs.
"""

from __future__ import annotations

import argparse
import inspect


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``compare-hits`` verb."""
    from ..compare import compare_hits

    defaults = {k: v.default for k, v in inspect.signature(compare_hits).parameters.items()}
    p = sub.add_parser(
        "compare-hits", help="check that two hit callings agree (e.g. nemo_dask and finemo)",
        description="Compare the hits of two runs: hits in each and shared, Jaccard, relative "
        "differences of coefficient, similarity and importance, regions whose num_steps differ "
        "and which of them are knife-edge (the duality gap of the side that stopped first lies "
        "within a hair of the tolerance, so the CPU's rounding decided the step). Exit 0 when "
        "they agree, 1 when not. A and B: a nemo_dask output directory, a finemo output "
        "directory, or a hits TSV (steps are then compared only if finemo's peaks_qc.tsv lies "
        "beside it).")
    p.add_argument("a", metavar="A", help="first run: nemo_dask or finemo output dir, or hits.tsv")
    p.add_argument("b", metavar="B", help="second run, the same kinds")
    opt = p.add_argument
    opt("--coef-rtol", type=float, default=defaults["coef_rtol"],
        help="max relative difference of hit_coefficient(_global) outside knife-edge regions "
        "(default %(default)g)")
    opt("--sim-rtol", type=float, default=defaults["sim_rtol"],
        help="max relative difference of hit_similarity (default %(default)g)")
    opt("--imp-rtol", type=float, default=defaults["imp_rtol"],
        help="max relative difference of hit_importance(_sq) (default %(default)g)")
    opt("--min-jaccard", type=float, default=defaults["min_jaccard"],
        help="min Jaccard index of the hits outside knife-edge regions (default %(default)g)")
    opt("--max-coef-outlier-share", type=float, default=defaults["max_coef_outlier_share"],
        help="share (0-1) of shared hits outside knife-edge regions allowed beyond --coef-rtol "
        "(default %(default)g)")
    opt("--coef-outlier-rtol", type=float, default=defaults["coef_outlier_rtol"],
        help="max relative difference of those outliers (default %(default)g)")
    opt("--coef-floor", type=float, default=defaults["coef_floor"],
        help="coefficients' relative differences are taken against at least this fraction of "
        "their region's largest coefficient (default %(default)g)")
    opt("--knife-edge-frac", type=float, default=defaults["knife_edge_frac"],
        help="a region is knife-edge when the final dual_gap of the side that stopped first is "
        "within this fraction of tol from tol (default %(default)g)")
    opt("--max-knife-edge-share", type=float, default=defaults["max_knife_edge_share"],
        help="max share (0-1) of regions that may be knife-edge at the --knife-edge-frac band; "
        "it grows in proportion to a measured band (default %(default)g)")
    opt("--fixed-edge", dest="measured_edge", action="store_false",
        help="keep the band at --knife-edge-frac instead of widening it to the pair's rounding "
        "spread (how far the final dual_gap differs in the regions both runs stopped at the "
        "same step; it grows as lambda falls)")
    opt("--max-edge-frac", type=float, default=defaults["max_edge_frac"],
        help="the widest band a measured rounding spread may give, as a fraction of tol "
        "(default %(default)g)")
    opt("--tol", type=float, default=None,
        help="convergence tolerance of both runs (default: each run's parameters.json, else "
        "finemo's 5e-4)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..compare import compare_hits

    res = compare_hits(
        args.a, args.b, coef_rtol=args.coef_rtol, sim_rtol=args.sim_rtol,
        imp_rtol=args.imp_rtol, min_jaccard=args.min_jaccard,
        max_coef_outlier_share=args.max_coef_outlier_share,
        coef_outlier_rtol=args.coef_outlier_rtol, coef_floor=args.coef_floor,
        knife_edge_frac=args.knife_edge_frac, max_knife_edge_share=args.max_knife_edge_share,
        measured_edge=args.measured_edge, max_edge_frac=args.max_edge_frac, tol=args.tol)
    print(res.format())
    return 0 if res.agrees else 1
