"""``report_tables`` (the report's numbers as polars frames) and ``write_report`` (files + page)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..dataset import CWMS_FILE, MOTIFS_FILE, read_motifs, read_parameters, scan_hits
from ..errors import InputError
from . import distinct, tables
from .cwms import CWM_KINDS, CwmSums, accumulate_cwms, cosine
from .regions import RegionSource, open_report_regions
from .seqlets import SEQLET_COLUMNS, load_seqlets


@dataclass(frozen=True)
class ReportTables:
    """Everything the report shows, as polars frames and arrays.

    Attributes
    ----------
    motif_report : polars.DataFrame
        One row per motif: finemo's ``motif_report.tsv`` columns.
    motif_occurrences : polars.LazyFrame
        Hits per motif per region with a hit, and their total (``motif_occurrences.tsv``); lazy
        because it has one row per region: ``.collect()`` or ``.sink_csv()`` it.
    seqlets : polars.DataFrame or None
        TF-MoDISco seqlets in genomic coordinates (``seqlets.tsv`` plus chr_id, is_revcomp).
    seqlet_confusion : polars.DataFrame or None
        motif_name_seqlets, motif_name_hits, frac_overlap (``seqlet_confusion.tsv``).
    hits_per_region : polars.DataFrame
        motif_name (or "total"), num_hits, num_regions: regions with k hits, zeros included.
    hit_statistics : polars.DataFrame
        Histograms of hit coefficient, similarity and importance per motif.
    cooccurrence : polars.DataFrame
        motif_name and one column per motif: regions holding both motifs.
    cwms : dict of str to ndarray, each shape=(M, 4, W)
        ``hits_fc``, ``hits_rc`` (hit-averaged), ``modisco_fc``, ``modisco_rc`` (the run's
        motif matrices) and, with recall, ``seqlets_only`` and ``hits_restricted_only``.
    trim_bounds : polars.DataFrame
        motif_name, strand, motif_start, motif_end: the trimmed core of each motif matrix.
    n_regions : int
        Regions in the regions input.
    hits : polars.LazyFrame
        The lazy scan of the run's hits the tables were computed from.
    """

    motif_report: pl.DataFrame
    motif_occurrences: pl.LazyFrame
    seqlets: pl.DataFrame | None
    seqlet_confusion: pl.DataFrame | None
    hits_per_region: pl.DataFrame
    hit_statistics: pl.DataFrame
    cooccurrence: pl.DataFrame
    cwms: dict[str, np.ndarray]
    trim_bounds: pl.DataFrame
    n_regions: int
    hits: pl.LazyFrame

    @property
    def motif_names(self) -> list[str]:
        """Motif names in report order (the run's motif order)."""
        return self.motif_report["motif_name"].to_list()

    @property
    def compute_recall(self) -> bool:
        """Whether recall statistics were computed."""
        return "seqlet_recall" in self.motif_report.columns


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


def is_finemo_dir(path: Path) -> bool:
    """Whether ``path`` is a finemo call-hits output (hits.tsv) rather than a nemo-dask one."""
    return (path / "hits.tsv").is_file() and not (path / MOTIFS_FILE).is_file()


def report_tables(
    regions: str | os.PathLike[str] | RegionSource,
    hits_dir: str | os.PathLike[str],
    modisco_h5: str | os.PathLike[str] | None = None,
    modisco_region_width: int = 400,
    compute_recall: bool = True,
    block_size: int = 1024,
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
    modisco_region_width : int
        Width of the windows tfmodisco ran on (``modisco motifs -w``).
    compute_recall : bool
        Whether to compare hits with seqlets one by one (recall, missed seqlets, extra hits).
    block_size : int
        Regions read at a time when averaging contributions under hits.
    """
    hits_dir = Path(hits_dir)
    if not isinstance(regions, (str, os.PathLike)):
        source = regions
    else:
        source = open_report_regions(regions)
    _check_run(hits_dir, source)
    motifs = read_motifs(hits_dir)
    motif_cwms = np.load(hits_dir / CWMS_FILE)
    forward = motifs.filter(pl.col("strand") == "+").sort("motif_id")
    names = forward["motif_name"].to_list()
    reverse = motifs.filter(pl.col("strand") == "-")
    width = int(motif_cwms.shape[2])
    hits = scan_hits(hits_dir)

    seqlets = None
    if modisco_h5 is not None:
        seqlets = load_seqlets(modisco_h5, source.peaks, motifs, source.width, modisco_region_width)
    recall = compute_recall and seqlets is not None
    # The windows under every distinct hit are spilled to disk between the two passes.
    with tempfile.TemporaryDirectory(prefix="nemo-dask-report-") as spill:
        counts = distinct.hit_counts(
            hits, seqlets, source.peaks, names, source.width, width, modisco_region_width,
            recall, spill_dir=spill,
        )
        sums = accumulate_cwms(source, counts.windows, len(names), width, block_size)
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
    )


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


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary name beside ``path``, then rename it into place."""
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_tables(result: ReportTables, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write finemo's four report tables into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames: dict[str, pl.DataFrame | None] = {
        "motif_report.tsv": result.motif_report,
        "seqlets.tsv": None if result.seqlets is None else result.seqlets.select(SEQLET_COLUMNS),
        "seqlet_confusion.tsv": result.seqlet_confusion,
    }
    written = []
    for name, frame in frames.items():
        if frame is not None:
            _write_atomic(out / name, lambda p, f=frame: f.write_csv(p, separator="\t"))
            written.append(out / name)
    # One range of regions at a time: the table has a row per region with hits.
    occ = out / "motif_occurrences.tsv"
    _write_atomic(occ, lambda p: tables.write_occurrences(result.hits, result.motif_names, p))
    return [*written, occ]


def write_report(
    regions: str | os.PathLike[str] | RegionSource,
    hits_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    modisco_h5: str | os.PathLike[str] | None = None,
    modisco_region_width: int = 400,
    compute_recall: bool = True,
    embed_images: bool = False,
    block_size: int = 1024,
) -> ReportTables:
    """Compute the report, write its tables, figures and ``report.html`` into ``out_dir``.

    Figures are PNG files under ``out_dir/figures/`` referenced by relative links, or embedded in
    the page with ``embed_images`` (one self-contained file). ``report.html`` is written last.
    ``hits_dir`` may also be a finemo call-hits output directory: it is imported into
    ``out_dir/finemo_dataset`` first.
    Other parameters are those of :func:`report_tables`.
    """
    from .html import write_page

    out = Path(out_dir)
    if is_finemo_dir(Path(hits_dir)):
        # finemo's TSV outputs are imported once into a dataset kept beside the report.
        from ..finemo.importing import import_finemo

        imported = out / "finemo_dataset"
        import_finemo(hits_dir, imported, overwrite=True)
        hits_dir = imported
    result = report_tables(
        regions, hits_dir, modisco_h5, modisco_region_width, compute_recall, block_size
    )
    write_tables(result, out_dir)
    write_page(result, Path(out_dir), embed_images=embed_images, title_hint=str(hits_dir))
    return result
