"""``nemo-dask convert <format>``: finemo's inputs -> a regions store (finemo's extract-regions-*).

One subcommand per input format, with finemo's flags (-p, -C, -w, -c, -s, -a, -f, -b) and
defaults read from the API functions, so the CLI and the API cannot disagree.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

_FORMATS = {
    "npz": ("convert_npz", "finemo's own regions.npz (from `finemo extract-regions-*`)"),
    "chrombpnet-h5": ("convert_chrombpnet_h5",
                      "ChromBPNet contribution H5 files (raw/seq, shap/seq)"),
    "bpnet-h5": ("convert_bpnet_h5", "BPNet / tf-atlas H5 files (input_seqs, hyp_scores)"),
    "modisco": ("convert_modisco", "tfmodisco-lite .npy/.npz one-hot sequences and attributions"),
    "bigwig": ("convert_bigwig", "FASTA + bigWig(s) of projected contributions + narrowPeak"),
    "intervals": ("convert_intervals", "FASTA + bigWig(s) of projected contributions over "
                  "intervals of any width (BED, chrom.sizes or the whole genome), tiled into "
                  "overlapping windows"),
}


def _default(func_name: str, param: str) -> Any:
    from ..regions import convert

    return inspect.signature(getattr(convert, func_name)).parameters[param].default


def register(subparsers: Any) -> None:
    """Add the ``convert`` verb and its format subcommands."""
    parser = subparsers.add_parser(
        "convert", help="convert finemo inputs into a chunked Zarr regions store",
        description="Convert finemo's inputs into a regions store (chunked Zarr v3) that "
                    "`nemo-dask call-hits` reads. Streams chunk by chunk: memory is bounded by "
                    "a chunk, not by the number of regions.")
    formats = parser.add_subparsers(dest="format", metavar="FORMAT")
    formats.required = True
    for fmt, (func_name, help_text) in _FORMATS.items():
        p = formats.add_parser(fmt, help=help_text, description=f"Convert {help_text}.",
                               aliases=["modisco-fmt"] if fmt == "modisco" else [])
        _format_args(p, fmt, func_name)
        _common_args(p, fmt, func_name)
        p.set_defaults(func=run, convert_func=func_name)


def _format_args(p: argparse.ArgumentParser, fmt: str, func_name: str) -> None:
    if fmt == "npz":
        p.add_argument("-r", "--regions", required=True, dest="regions_npz",
                       help="finemo's regions.npz")
        p.add_argument("-p", "--peaks", default=None,
                       help="narrowPeak file (plain or gzipped), one row per region in order: "
                       "gives the regions coordinates, replacing any in the file (finemo's "
                       "call-hits -p)")
        p.add_argument("-C", "--chrom-order", default=None,
                       help="file whose first column orders chromosomes (chr_id); others "
                       "follow in order of appearance in -p")
        return
    if fmt == "intervals":
        p.add_argument("-f", "--fasta", required=True, help="genome FASTA (.fai made if absent)")
        p.add_argument("-b", "--bigwigs", required=True, nargs="+",
                       help="one or more bigWigs of projected contributions (averaged)")
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("-i", "--intervals", default=None,
                           help="BED of intervals (chr, start, end, optional name; plain or "
                           "compressed); overlapping ones are merged")
        where.add_argument("-g", "--chrom-sizes", default=None,
                           help="chrom.sizes file: each listed chromosome, whole")
        where.add_argument("--whole-genome", action="store_true",
                           help="every chromosome of the FASTA, whole")
        p.add_argument("-w", "--region-width", type=int,
                       default=_default(func_name, "region_width"),
                       help="window width (even; default %(default)s)")
        p.add_argument("--overlap", type=int, default=_default(func_name, "overlap"),
                       help="bases shared by consecutive windows, at least the untrimmed motif "
                       "width W (call-hits refuses less; default %(default)s = 2 x a W of 50)")
        return
    if fmt in ("chrombpnet-h5", "bpnet-h5"):
        p.add_argument("-c", "--h5s", required=True, nargs="+",
                       help="one or more H5 files of contributions (averaged)")
    elif fmt == "modisco":
        p.add_argument("-s", "--sequences", required=True,
                       help=".npy or .npz (arr_0) one-hot sequences, (N, 4, W)")
        p.add_argument("-a", "--attributions", required=True, nargs="+",
                       help="one or more .npy/.npz hypothetical contributions (averaged)")
    else:
        p.add_argument("-f", "--fasta", required=True, help="genome FASTA (.fai made if absent)")
        p.add_argument("-b", "--bigwigs", required=True, nargs="+",
                       help="one or more bigWigs of projected contributions (averaged)")
    p.add_argument("-p", "--peaks", required=fmt == "bigwig", default=None,
                   help="narrowPeak file (plain or gzip/bgzip-compressed; track, browser and # "
                   "lines skipped; summit -1 centres on the peak midpoint), one row per region "
                   "in input order"
                   + ("" if fmt == "bigwig" else "; without it the store has no coordinates"))
    p.add_argument("-C", "--chrom-order", default=None,
                   help="file whose first column orders chromosomes (chr_id); others follow in "
                        "order of appearance in -p")
    p.add_argument("-w", "--region-width", type=int,
                   default=_default(func_name, "region_width"),
                   help="width of the region kept around each centre (even; default "
                        "%(default)s)")


def _common_args(p: argparse.ArgumentParser, fmt: str, func_name: str) -> None:
    p.add_argument("-o", "--out", "--out-path", required=True, dest="out",
                   help="the regions store to create (path or fsspec URL)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="regions per Zarr chunk (default: ~4 MiB chunks, 256 regions at L=1000)")
    p.add_argument("--contrib-dtype", choices=("float16", "float32"),
                   default=_default(func_name, "contrib_dtype"),
                   help="stored contribution dtype (default: "
                   + ("the file's)" if fmt == "npz" else "%(default)s)"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Call the format's converter by keyword; prints a one-line summary."""
    import sys

    from ..regions import convert
    from . import show_warnings_briefly

    show_warnings_briefly()
    func = getattr(convert, args.convert_func)
    accepted = inspect.signature(func).parameters
    kwargs = {k: v for k, v in vars(args).items() if k in accepted}
    kwargs["progress"] = False if args.no_progress else None
    regions = func(**kwargs)
    print(f"wrote {regions.url}: {regions.n_regions} regions x {regions.width} bp, "
          f"{regions.contrib_kind} contributions ({regions.contrib_dtype}), "
          f"{regions.chunk_size} regions per chunk", file=sys.stderr)
    return 0
