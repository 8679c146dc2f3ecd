"""finemo against itself under a change of rounding, beside nemo_dask against finemo.

For each lambda and mode, solves the same regions with finemo 0.41's ``fit_contribs`` at batch
sizes 1, 16 and 32 (the batch changes the convolutions' rounding and nothing else) and with
nemo_dask's default CPU solver, all at one torch thread in this process, and prints for each
pair: the regions whose ``num_steps`` differ, how many of them are knife-edge by compare-hits'
rule (:func:`nemo_dask.compare.step_agreement`, measured band), the pair's rounding spread
(the largest difference of final duality gaps over the regions both stop at the same step, as a
fraction of tol) and the Jaccard index of the hit sets. This is the README's low-lambda table
("Solver parity and speed")::

    python benchmarks/make_heldout_like.py /tmp/ho
    python benchmarks/rounding_spread.py /tmp/ho/r3000.npz /tmp/ho/modisco10.h5 -n 96 \\
        -l 0.05,0.2,0.7 -M pp,hh

It prints figures and asserts nothing. At lambda 0.05 a cell takes minutes (finemo at batch 1
is the slowest run).
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import polars as pl
import torch

from nemo_dask.bench.matrix import cell_motifs
from nemo_dask.bench.solver import load_arrays
from nemo_dask.compare import step_agreement
from nemo_dask.motifs import load_motifs
from nemo_dask.params import MotifParams, SolverParams
from nemo_dask.solver.stream import fit_block

FINEMO_BATCHES = (1, 16, 32)
PAIRS = (("finemo b1", "finemo b16"), ("finemo b16", "finemo b32"),
         ("nemo_dask", "finemo b16"), ("nemo_dask", "finemo b1"))


def _finemo(motifs, mp: MotifParams, seqs, contribs, batch: int):
    from finemo.hitcaller import fit_contribs

    p = SolverParams()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hits, qc = fit_contribs(motifs.cwms, contribs, seqs, motifs.trim_masks,
                                mp.use_hypothetical, motifs.lambdas, p.step_size_max,
                                p.step_size_min, p.sqrt_transform, p.convergence_tol,
                                p.max_steps, batch, p.step_adjust, p.post_filter,
                                torch.device("cpu"), False)
    qc = qc.sort("peak_id")
    return (qc["num_steps"].to_numpy(), qc["dual_gap"].to_numpy(),
            set(hits.select("peak_id", "motif_id", "hit_start").iter_rows()))


def _ours(motifs, mp: MotifParams, seqs, contribs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fit_block(seqs, contribs, motifs, device=torch.device("cpu"),
                        params=SolverParams(use_hypothetical=mp.use_hypothetical))
    qc = out.qc.sort("region")
    return (qc["num_steps"].to_numpy(), qc["dual_gap"].to_numpy(),
            set(out.hits.select("region", "motif_id", "hit_start").iter_rows()))


def run(regions: str, h5: str, n: int, lambdas: list[float], modes: list[str],
        n_motifs: int | None) -> pl.DataFrame:
    """One row per (lambda, mode, pair); see the module docstring."""
    torch.set_num_threads(1)
    seqs, contribs = load_arrays(regions)
    seqs, contribs = seqs[:n], contribs[:n]
    tol = SolverParams.convergence_tol
    rows = []
    for lam, mode in itertools.product(lambdas, modes):
        mp = MotifParams(mode=mode, lambda_default=lam)
        motifs = cell_motifs(load_motifs(h5, mp), n_motifs, lam)
        runs = {f"finemo b{b}": _finemo(motifs, mp, seqs, contribs, b) for b in FINEMO_BATCHES}
        runs["nemo_dask"] = _ours(motifs, mp, seqs, contribs)
        for a, b in PAIRS:
            (sa, ga, ka), (sb, gb, kb) = runs[a], runs[b]
            agree = step_agreement(sa, ga, sb, gb, tol, tol)
            rows.append(dict(
                lam=lam, mode=mode, pair=f"{a} vs {b}", regions=int(sa.size),
                steps_differ=int(agree.differ.size), knife_edge=int(agree.knife_edge.sum()),
                spread=agree.spread, jaccard=len(ka & kb) / len(ka | kb) if ka | kb else 1.0,
                mean_steps=float(sa.mean())))
            print(f"lambda {lam:g} {mode} {a} vs {b}: steps differ in {agree.differ.size} of "
                  f"{sa.size} ({int(agree.knife_edge.sum())} knife-edge at "
                  f"±{agree.edge_frac:.3g} x tol), rounding spread "
                  f"{agree.spread if agree.spread is None else f'{agree.spread:.3g}'} x tol, "
                  f"Jaccard {rows[-1]['jaccard']:.5f}", flush=True)
    return pl.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("regions", help="regions.npz (e.g. from make_heldout_like.py)")
    ap.add_argument("modisco_h5")
    ap.add_argument("-n", type=int, default=96, help="first N regions (default 96)")
    ap.add_argument("-l", "--lambda", dest="lambdas", default="0.05,0.2,0.7",
                    help="comma-separated lambdas (default 0.05,0.2,0.7)")
    ap.add_argument("-M", "--mode", dest="modes", default="pp,hh", help="modes (default pp,hh)")
    ap.add_argument("--motifs", type=int, default=None,
                    help="motif-set size (the H5's, then blends), as nemo-dask bench --motifs")
    args = ap.parse_args()
    table = run(args.regions, args.modisco_h5, args.n,
                [float(x) for x in args.lambdas.split(",")], args.modes.split(","), args.motifs)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
        print(table)


if __name__ == "__main__":
    main()
