"""``nemo-dask tracks``: genome-browser tracks (bigBed of hits, bigWig per motif) of a run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``tracks`` verb."""
    from ..tracks import LABEL_BY, SCORES

    p = sub.add_parser(
        "tracks", help="write a bigBed of the hits and a bigWig of hit coefficients per motif",
        description="Write DIR/hits.bb (the unique hits of hits.bed as BED6+4 with a 0-1000 "
        "score and the fields motif_name, hit_coefficient, hit_similarity, hit_importance) and "
        "DIR/<motif>.bw (per base, the sum of hit_coefficient_global over the motif's hits "
        "covering it). Chromosome sizes come from --chrom-sizes, --fasta, or the regions store "
        "(stores converted from a FASTA record them). OUT and DIR may be paths or fsspec URLs.")
    p.add_argument("-H", "--hits-dir", required=True, help="call-hits output directory (OUT)")
    p.add_argument("-o", "--out-dir", required=True, help="directory for the tracks")
    p.add_argument("--score", choices=SCORES, default=None,
                   help="BED score: similarity = round(1000 * hit_similarity); coefficient = "
                   "round(1000 * hit_coefficient_global / the run's largest); clipped to 0-1000; "
                   "qvalue = min(1000, round(-100 log10 hit_qvalue)) (default: qvalue for a "
                   "run with q-values, else similarity)")
    p.add_argument("--label-by", choices=LABEL_BY, default="match",
                   help="bigBed name and bigWig file names: match = the motif's label, its "
                   "name and best TOMTOM match (see `nemo-dask annotate`; the name when none); "
                   "pattern = finemo's motif name (default %(default)s)")
    p.add_argument("--max-qvalue", type=float, default=None, metavar="Q",
                   help="only hits whose hit_qvalue is at most Q (runs with q-values)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--chrom-sizes", default=None,
                   help="UCSC chrom.sizes file (name TAB length) of the genome")
    g.add_argument("-f", "--fasta", default=None,
                   help="the genome FASTA (its .fai index gives the sizes)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..tracks import write_tracks

    res = write_tracks(args.hits_dir, args.out_dir, score=args.score,
                       chrom_sizes=args.chrom_sizes, fasta=args.fasta, label_by=args.label_by,
                       max_qvalue=args.max_qvalue)
    print(f"wrote {res.bigbed} ({res.n_hits} hits) and {len(res.bigwigs)} bigWig file(s) to "
          f"{res.dest}")
    return 0
