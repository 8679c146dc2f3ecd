"""``report_tables``: the report's numbers as polars frames (:class:`~.model.ReportTables`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from .. import config
from ..dataset import CWMS_FILE, MOTIFS_FILE, has_qvalues, read_motifs, read_parameters, scan_hits
from ..errors import InputError
from ..finemo.directory import is_finemo_dir
from ..finemo.read import check_max_qvalue, filter_qvalue
from ..regions.source import RegionSource, open_regions
from . import distinct, tables
from .cwms import CWM_KINDS, CwmSums, accumulate_cwms, cosine
from .model import ReportTables
from .qvalues import qvalue_levels
from .seqlets import check_seqlets_line_up, load_seqlets, resolve_window


def _check_run(hits_dir: Path, regions: RegionSource) -> dict:
    for name in (MOTIFS_FILE, CWMS_FILE):
        if not (hits_dir / name).is_file():
            hint = (
                " (a finemo output directory: write_report and the CLI import it; or use "
                "nemo_dask.import_finemo)"
                if is_finemo_dir(hits_dir)
                else ""
            )
            raise InputError(
                f"{hits_dir / name}: missing; -H must be a nemo-dask call-hits output directory{hint}"
            )
    try:
        params = read_parameters(hits_dir)
    except FileNotFoundError:
        params = {}
    width = params.get("region_width")
    if width is not None and int(width) != regions.width:
        raise InputError(
            f"{hits_dir}/parameters.json: region_width is {width} but the regions input has width "
            f"{regions.width}; pass the regions the hits were called on (-r)"
        )
    return params




def report_tables(
    regions: str | os.PathLike[str] | RegionSource,
    hits_dir: str | os.PathLike[str],
    modisco_h5: str | os.PathLike[str] | None = None,
    modisco_region_width: int | None = None,
    compute_recall: bool = True,
    regions_per_read: int | None = None,
    max_qvalue: float | None = None,
) -> ReportTables:
    """Compute the report's tables from a call-hits output and its regions.

    Parameters
    ----------
    regions : path or RegionSource
        Regions store or finemo regions.npz the hits were called on.
    hits_dir : path
        The call-hits output directory (``OUT``).
    modisco_h5 : path, optional
        tfmodisco-lite H5; without it seqlet statistics are left out.
    modisco_region_width : int, optional
        Width of the windows tfmodisco ran on (``modisco motifs -w``). The H5's recorded
        ``window_size`` wins over it (with a warning when they differ); when the H5 records
        none, default ``nemo_dask.report.modisco-region-width`` in dask config (400). A sample
        of seqlets is checked against the regions' sequence at the place they are mapped to: an
        H5 made on other regions, another order or another window raises InputError instead of
        reporting every recall as 0.
    compute_recall : bool
        Whether to compare hits with seqlets one by one (recall, missed seqlets, extra hits).
    regions_per_read : int, optional
        Regions read at a time when averaging contributions under hits (bounds memory);
        default ``nemo_dask.report.regions-per-read`` (1024).
    max_qvalue : float, optional
        Report only the hits whose ``hit_qvalue`` is at most this (a calibrated run's). A
        calibrated run's report also counts each motif's hits at q <= 0.01, 0.05 and 0.1.

    Raises
    ------
    InputError
        An input is missing or does not match the run (region width), or a value is not
        positive.
    """
    hits_dir = Path(hits_dir)
    if regions_per_read is None:
        regions_per_read = int(config.get("report.regions-per-read"))
    for name, value in (("modisco_region_width", modisco_region_width),
                        ("regions_per_read", regions_per_read)):
        if value is not None and value <= 0:
            raise InputError(f"{name} must be positive, got {value}")
    if not isinstance(regions, (str, os.PathLike)):
        source = regions
    else:
        source = open_regions(regions)
    _check_run(hits_dir, source)
    motifs = read_motifs(hits_dir)
    motif_cwms = np.load(hits_dir / CWMS_FILE)
    forward = motifs.filter(pl.col("strand") == "+").sort("motif_id")
    names = forward["motif_name"].to_list()
    reverse = motifs.filter(pl.col("strand") == "-")
    width = int(motif_cwms.shape[2])
    hits = scan_hits(hits_dir)
    calibrated = has_qvalues(hits_dir)
    levels = qvalue_levels(hits, names) if calibrated else None
    if max_qvalue is not None:
        check_max_qvalue(max_qvalue, calibrated, hits_dir)
        hits = filter_qvalue(hits, max_qvalue, hits_dir)

    seqlets = None
    if modisco_h5 is None:
        if modisco_region_width is None:
            modisco_region_width = int(config.get("report.modisco-region-width"))
    else:
        modisco_region_width = resolve_window(modisco_h5, modisco_region_width)
        check_seqlets_line_up(modisco_h5, source, modisco_region_width)
        seqlets = load_seqlets(modisco_h5, source.peaks, motifs, source.width, modisco_region_width)
    recall = compute_recall and seqlets is not None
    # The windows under every distinct hit are spilled to disk between the two passes.
    with tempfile.TemporaryDirectory(prefix="nemo-dask-report-") as spill:
        counts = distinct.hit_counts(
            hits, seqlets, source.peaks, names, source.width, width, modisco_region_width,
            recall, spill_dir=spill,
        )
        sums = accumulate_cwms(source, counts.windows, len(names), width, regions_per_read)
    cwms = _cwm_set(sums, motif_cwms, names, forward, reverse, recall)
    similarity = [cosine(cwms["hits_fc"][i], cwms["modisco_fc"][i]) for i in range(len(names))]
    report = counts.counts.with_columns(cwm_similarity=pl.Series(similarity, dtype=pl.Float64))
    report = report.select([c for c in tables.REPORT_COLUMNS if c in report.columns])
    confusion = distinct.seqlet_confusion(counts, names) if seqlets is not None else None
    regional = tables.region_stats(hits, names, source.n_regions)
    return ReportTables(
        motif_report=report,
        motif_occurrences=tables.occurrences(hits, names),
        seqlets=seqlets,
        seqlet_confusion=confusion,
        hits_per_region=regional.hits_per_region,
        hit_statistics=tables.hit_stat_histograms(hits, names),
        cooccurrence=pl.DataFrame(
            {"motif_name": names} | {m: regional.cooccurrence[:, i] for i, m in enumerate(names)}
        ),
        cwms=cwms,
        trim_bounds=motifs.select("motif_name", "strand", "motif_start", "motif_end"),
        n_regions=source.n_regions,
        hits=hits,
        **_matches(hits_dir, motifs),
        qvalue_levels=levels,
    )


def _matches(hits_dir: Path, motifs: pl.DataFrame) -> dict:
    """The report's ``matches`` and ``match_database`` of an annotated run (else none)."""
    from ..dataset import read_annotation
    from ..matching.labels import LABEL

    if LABEL not in motifs.columns:
        return {}
    annotation = read_annotation(hits_dir) or {}
    columns = ["motif_name", LABEL, "match_id", "match_name", "match_pvalue", "match_qvalue",
               "match_orientation"]
    return {"matches": motifs.filter(pl.col("strand") == "+").select(columns),
            "match_database": str(annotation.get("database_description", ""))}


def _cwm_set(
    sums: CwmSums,
    motif_cwms: np.ndarray,
    names: list[str],
    forward: pl.DataFrame,
    reverse: pl.DataFrame,
    recall: bool,
) -> dict[str, np.ndarray]:
    hits_fc = sums.mean("hits")
    rev_ids = dict(zip(reverse["motif_name"], reverse["motif_id"], strict=True))
    fwd = motif_cwms[forward["motif_id"].to_numpy()]
    # A run made without reverse complements has no '-' rows; reverse the forward matrix then.
    rev = (
        np.stack(
            [
                motif_cwms[rev_ids[m]] if m in rev_ids else fwd[i][::-1, ::-1]
                for i, m in enumerate(names)
            ]
        )
        if names
        else fwd
    )
    out = {
        "hits_fc": hits_fc,
        "hits_rc": hits_fc[:, ::-1, ::-1],
        "modisco_fc": fwd.astype(np.float64),
        "modisco_rc": rev.astype(np.float64),
    }
    if recall:
        for kind in CWM_KINDS[1:]:
            out[kind] = sums.mean(kind)
    return out
