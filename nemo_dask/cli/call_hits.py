"""``nemo-dask call-hits``: finemo's call-hits flags, plus cluster, block and resume options,
and ``--runs`` (a sheet of runs on one cluster, :mod:`nemo_dask.calling.many`)."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from .. import config
from ..calibration.params import SCORES, CalibrationParams
from ..errors import InputError
from ..params import (
    CPU_BLOCK_SIZE_RANGE,
    CPU_BLOCKS,
    CUDA_MAX_BATCH,
    CUDA_MEMORY_SHARE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECK_EVERY,
    GPU_BATCHES_PER_BLOCK,
    GPU_BLOCK_SIZE_UNKNOWN,
    MODES,
    MotifParams,
    SolverParams,
)
from ..regions.scale import DEFAULT_SCALE_PERCENTILE
from .annotate import DATABASE_HELP, add_match_arguments

#: call-hits options that apply to a whole ``--runs`` sheet: given on the command line, never
#: as a sheet's column. Every cluster flag (:func:`~nemo_dask.clusters.connect.
#: add_cluster_arguments`) is one too; every other option is a run's own (a sheet's column).
SHEET_WIDE: tuple[str, ...] = ("help", "runs", "summary", "no_progress", "worker_wait")

#: Options (by ``dest``) whose values are paths, besides the input files the CLI fetches from
#: URLs (``nemo_dask.cli._INPUT_FILE_OPTIONS``) and motif databases (``_DATABASE_OPTIONS``): a
#: sheet's relative path there is taken from the sheet's folder.
PATH_OPTIONS: tuple[str, ...] = ("out_dir", "global_scale_from", "background")

_DESCRIPTION = (
    "Call Fi-NeMo motif hits for every region, one Dask task per block of regions; each block "
    "writes OUT/hits/part-*.parquet and OUT/qc/part-*.parquet. Rerunning into OUT resumes. "
    "With --runs RUNS.tsv, every row of the sheet is one such run, all on one cluster.")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``call-hits`` verb (defaults: finemo's from params.py, the run's from dask
    config ``nemo_dask.call-hits``)."""
    p = sub.add_parser("call-hits", help="call motif hits on a Dask cluster (Parquet dataset "
                       "out)", description=_DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def call_hits_parser() -> argparse.ArgumentParser:
    """call-hits' own parser, alone (what a ``--runs`` sheet's columns are checked against)."""
    p = argparse.ArgumentParser(prog="nemo-dask call-hits", description=_DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every call-hits option: the one definition the CLI and ``--runs`` sheets share."""
    sp, mp = SolverParams(), MotifParams()
    run_defaults = {k: config.get(f"call-hits.{k}") for k in ("device", "retries")}
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("-r", "--regions",
                    help="regions store (path or URL; see `nemo-dask convert`) or finemo's "
                    "regions.npz (required, unless every row of --runs gives it)")
    io.add_argument("-m", "--modisco-h5", help="tfmodisco-lite H5 file (required, as -r)")
    io.add_argument("-p", "--peaks", default=None,
                    help="narrowPeak file (plain or gzipped), one row per region in order: gives "
                    "a regions.npz genomic coordinates, replacing any it holds (finemo's -p)")
    io.add_argument("-C", "--chrom-order", default=None,
                    help="file whose first column orders chromosomes (chr_id) of -p")
    io.add_argument("-o", "--out-dir", help="output directory (required, as -r)")
    io.add_argument("--overwrite", action="store_true",
                    help="replace the results of a different run in OUT")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    io.add_argument("--runs", metavar="RUNS.tsv", default=None,
                    help="many runs on one cluster: a tab-separated sheet with one row per run "
                    "and the columns name, regions, motifs, out and any call-hits option by "
                    "its long name (a blank cell: the command line's value, else the default); "
                    "paths relative to the sheet's folder. Without a block-size column, blocks "
                    "are sized for the whole sheet's regions")
    io.add_argument("--summary", metavar="PATH", default=None,
                    help="with --runs: where each run's status, hits, regions, blocks and "
                    "seconds are written (default: RUNS.summary.tsv beside the sheet)")

    mo = p.add_argument_group("motifs (as finemo)")
    mo.add_argument("-M", "--mode", choices=list(MODES), default=mp.mode,
                    help="motif matrix (p: CWM, h: hypothetical CWM) and contributions "
                    "(p: projected, h: hypothetical); default %(default)s")
    mo.add_argument("-I", "--motifs-include", help="file of motif names to use, one per line")
    mo.add_argument("-N", "--motif-names", help="tab-separated file: pattern name, new name")
    mo.add_argument("-t", "--cwm-trim-threshold", type=float, default=mp.trim_threshold,
                    help="trim motifs to positions above this fraction of the maximum "
                    "(default %(default)s)")
    mo.add_argument("-T", "--cwm-trim-thresholds", help="per-motif trim thresholds (tsv)")
    mo.add_argument("-R", "--cwm-trim-coords", help="per-motif trim start and end (tsv)")
    mo.add_argument("-l", "--global-lambda", type=float, default=mp.lambda_default,
                    help="L1 penalty of every motif (default %(default)s)")
    mo.add_argument("-L", "--motif-lambdas", help="per-motif L1 penalties (tsv)")
    mo.add_argument("-a", "--alpha", type=float, help=argparse.SUPPRESS)
    mo.add_argument("-A", "--motif-alphas", help=argparse.SUPPRESS)

    nm = p.add_argument_group("motif names (TOMTOM matches; pip install 'nemo_dask[names]')")
    nm.add_argument("--annotate", default=None, metavar="DB", help="match each motif against "
                    "DB and label it with its best match in every output: " + DATABASE_HELP)
    add_match_arguments(nm)

    so = p.add_argument_group("optimiser (as finemo)")
    so.add_argument("-f", "--no-post-filter", action="store_true",
                    help="keep hits whose similarity is below lambda")
    so.add_argument("-q", "--sqrt-transform", action="store_true",
                    help="signed square root of contributions and motifs")
    so.add_argument("-s", "--step-size-max", type=float, default=sp.step_size_max,
                    help="initial step size (default %(default)s)")
    so.add_argument("-i", "--step-size-min", type=float, default=sp.step_size_min,
                    help="a region whose step falls below this fails (default %(default)s)")
    so.add_argument("-j", "--step-adjust", type=float, default=sp.step_adjust,
                    help="step factor after a divergence (default %(default)s)")
    so.add_argument("-c", "--convergence-tol", type=float, default=sp.convergence_tol,
                    help="duality-gap tolerance (default %(default)s)")
    so.add_argument("-S", "--max-steps", type=int, default=sp.max_steps,
                    help="steps before a region times out (default %(default)s)")
    so.add_argument("-b", "--batch-size", type=int, default=None,
                    help="regions optimised together on a worker (default "
                    f"{DEFAULT_BATCH_SIZE['cpu']} per torch thread on CPU; on a GPU what "
                    f"{CUDA_MEMORY_SHARE:.0%}% of its free memory holds, at most "
                    f"{CUDA_MAX_BATCH})")
    so.add_argument("-J", "--compile", action="store_true", help="torch.compile the step")
    gs = so.add_mutually_exclusive_group()
    gs.add_argument("--global-scale", type=float, default=None, metavar="VALUE",
                    help="divide every region's contributions by VALUE instead of by its own "
                    "RMS (finemo's per-region global_scale, the default); for tiled stores")
    gs.add_argument("--global-scale-from", default=None, metavar="STORE[:PERCENTILE]",
                    help="the fixed scale is this percentile (default "
                    f"{DEFAULT_SCALE_PERCENTILE:g}) of the per-region "
                    "scales of STORE, a store of peak windows (`convert bigwig`)")
    so.add_argument("--exact", action="store_true",
                    help="finemo's dense transposed convolution on CPU: the same iterates as "
                    "finemo bit for bit on the same machine, slower (default: computed from "
                    "the few non-zero coefficients; same hits by the rounding-robust rule)")
    so.add_argument("--check-every", type=int, default=None,
                    help="steps between convergence checks; changes no result (default "
                    f"{DEFAULT_CHECK_EVERY['cpu']} on CPU, {DEFAULT_CHECK_EVERY['cuda']} on a GPU)")
    so.add_argument("-d", "--device", default=None,
                    help="auto (each worker's GPU if it has one, else its CPU), cpu, cuda or "
                    f"cuda:N (default {run_defaults['device']})")

    ca = p.add_argument_group("q-values (README \"Calibrated hits\"); finemo's hits are "
                              "unchanged")
    ca.add_argument("--null", default=None, metavar="NULL",
                    help="the null of each hit's q-value (hit_qvalue): flank (default: the "
                    "run's own hits in the outer 30%% of each summit-centred half-window; "
                    "nothing is fitted), decoy (decoy motifs fitted with the real ones: a "
                    "second fit), shuffle (the motifs on contributions shuffled in 3 bp "
                    "blocks), background (needs --background), flank+decoy (or +shuffle, "
                    "+background: the larger FDR estimate), or none. Default: background with "
                    "--background, else flank; tiled stores: none")
    ca.add_argument("--background", metavar="STORE", default=None,
                    help="background regions (a regions store as wide as the regions, e.g. "
                    "GC-matched non-peak regions) for the background null")
    ca.add_argument("--qvalue-score", default=CalibrationParams.score, choices=list(SCORES),
                    help="the hit column the q-value ranks (default %(default)s)")

    ex = p.add_argument_group("execution")
    ex.add_argument("--block-size", type=int, default=None,
                    help="regions per Dask task (default: computed: about "
                    f"{CPU_BLOCKS} blocks of {CPU_BLOCK_SIZE_RANGE[0]}-{CPU_BLOCK_SIZE_RANGE[1]} "
                    f"regions on CPU workers; on GPU workers {GPU_BATCHES_PER_BLOCK} solver "
                    "batches (a batch: what their free memory holds), or "
                    f"{GPU_BLOCK_SIZE_UNKNOWN} regions while no worker has said; in whole "
                    "store chunks)")
    ex.add_argument("--retries", type=int, default=None,
                    help=f"retries of a failed task (default {run_defaults['retries']})")
    ex.add_argument("--worker-wait", metavar="TIME", default=None,
                    help="stop if no Dask worker is connected for this long, e.g. 600 (seconds) "
                    "or '2 hours' (default: wait as long as the batch system keeps the jobs "
                    "queued; jobs it refuses or can never run stop the run at once)")
    from ..clusters.connect import add_cluster_arguments

    add_cluster_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run call-hits (one run, or every row of ``--runs``) from parsed arguments."""
    from ..calling.api import call_hits
    from ..clusters.connect import cluster_options_from_args, job_script
    from . import show_warnings_briefly
    from .annotate import print_labels

    show_warnings_briefly()
    cluster = cluster_options_from_args(args)
    if getattr(args, "dry_run", False):
        print(job_script(cluster))
        return 0
    if args.runs is not None:
        return _run_sheet(args, cluster)
    if args.summary is not None:
        raise InputError("--summary is the summary of a --runs sheet; give --runs RUNS.tsv")
    missing = [flag for flag, value in (("-r/--regions", args.regions),
                                        ("-m/--modisco-h5", args.modisco_h5),
                                        ("-o/--out-dir", args.out_dir)) if value is None]
    if missing:
        raise InputError(f"call-hits needs {', '.join(missing)} (or --runs RUNS.tsv, a sheet "
                         "of runs)")
    keywords = call_hits_keywords(args)
    result = call_hits(**keywords, cluster=cluster,
                       progress=False if args.no_progress else None,
                       worker_wait=args.worker_wait)
    if args.annotate is not None:
        from ..dataset import read_annotation

        print_labels(result.motifs, read_annotation(result.out)["database_description"])
    skipped = f" ({result.n_skipped} already done)" if result.n_skipped else ""
    print(f"{result.n_hits} hits in {result.n_blocks} blocks{skipped}, "
          f"{result.elapsed_s:.1f} s")
    print(f"hits: {result.out / 'hits'}    QC: {result.out / 'qc'}")
    print(f"read them with: python -c \"import polars as pl; "
          f"print(pl.scan_parquet('{result.out}/hits/*.parquet').collect())\"")
    return 0


def call_hits_keywords(args: argparse.Namespace, say: Any = print) -> dict[str, Any]:
    """The keyword arguments of :func:`nemo_dask.call_hits` for one run's parsed options (the
    command line's, or a ``--runs`` row's): inputs, motif and optimiser options, run options;
    not the cluster, progress or ``worker_wait`` (a sheet's, not a run's).

    ``--global-scale-from`` is read here (``say`` prints the scale it gives).

    Raises
    ------
    InputError
        An option's value is unusable (``--background``, ``--global-scale-from``'s store).
    """
    from .annotate import match_options_from_args

    lam, lambdas = args.global_lambda, args.motif_lambdas
    if args.alpha is not None:
        warnings.warn("-a/--alpha is deprecated; use -l/--global-lambda", stacklevel=2)
        lam = args.alpha
    if args.motif_alphas is not None:
        warnings.warn("-A/--motif-alphas is deprecated; use -L/--motif-lambdas", stacklevel=2)
        lambdas = args.motif_alphas
    global_scale = args.global_scale
    if args.global_scale_from is not None:
        from ..regions.scale import parse_scale_from, peak_scale

        store, pct = parse_scale_from(args.global_scale_from)
        global_scale = peak_scale(store, pct, use_hypothetical=MODES[args.mode][1],
                                  sqrt_transform=args.sqrt_transform)
        say(f"global scale: {global_scale:.6g} (percentile {pct:g} of {store})")
    return dict(
        regions=args.regions, motifs=args.modisco_h5, out=args.out_dir,
        peaks=args.peaks, chrom_order=args.chrom_order,
        mode=args.mode, motifs_include=args.motifs_include, motif_names=args.motif_names,
        trim_threshold=args.cwm_trim_threshold, trim_thresholds=args.cwm_trim_thresholds,
        trim_coords=args.cwm_trim_coords, lambda_default=lam, motif_lambdas=lambdas,
        post_filter=not args.no_post_filter, sqrt_transform=args.sqrt_transform,
        step_size_max=args.step_size_max, step_size_min=args.step_size_min,
        step_adjust=args.step_adjust, convergence_tol=args.convergence_tol,
        max_steps=args.max_steps, batch_size=args.batch_size, compile_optimizer=args.compile,
        global_scale=global_scale, exact=args.exact, check_every=args.check_every,
        device=args.device, block_size=args.block_size, retries=args.retries,
        overwrite=args.overwrite, annotate=args.annotate,
        match_options=match_options_from_args(args) if args.annotate is not None else None,
        null=args.null, background=args.background, qvalue_score=args.qvalue_score,
    )


def _run_sheet(args: argparse.Namespace, cluster: Any) -> int:
    """``--runs``: every row of the sheet, one cluster; exit 1 when any run failed."""
    from ..calling.many import call_hits_many

    result = call_hits_many(args.runs, cluster=cluster, defaults=args, summary=args.summary,
                            progress=False if args.no_progress else None,
                            worker_wait=args.worker_wait)
    print(result.describe())
    return 0 if result.ok else 1
