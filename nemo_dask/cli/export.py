"""``nemo-dask export``, ``collapse-hits`` and ``intersect-hits``: finemo's files and verbs.

Flags mirror finemo 0.41's (``-i``, ``-o``, ``-O``, ``-r``); defaults come from the API's
signatures so that the CLI and the Python API cannot disagree.
"""

from __future__ import annotations

import argparse
import inspect
import sys


def _default(func: object, name: str) -> object:
    return inspect.signature(func).parameters[name].default  # type: ignore[arg-type]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export``, ``collapse-hits`` and ``intersect-hits`` verbs."""
    from .. import config
    from ..finemo.postprocess import write_collapsed

    p = sub.add_parser(
        "export", help="write finemo's output files from a call-hits output directory",
        description="Write finemo 0.41's hits.tsv, hits_unique.tsv, hits.bed, peaks_qc.tsv, "
        "motif_data.tsv, motif_cwms.npy and parameters.json from the Parquet dataset of a "
        "call-hits run, sorting in bounded memory.")
    p.add_argument("-H", "--hits-dir", required=True,
                   help="call-hits output directory (OUT), or a finemo call-hits output "
                   "directory (its TSVs plain or compressed)")
    p.add_argument("-o", "--out-dir", required=True, help="directory for finemo's files")
    p.add_argument("--max-rows", type=int, default=None,
                   help="hits sorted in memory at once; bounds peak memory (default "
                   f"{config.get('export.max-rows')}, dask config nemo_dask.export.max-rows)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="export a run whose manifest lists unfinished blocks")
    p.add_argument("--labels", action="store_true",
                   help="hits.bed's name is the motif's label (see `nemo-dask annotate`) "
                   "instead of its name; hits.tsv and hits_unique.tsv keep finemo's columns "
                   "either way (an annotated run's labels are in hits_extra.tsv, its matches "
                   "in motif_matches.tsv)")
    add_max_qvalue(p)
    p.set_defaults(func=_run_export)

    unique_help = ("for directory inputs, read hits_unique (default: all hits, as finemo's "
                   "hits.tsv)")
    p = sub.add_parser(
        "collapse-hits", help="mark the best hit among overlapping hits (finemo's collapse-hits)",
        description="Add finemo's is_primary column: among hits overlapping by at least "
        "overlap_frac of their mean length, finemo's sweep keeps one as primary.")
    p.add_argument("-i", "--hits", required=True,
                   help="finemo hits.tsv / hits_unique.tsv, a finemo output directory, or a "
                   "nemo_dask call-hits output directory")
    p.add_argument("-o", "--out-path", required=True, help="output .tsv (adds is_primary); - for standard output (see README, Outputs)")
    p.add_argument("-O", "--overlap-frac", type=float,
                   default=_default(write_collapsed, "overlap_frac"),
                   help="minimum overlap as a fraction of the two hits' mean length "
                   "(default %(default)s)")
    p.add_argument("-u", "--unique", action="store_true", help=unique_help)
    add_max_qvalue(p)
    p.set_defaults(func=_run_collapse)

    p = sub.add_parser(
        "intersect-hits", help="hits common to several runs (finemo's intersect-hits)",
        description="Inner-join hits of several runs on finemo's key columns; columns of later "
        "inputs are suffixed with their position (_1, _2, ...).")
    p.add_argument("-i", "--hits", required=True, nargs="+",
                   help="two or more hits inputs (TSVs, finemo or nemo_dask output directories)")
    p.add_argument("-o", "--out-path", required=True,
                   help="output .tsv; - for standard output (see README, Outputs)")
    p.add_argument("-r", "--relaxed", action="store_true",
                   help="join on chr, untrimmed coordinates, motif name and strand only")
    p.add_argument("-u", "--unique", action="store_true", help=unique_help)
    add_max_qvalue(p)
    p.set_defaults(func=_run_intersect)


def add_max_qvalue(p: argparse.ArgumentParser) -> None:
    """``--max-qvalue Q``: only hits whose q-value (``hit_qvalue``) is at most Q."""
    p.add_argument("--max-qvalue", type=float, default=None, metavar="Q",
                   help="keep only hits whose hit_qvalue is at most Q (a run with q-values, "
                   "or an export's hits_extra.tsv / hits_unique_extra.tsv)")


def _run_export(args: argparse.Namespace) -> int:
    from ..finemo.export import export

    res = export(args.hits_dir, args.out_dir, max_rows=args.max_rows,
                 allow_incomplete=args.allow_incomplete, labels=args.labels,
                 max_qvalue=args.max_qvalue)
    print(f"exported {res.n_hits} hits ({res.n_unique} unique) and {res.n_regions} regions "
          f"to {res.dest}")
    return 0


def _run_collapse(args: argparse.Namespace) -> int:
    from ..finemo.postprocess import write_collapsed

    path = write_collapsed(args.hits, args.out_path, args.overlap_frac, unique=args.unique,
                           max_qvalue=args.max_qvalue)
    _report_written(path)
    return 0


def _run_intersect(args: argparse.Namespace) -> int:
    from ..finemo.postprocess import write_intersection

    path = write_intersection(args.hits, args.out_path, args.relaxed, unique=args.unique,
                              max_qvalue=args.max_qvalue)
    _report_written(path)
    return 0


def _report_written(path: object) -> None:
    from ..storage.outputs import is_stdout

    # With -o - (or /dev/stdout) the table is on standard output: keep it clean for pipes.
    if is_stdout(path):  # type: ignore[arg-type]
        print("wrote the table to standard output", file=sys.stderr)
    else:
        print(f"wrote {path}")
