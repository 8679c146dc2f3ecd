"""The ``nemo-dask`` command: parses arguments, then calls the Python API by keyword.

Each verb lives in its own module of this package with a ``register(subparsers)`` function that
adds its parser and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from .._io import version
from ..errors import NemoDaskError

# Verb modules, in the order they appear in ``nemo-dask --help``.
_COMMAND_MODULES: tuple[str, ...] = ("convert", "call_hits", "export", "tracks", "compare",
                                       "report", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The full ``nemo-dask`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="nemo-dask",
        description="Fi-NeMo motif-instance calling on Dask: Zarr regions in, Parquet hits out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


#: Options (by argparse ``dest``) whose values are input files. A remote URL there is fetched to
#: a local temporary copy for the run (:func:`nemo_dask._io.fetch_input_file`): h5py, pyBigWig,
#: pyfaidx and npz readers need local files. Stores and runs are read in place at their URLs.
_INPUT_FILE_OPTIONS: tuple[str, ...] = (
    "regions", "regions_npz", "modisco_h5", "peaks", "chrom_order", "fasta", "bigwigs",
    "intervals", "chrom_sizes", "h5s", "sequences", "attributions", "motifs_include",
    "motif_names", "motif_lambdas", "cwm_trim_coords", "cwm_trim_thresholds",
)


def _fetch_remote_inputs(args: argparse.Namespace, directory: str) -> None:
    from .._io import fetch_input_file, is_url

    for name in _INPUT_FILE_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, list):
            if any(is_url(v) for v in value):
                setattr(args, name, [fetch_input_file(v, directory) for v in value])
        elif isinstance(value, str) and is_url(value):
            setattr(args, name, fetch_input_file(value, directory))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nemo-dask`` console script."""
    import tempfile

    args = build_parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="nemo-dask-inputs-") as fetched:
            _fetch_remote_inputs(args, fetched)
            return int(args.func(args) or 0)
    except NemoDaskError as err:
        print(f"nemo-dask {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nemo-dask {args.command}: interrupted", file=sys.stderr)
        return 130


def show_warnings_briefly() -> None:
    """Print warnings as one line each (``file:line: Category: message`` is noise for users)."""

    def _show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        print(f"warning: {message}", file=file or sys.stderr)

    warnings.showwarning = _show
