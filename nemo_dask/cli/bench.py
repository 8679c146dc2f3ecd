"""``nemo-dask bench``: solver throughput against finemo 0.41, or call-hits' speed on clusters
of several sizes (``--workers``); printed, never asserted."""

from __future__ import annotations

import argparse


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` verb."""
    p = sub.add_parser("bench", help="time the solver against finemo 0.41 (needs finemo)",
                       description="Run nemo_dask's solver and finemo's fit_contribs on the same "
                       "regions in one process and print regions/s and their ratio.")
    p.add_argument("-r", "--regions", required=True, help="regions.npz or regions store")
    p.add_argument("-m", "--modisco-h5", required=True, help="tfmodisco-lite H5 file")
    p.add_argument("-M", "--mode", default="pp", help="pp, ph, hp or hh (default pp)")
    p.add_argument("--repeat", type=int, default=1, help="tile the regions this many times")
    p.add_argument("-b", "--batch-sizes", type=_ints, default=None,
                   help="nemo_dask batch sizes, comma-separated (default: call-hits' default, "
                   "16 per torch thread on CPU; on CUDA, what half the GPU's free memory holds)")
    p.add_argument("--finemo-batch-sizes", type=_ints, default=[16, 64, 256],
                   help="finemo batch sizes, comma-separated (default 16,64,256)")
    p.add_argument("-d", "--device", default="cpu",
                   help="cpu, cuda or cuda:N (default cpu); both tools run there")
    p.add_argument("--exact", action="store_true",
                   help="time nemo_dask's exact step (finemo's dense transposed convolution)")
    p.add_argument("--motifs", type=int, default=None, dest="n_motifs",
                   help="a motif set of this many motifs (both strands), made from the H5's "
                   "patterns and blends of two of them (e.g. 20, 60, 100)")
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
    import torch

    from ..bench.solver import format_rows, run_bench

    rows = run_bench(args.regions, args.modisco_h5, mode=args.mode, repeat=args.repeat,
                     batch_sizes=args.batch_sizes, finemo_batch_sizes=args.finemo_batch_sizes,
                     device=args.device, threads=args.threads, exact=args.exact,
                     n_motifs=args.n_motifs)
    m = f", {args.n_motifs} motifs" if args.n_motifs else ""
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, mode {args.mode}, "
          f"{rows[0].regions} regions{m}{', exact' if args.exact else ''}")
    print(format_rows(rows))
    return 0


def _run_workers(args: argparse.Namespace) -> int:
    from ..bench.workers import format_workers_rows, run_workers_bench
    from ..errors import InputError

    if min(args.workers) < 1:
        raise InputError("--workers: every cluster size must be at least 1")
    threads = args.threads or 1
    rows = run_workers_bench(args.regions, args.modisco_h5, args.workers, mode=args.mode,
                             repeat=args.repeat, cluster=args.cluster,
                             threads_per_worker=threads, block_size=args.block_size,
                             in_process=args.in_process)
    print(f"cluster {args.cluster}, {threads} thread(s) per worker, mode {args.mode}; "
          "every cluster size wrote the same hits")
    print(format_workers_rows(rows))
    return 0
