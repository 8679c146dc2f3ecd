"""``nemo-dask bench``: solver throughput against finemo 0.41, or call-hits' speed on clusters
of several sizes (``--workers``); printed, never asserted."""

from __future__ import annotations

import argparse

import numpy as np


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t]


def _modes(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` verb."""
    p = sub.add_parser("bench", help="time the solver against finemo 0.41 (needs finemo)",
                       description="Run nemo_dask's solver and finemo's fit_contribs on the same "
                       "regions in one process and print regions/s and their ratio.")
    p.add_argument("-r", "--regions", required=True, help="regions.npz or regions store")
    p.add_argument("-m", "--modisco-h5", required=True, help="tfmodisco-lite H5 file")
    p.add_argument("-M", "--mode", type=_modes, default=None,
                   help="pp, ph, hp or hh, or several comma-separated (default pp; with "
                   "--matrix pp,hh)")
    p.add_argument("--repeat", type=int, default=1, help="tile the regions this many times")
    p.add_argument("-n", "--max-regions", type=int, default=None,
                   help="time only the first N regions (after --repeat)")
    p.add_argument("-b", "--batch-sizes", type=_ints, default=None,
                   help="nemo_dask batch sizes, comma-separated (default: call-hits' default: on "
                   "CPU 16 regions per torch thread, fewer when memory is short; on CUDA, what "
                   "half the GPU's free memory holds)")
    p.add_argument("--finemo-batch-sizes", type=_ints, default=None,
                   help="finemo batch sizes, comma-separated; its best is compared (default "
                   "16,32 on CPU, 2000,8000 on CUDA)")
    p.add_argument("-d", "--device", default="cpu",
                   help="cpu, cuda or cuda:N (default cpu); both tools run there")
    p.add_argument("--finemo-tf32", action="store_true",
                   help="on CUDA, time finemo with torch's default TF32 convolutions (its "
                   "out-of-the-box setting) instead of IEEE float32 as nemo_dask runs; its hits "
                   "then differ by TF32 rounding")
    p.add_argument("--exact", action="store_true",
                   help="time nemo_dask's exact step (finemo's dense transposed convolution)")
    p.add_argument("--motifs", type=_ints, default=None, dest="n_motifs",
                   help="motif sets of these sizes (both strands; comma-separated), made from "
                   "the H5's patterns and blends of two of them (e.g. 20,60,150)")
    p.add_argument("-l", "--lambda", type=_floats, default=None, dest="lambdas",
                   help="lambdas to time, comma-separated (default 0.7)")
    p.add_argument("--width", type=_ints, default=None, dest="widths",
                   help="region widths to time, comma-separated: the centre of each region, "
                   "or consecutive regions joined end to end (default: the regions' own)")
    p.add_argument("--matrix", action="store_true",
                   help="the whole grid: lambda 0.3,0.5,0.7,1.0 x motifs 20,60,150 x modes "
                   "pp,hh, and widths 500,2000 at lambda 0.7 (-l, --motifs, -M, --width "
                   "replace its axes)")
    p.add_argument("--rounds", type=int, default=1,
                   help="time each cell this many times, the tools interleaved; medians are "
                   "compared (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's; with --workers, threads per worker, 1)")
    w = p.add_argument_group("cluster scaling (instead of the finemo comparison)")
    w.add_argument("--workers", type=_ints, default=None,
                   help="time call-hits on an embedded cluster of each of these sizes, "
                   "comma-separated (e.g. 1,2), against the in-process solver")
    w.add_argument("--cluster", choices=("local", "cuda"), default="local",
                   help="embedded cluster kind for --workers (default local)")
    w.add_argument("--block-size", type=int, default=None,
                   help="regions per task (default: call-hits' default)")
    w.add_argument("--no-in-process", dest="in_process", action="store_false",
                   help="skip the in-process run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table."""
    if args.workers:
        return _run_workers(args)
    import sys

    import torch

    from ..bench.matrix import FINEMO_BATCHES, format_cells, matrix_cells, run_cell
    from ..bench.solver import check_device, load_arrays
    from ..errors import InputError

    dev = check_device(args.device)
    try:
        import finemo.hitcaller  # noqa: F401
    except ImportError:
        raise InputError("the benchmark compares with finemo: pip install finemo==0.41") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rounds < 1:
        raise InputError("--rounds must be at least 1")
    if args.matrix:
        kw = {k: v for k, v in (("lambdas", args.lambdas), ("motif_counts", args.n_motifs),
                                ("widths", args.widths)) if v}
        if args.mode:
            kw["modes"] = args.mode
        cells = matrix_cells(**kw)
    else:
        from ..bench.matrix import Cell

        cells = [Cell(mode, m, lam, w) for mode in (args.mode or ["pp"])
                 for m in (args.n_motifs or [None]) for lam in (args.lambdas or [0.7])
                 for w in (args.widths or [None])]
    seqs, contribs = load_arrays(args.regions, args.repeat)
    if args.max_regions:
        seqs, contribs = seqs[:args.max_regions], contribs[:args.max_regions]
    finemo_batches = args.finemo_batch_sizes or FINEMO_BATCHES[dev.type]
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {seqs.shape[0]} "
          f"regions of {seqs.shape[-1]}, finemo batches {','.join(map(str, finemo_batches))}"
          f"{', exact' if args.exact else ''}; rates are regions/s, medians of {args.rounds} "
          f"round(s)", flush=True)
    results = []
    for k, cell in enumerate(cells):
        res = run_cell(cell, args.modisco_h5, seqs, contribs, finemo_batches=finemo_batches,
                       batch_sizes=args.batch_sizes or [None], device=args.device,
                       rounds=args.rounds, exact=args.exact, finemo_tf32=args.finemo_tf32)
        results.append(res)
        rows = format_cells([res]).splitlines()
        if k == 0:
            print(rows[0])
        print(rows[1], flush=True)
        if len(res.finemo) > 1 or len(res.ours) > 1:
            detail = ", ".join([f"finemo b{b} {r:.1f}" for b, r in res.finemo.items()]
                               + [f"nemo_dask b{b or 'default'} {r:.1f}"
                                  for b, r in res.ours.items()])
            print(f"     {detail}", file=sys.stdout, flush=True)
    ratios = [r.ratio for r in results]
    if len(results) > 1:
        print(f"ratio: min {min(ratios):.2f}x, median {float(np.median(ratios)):.2f}x over "
              f"{len(results)} cells; jaccard min {min(r.jaccard for r in results):.4f}")
    return 0


def _run_workers(args: argparse.Namespace) -> int:
    from ..bench.workers import format_workers_rows, run_workers_bench
    from ..errors import InputError

    if min(args.workers) < 1:
        raise InputError("--workers: every cluster size must be at least 1")
    threads = args.threads or 1
    rows = run_workers_bench(args.regions, args.modisco_h5, args.workers, mode=(args.mode or ["pp"])[0],
                             repeat=args.repeat, cluster=args.cluster,
                             threads_per_worker=threads, block_size=args.block_size,
                             in_process=args.in_process)
    print(f"cluster {args.cluster}, {threads} thread(s) per worker, mode {(args.mode or ['pp'])[0]}; "
          "every cluster size wrote the same hits")
    print(format_workers_rows(rows))
    return 0
