"""The ``nemo-dask`` command: parses arguments, then calls the Python API by keyword.

Each verb lives in its own module of this package with a ``register(subparsers)`` function that
adds its parser and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import warnings
from collections.abc import Sequence

from .. import version
from ..clusters.quiet import quiet_resource_tracker
from ..errors import NemoDaskError

# Verb modules, in the order they appear in ``nemo-dask --help``.
_COMMAND_MODULES: tuple[str, ...] = ("convert", "call_hits", "annotate", "export", "tracks",
                                       "compare", "report", "bench")


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
#: a local temporary copy for the run (:func:`nemo_dask.storage.urls.fetch_input_file`): h5py,
#: pyBigWig, pyfaidx and npz readers need local files. Stores and runs are read in place at
#: their URLs.
_INPUT_FILE_OPTIONS: tuple[str, ...] = (
    "regions", "regions_npz", "modisco_h5", "peaks", "chrom_order", "fasta", "bigwigs",
    "intervals", "chrom_sizes", "h5s", "sequences", "attributions", "motifs_include",
    "motif_names", "motif_lambdas", "motif_alphas", "cwm_trim_coords", "cwm_trim_thresholds",
)

#: Options holding a motif database: a URL is fetched like an input file; ``jaspar...`` is not
#: a path.
_DATABASE_OPTIONS: tuple[str, ...] = ("annotate", "database")


def _fetch_remote_inputs(args: argparse.Namespace, directory: str) -> None:
    from ..storage.urls import fetch_input_file, is_url

    for name in _INPUT_FILE_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, list):
            if any(is_url(v) for v in value):
                setattr(args, name, [fetch_input_file(v, directory) for v in value])
        elif isinstance(value, str) and is_url(value):
            setattr(args, name, fetch_input_file(value, directory))
    for name in _DATABASE_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and is_url(value):
            setattr(args, name, fetch_input_file(value, directory))


def _start_worker_server_early(argv: Sequence[str]) -> None:
    """For ``call-hits`` on the embedded local cluster, start the fork server its workers come
    from before anything else: it imports torch (about a second) on another core while this
    process imports its own modules, parses and converts the input (clusters/local.py). A
    server started for a run that then fails its checks is simply never used."""
    if not argv or argv[0] != "call-hits" or any(a in ("-h", "--help", "--dry-run") for a in argv):
        return
    if any(a == "--scheduler" or a.startswith("--scheduler=") for a in argv):
        return
    kinds = [argv[k + 1] for k, a in enumerate(argv[:-1]) if a == "--cluster"]
    kinds += [a.split("=", 1)[1] for a in argv if a.startswith("--cluster=")]
    from ..clusters.options import cfg

    kind = (kinds[-1] if kinds else cfg("kind") or "local").lower()
    if kind == "local" and not cfg("scheduler"):
        from ..clusters.local import prestart_workers

        prestart_workers()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nemo-dask`` console script."""

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # dask's workers, the fork server and fetched inputs all need one; tempfile tries
        # TMPDIR, /tmp, /var/tmp, /usr/tmp and the current directory, skipping unwritable ones.
        tempfile.gettempdir()
    except FileNotFoundError as err:
        print(f"nemo-dask: error: no writable temporary directory ({err}); set TMPDIR to a "
              "writable directory with free space", file=sys.stderr)
        return 2
    quiet_resource_tracker()
    _start_worker_server_early(argv)
    args = build_parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="nemo-dask-inputs-") as fetched:
            _fetch_remote_inputs(args, fetched)
            return int(args.func(args) or 0)
    except NemoDaskError as err:
        from ..storage.urls import with_fetched_urls

        print(f"nemo-dask {args.command}: error: {with_fetched_urls(str(err))}",
              file=sys.stderr)
        return 2
    except OSError as err:
        # A full, read-only or unwritable file system wherever no caller named it more
        # precisely: still one line, with the OS's file name and the fix.
        from ..storage.faults import fault_error, is_fault
        from ..storage.urls import with_fetched_urls

        if not is_fault(err):
            raise
        line = str(fault_error(err, err.filename or "a file it was writing"))
        print(f"nemo-dask {args.command}: error: {with_fetched_urls(line)}", file=sys.stderr)
        return 2
    except Exception as err:
        # An object store that stopped answering, wherever no caller named the object.
        from ..storage.faults import is_unreachable, unreachable_error

        if not is_unreachable(err):
            raise
        line = str(unreachable_error(err, "the object store",
                                     fix="once it answers again, run the same command again"))
        print(f"nemo-dask {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nemo-dask {args.command}: interrupted", file=sys.stderr)
        return 130


def show_warnings_briefly() -> None:
    """Print warnings as one line each (``file:line: Category: message`` is noise for users)."""

    from ..storage.urls import with_fetched_urls

    def _show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        print(f"warning: {with_fetched_urls(str(message))}", file=file or sys.stderr)

    warnings.showwarning = _show
