"""``write_report``: the report's tables, figures and ``report.html`` as files."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from ..regions.source import RegionSource
from ..storage.outputs import make_output_dir, open_output, output_dir, output_file, staged_output
from ..storage.urls import is_url, localize, remote_input
from . import tables
from .compute import is_finemo_dir, report_tables
from .html import write_page
from .model import ReportTables
from .seqlets import SEQLET_COLUMNS

#: The report's files of fixed names (figures/ holds one PNG per figure).
TABLE_FILES = ("motif_report.tsv", "seqlets.tsv", "seqlet_confusion.tsv", "motif_occurrences.tsv")
PAGE_FILE = "report.html"


def check_report_dir(out_dir: str | os.PathLike[str], figures: bool = True) -> Path:
    """Refuse an unusable report directory before any work (the rules of
    :mod:`nemo_dask.storage.outputs`).

    Returns the directory with symlinks resolved. Raises OutputExistsError when it is a file or
    device, when one of its file names is a directory, or (with ``figures``) when its
    ``figures`` entry is not a directory.
    """
    real = output_dir(out_dir, "report directory")
    for name in (*TABLE_FILES, PAGE_FILE):
        output_file(real / name, "report file")
    if figures:
        output_dir(real / "figures", "report's figures directory")
    return real


from .qvalues import QVALUE_TABLE  # noqa: E402  (beside its use)


def write_tables(result: ReportTables, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write finemo's four report tables into ``out_dir``; returns the paths written.

    Each through :func:`nemo_dask.storage.outputs.open_output` (a file atomically, a symlink's
    target, a device or FIFO directly).
    """
    out = Path(out_dir)
    make_output_dir(out, "report directory")
    frames: dict[str, pl.DataFrame | None] = {
        "motif_report.tsv": result.motif_report,
        "seqlets.tsv": None if result.seqlets is None else result.seqlets.select(SEQLET_COLUMNS),
        "seqlet_confusion.tsv": result.seqlet_confusion,
        QVALUE_TABLE: result.qvalue_levels,
    }
    written = []
    for name, frame in frames.items():
        if frame is not None:
            with open_output(out / name, "wb", what="report table") as f:
                frame.write_csv(f, separator="\t")
            written.append(out / name)
    # One range of regions at a time: the table has a row per region with hits.
    occ = out / "motif_occurrences.tsv"
    with open_output(occ, "wb", what="report table") as f:
        tables.write_occurrences(result.hits, result.motif_names, f)
    return [*written, occ]


def write_report(
    regions: str | os.PathLike[str] | RegionSource,
    hits_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    modisco_h5: str | os.PathLike[str] | None = None,
    modisco_region_width: int | None = None,
    compute_recall: bool = True,
    embed_images: bool = False,
    regions_per_read: int | None = None,
    max_qvalue: float | None = None,
) -> ReportTables:
    """Compute the report, write its tables, figures and ``report.html`` into ``out_dir``.

    Figures are PNG files under ``out_dir/figures/`` referenced by relative links, or embedded in
    the page with ``embed_images`` (one self-contained file). ``report.html`` is written last.
    ``hits_dir`` may also be a finemo call-hits output directory: it is imported into
    ``out_dir/finemo_dataset`` first.
    Other parameters are those of :func:`report_tables`.

    ``hits_dir`` and ``out_dir`` may be fsspec URLs (``s3://...``): a remote run is copied to a
    local temporary directory first (its regions store left out), a remote ``out_dir`` is
    written locally and each file uploaded whole once the report is complete.
    """
    args = (modisco_h5, modisco_region_width, compute_recall, embed_images, regions_per_read,
            max_qvalue)
    if is_url(localize(out_dir)):
        with staged_output(out_dir, "report directory") as (stage, _):
            return write_report(regions, hits_dir, stage, *args)
    if is_url(localize(hits_dir)):
        with remote_input(hits_dir, "hits directory") as local:
            return write_report(regions, local, out_dir, *args)
    out_dir = localize(out_dir)
    out = Path(out_dir)
    check_report_dir(out, figures=not embed_images)
    hits_dir = localize(hits_dir)
    if is_finemo_dir(Path(hits_dir)):
        # finemo's TSV outputs are imported once into a dataset kept beside the report.
        from ..finemo.importing import import_finemo

        imported = out / "finemo_dataset"
        import_finemo(hits_dir, imported, overwrite=True)
        hits_dir = imported
    result = report_tables(
        regions, hits_dir, modisco_h5, modisco_region_width, compute_recall, regions_per_read,
        max_qvalue,
    )
    write_tables(result, out_dir)
    write_page(result, Path(out_dir), embed_images=embed_images, title_hint=str(hits_dir))
    return result
