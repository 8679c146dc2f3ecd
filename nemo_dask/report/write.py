"""``write_report``: the report's tables, figures and ``report.html`` as files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import polars as pl

from ..regions.source import RegionSource
from . import tables
from .compute import is_finemo_dir, report_tables
from .html import write_page
from .model import ReportTables
from .seqlets import SEQLET_COLUMNS


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
    modisco_region_width: int | None = None,
    compute_recall: bool = True,
    embed_images: bool = False,
    regions_per_read: int | None = None,
) -> ReportTables:
    """Compute the report, write its tables, figures and ``report.html`` into ``out_dir``.

    Figures are PNG files under ``out_dir/figures/`` referenced by relative links, or embedded in
    the page with ``embed_images`` (one self-contained file). ``report.html`` is written last.
    ``hits_dir`` may also be a finemo call-hits output directory: it is imported into
    ``out_dir/finemo_dataset`` first.
    Other parameters are those of :func:`report_tables`.
    """
    out = Path(out_dir)
    if is_finemo_dir(Path(hits_dir)):
        # finemo's TSV outputs are imported once into a dataset kept beside the report.
        from ..finemo.importing import import_finemo

        imported = out / "finemo_dataset"
        import_finemo(hits_dir, imported, overwrite=True)
        hits_dir = imported
    result = report_tables(
        regions, hits_dir, modisco_h5, modisco_region_width, compute_recall, regions_per_read
    )
    write_tables(result, out_dir)
    write_page(result, Path(out_dir), embed_images=embed_images, title_hint=str(hits_dir))
    return result
