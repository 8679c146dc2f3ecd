"""``nemo-dask report``: finemo's report (tables, figures, report.html) from a call-hits output."""

from __future__ import annotations

import argparse

from .. import config


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb (defaults: dask config ``nemo_dask.report``)."""
    defaults = {k: config.get(f"report.{k}") for k in ("modisco-region-width", "regions-per-read")}
    p = sub.add_parser(
        "report",
        help="HTML report and tables of a call-hits output (as finemo report)",
        description="Write report.html, motif_report.tsv, motif_occurrences.tsv and, with -m, "
        "seqlets.tsv and seqlet_confusion.tsv: hit counts, TF-MoDISco seqlet recall, "
        "hit-averaged CWMs and hit distributions, computed with lazy scans of the dataset.",
    )
    p.add_argument(
        "-r",
        "--regions",
        required=True,
        help="the regions hits were called on: regions store or finemo regions.npz",
    )
    p.add_argument(
        "-H",
        "--hits",
        required=True,
        help="call-hits output directory (OUT); a finemo call-hits output directory "
        "is imported into OUT_DIR/finemo_dataset first",
    )
    p.add_argument("-o", "--out-dir", required=True, help="directory for the report")
    p.add_argument(
        "-m", "--modisco-h5", help="tfmodisco-lite H5; without it seqlet comparisons are left out"
    )
    p.add_argument(
        "-W",
        "--modisco-region-width",
        type=int,
        default=None,
        help="width of the windows TF-MoDISco ran on (default: the H5's recorded window_size, "
        f"which wins over -W; {defaults['modisco-region-width']} when the H5 records none)",
    )
    p.add_argument(
        "-n",
        "--no-recall",
        action="store_true",
        help="skip hit-by-seqlet comparisons (recall, missed seqlets, extra hits)",
    )
    p.add_argument(
        "--embed-images",
        action="store_true",
        help="embed figures in report.html (one self-contained file)",
    )
    p.add_argument(
        "--block-size",
        dest="regions_per_read",
        metavar="N",
        type=int,
        default=None,
        help="regions read at a time for hit-averaged CWMs; bounds memory (default "
        f"{defaults['regions-per-read']})",
    )
    p.add_argument("--max-qvalue", type=float, default=None, metavar="Q",
                   help="report only hits whose hit_qvalue is at most Q (a run with q-values, "
                   "or an export directory with hits_extra.tsv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report; prints where it is."""
    from ..errors import InputError
    from ..report import write_report

    # The flags' names in the messages (the API checks again, with its keyword names).
    if args.modisco_region_width is not None and args.modisco_region_width <= 0:
        raise InputError(
            f"-W/--modisco-region-width must be positive, got {args.modisco_region_width}"
        )
    if args.regions_per_read is not None and args.regions_per_read <= 0:
        raise InputError(f"--block-size must be positive, got {args.regions_per_read}")
    result = write_report(
        regions=args.regions,
        hits_dir=args.hits,
        out_dir=args.out_dir,
        modisco_h5=args.modisco_h5,
        modisco_region_width=args.modisco_region_width,
        compute_recall=not args.no_recall,
        embed_images=args.embed_images,
        regions_per_read=args.regions_per_read,
        max_qvalue=args.max_qvalue,
    )
    print(f"report of {len(result.motif_names)} motifs written to {args.out_dir}/report.html")
    return 0
