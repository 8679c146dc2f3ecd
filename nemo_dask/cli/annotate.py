"""``nemo-dask annotate``: TOMTOM matches and labels for an existing run's motifs; the match
options shared with ``call-hits --annotate`` are defined here once."""

from __future__ import annotations

import argparse

from .. import config

DATABASE_HELP = ("a MEME motif file, or jaspar[:RELEASE[:COLLECTION[:TAX_GROUP]]] for a JASPAR "
                 "release pyjaspar ships (no network; `jaspar` = "
                 f"{config.defaults('annotate')['jaspar-release']} "
                 f"{config.defaults('annotate')['jaspar-collection']} "
                 f"{config.defaults('annotate')['jaspar-tax-group']})")


def add_match_arguments(group: argparse._ArgumentGroup, *, verb: bool = False) -> None:
    """The options of the motif match (defaults: dask config ``nemo_dask.annotate``).

    ``--match-background`` is also ``--background`` for the ``annotate`` verb (``verb``); in
    call-hits ``--background`` names the background regions of the q-values' null."""
    d = config.defaults("annotate")
    group.add_argument("--top-k", type=int, default=None, metavar="K",
                       help=f"matches kept per motif (default {d['top-k']})")
    group.add_argument("--label-qvalue", type=float, default=None, metavar="Q",
                       help="label a motif with its best match when its q-value <= Q "
                       f"(default {d['qvalue']})")
    group.add_argument("--match-ppm", choices=("hcwm", "sequence"), default=None,
                       help="pattern PPM compared: hcwm = softmax of the trimmed hypothetical "
                       "CWM, scale fitted to the seqlets' bases; sequence = the seqlets' base "
                       f"frequencies (default {d['ppm']})")
    group.add_argument("--match-trim", type=float, default=None, metavar="T",
                       help="query window: positions whose total |CWM| >= T x the maximum "
                       f"(default {d['trim-threshold']})")
    names = ("--match-background", "--background") if verb else ("--match-background",)
    group.add_argument(*names, dest="match_background", default=None, metavar="A,C,G,T",
                       help="base frequencies for the softmax and empty columns (default "
                       "uniform)")


def match_options_from_args(args: argparse.Namespace):  # noqa: ANN201
    """A MatchOptions from the parsed options of :func:`add_match_arguments`."""
    from ..errors import InputError
    from ..matching.annotate import MatchOptions

    background = None
    if args.match_background is not None:
        try:
            background = tuple(float(x) for x in args.match_background.split(","))
        except ValueError:
            raise InputError(f"--match-background {args.match_background!r}: expected 4 "
                             "comma-separated frequencies A,C,G,T") from None
    return MatchOptions(top_k=args.top_k, qvalue=args.label_qvalue, ppm=args.match_ppm,
                        trim_threshold=args.match_trim, background=background)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``annotate`` verb."""
    p = sub.add_parser(
        "annotate", help="add TOMTOM matches and motif labels to a run's motif table",
        description="Compare each motif of a call-hits run with a motif database (TOMTOM, as "
        "memelite implements it) and write its best matches and its label (e.g. "
        "'pos_patterns.pattern_3 (SOX2)') into OUT/motifs.parquet; nothing else of OUT changes. "
        "Exports, tracks and the report then show the labels. Needs "
        "pip install 'nemo_dask[names]'.")
    p.add_argument("-H", "--hits-dir", required=True, help="call-hits output directory (OUT)")
    p.add_argument("database", metavar="DB", help=DATABASE_HELP)
    p.add_argument("-m", "--modisco-h5", default=None,
                   help="the run's tfmodisco-lite H5 (default: the one its parameters.json "
                   "records)")
    add_match_arguments(p.add_argument_group("matching"), verb=True)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..matching.annotate import annotate
    from . import show_warnings_briefly

    show_warnings_briefly()
    res = annotate(args.hits_dir, args.database, modisco_h5=args.modisco_h5,
                   options=match_options_from_args(args))
    print_labels(res.motifs, res.database)
    print(f"wrote {res.out / 'motifs.parquet'}")
    return 0


def print_labels(motifs, database: str) -> None:  # noqa: ANN001
    """One line per pattern: its label and best match (id, q-value)."""
    forward = motifs.filter(motifs["strand"] == "+")
    print(f"motif matches against {database}:")
    for row in forward.iter_rows(named=True):
        best = (f"{row['match_id'][0]} {row['match_name'][0]} q={row['match_qvalue'][0]:.2g}"
                if row["match_id"] else "no match")
        print(f"  {row['motif_label']}    best: {best}")
