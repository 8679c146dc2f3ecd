"""``report.html``: one static page, no scripts, no network; figures as files or data URIs.

The markup is the jinja2 template ``templates/report.html.j2`` (autoescaped); this module makes
the figures and hands the template plain values.
"""

from __future__ import annotations

import base64
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import numpy as np
import polars as pl

from ..storage.outputs import make_output_dir, write_bytes, write_text
from . import plots
from .distinct import confusion_matrix
from .model import ReportTables
from .qvalues import qvalue_figure

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #222; background: #fff;
       max-width: 1180px; margin: 0 auto; padding: 16px 24px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 21px; margin-top: 36px;
     border-bottom: 2px solid #2a6f97; padding-bottom: 4px; } h3 { font-size: 17px; margin-top: 26px; }
.meta { color: #555; font-size: 14px; } .note { background: #f4f7fa; border-left: 4px solid #2a6f97;
        padding: 8px 12px; margin: 12px 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 14px; }
th, td { padding: 5px 9px; border-bottom: 1px solid #e3e3e3; text-align: right; }
th { background: #eef3f7; position: sticky; top: 0; } td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; } code { font-size: 13px; } h3 code { font-size: 17px; }
figure { margin: 14px 0 22px 0; } figcaption { font-size: 13px; color: #444; margin-top: 4px; }
img { max-width: 100%; height: auto; display: block; }
dl { font-size: 13.5px; display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dt { font-weight: bold; } dd { margin: 0; }
.motif { border-top: 1px solid #ddd; padding-top: 6px; }
.logo-matches { display: flex; gap: 18px; align-items: flex-start; flex-wrap: wrap; }
.logo-matches figure { flex: 1 1 640px; } .matches { flex: 0 1 360px; margin-top: 14px; }
.matches table { font-size: 13px; } .matches caption { text-align: left; font-size: 13px; color: #444; }
"""

_COLUMNS = [
    ("motif_name", "Motif", "The motif (TF-MoDISco pattern, or its new name), with its best "
     "TOMTOM match in parentheses when the run is annotated (nemo-dask annotate)."),
    (
        "num_hits_total",
        "Hits",
        "Distinct hits: one per position, motif and strand, even when overlapping regions both see it.",
    ),
    (
        "num_hits_restricted",
        "Restricted hits",
        "Distinct hits inside the central window that TF-MoDISco ran on.",
    ),
    ("num_seqlets", "Seqlets", "Distinct TF-MoDISco seqlets of the motif."),
    (
        "num_overlaps",
        "Hit/seqlet overlaps",
        "Seqlets found as restricted hits at the same position and strand.",
    ),
    ("num_seqlets_only", "Missed seqlets", "Seqlets not found as a hit."),
    ("num_hits_restricted_only", "Extra restricted hits", "Restricted hits that are not seqlets."),
    ("seqlet_recall", "Seqlet recall", "Overlaps / seqlets."),
    (
        "cwm_similarity",
        "Hit/motif CWM similarity",
        "Cosine similarity of the hit-averaged CWM and the motif's CWM.",
    ),
]
_ABBREV = " Labels: +/N is pos_patterns.pattern_N, -/N is neg_patterns.pattern_N."


class _Figures:
    """Stores figures as files under ``figures/`` (relative links) or as data URIs."""

    def __init__(self, out_dir: Path, embed: bool) -> None:
        self.out_dir = out_dir
        self.embed = embed

    def src(self, png: bytes, name: str) -> str:
        if self.embed:
            return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        make_output_dir(self.out_dir / "figures", "report's figures directory")
        write_bytes(self.out_dir / "figures" / name, png, "report figure")
        return f"figures/{name}"


class _Figure(NamedTuple):
    src: str
    alt: str
    caption: str


class _Column(NamedTuple):
    name: str
    label: str
    description: str


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("nemo_dask.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template("report.html.j2")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


_CWM_CAPTION = ("Sequence logos: the motif's CWM (top) and the average contribution x sequence "
                "under its hits (below), forward and reverse complement; the trimmed core is "
                "shaded.")
_DIST_CAPTION = ("Left: fraction of regions with k hits of this motif (all regions, zeros "
                 "included). Then the distributions of hit coefficient, similarity and "
                 "importance over all hits.")


def _motifs(result: ReportTables, figs: _Figures, columns: list[_Column]) -> list[dict[str, Any]]:
    names = result.motif_names
    bounds = {(r[0], r[1]): (int(r[2]), int(r[3])) for r in result.trim_bounds.iter_rows()}
    counts = result.motif_report
    rows = list(counts.iter_rows(named=True))
    width = result.cwms["hits_fc"].shape[2] if names else 0
    matches = ({r["motif_name"]: r for r in result.matches.iter_rows(named=True)}
               if result.matches is not None else {})
    labels = {m: r["motif_label"] for m, r in matches.items()}
    motifs = []
    for i, m in enumerate(names):
        fwd = bounds.get((m, "+"), (0, 0))
        rev = bounds.get((m, "-"), (width - fwd[1], width - fwd[0]))
        n_hits = int(counts["num_hits_total"][i])
        panels = [
            ("Motif CWM, forward", result.cwms["modisco_fc"][i], fwd),
            ("Motif CWM, reverse complement", result.cwms["modisco_rc"][i], rev),
            (f"Hit-averaged CWM, forward ({n_hits} hits)", result.cwms["hits_fc"][i], fwd),
            (f"Hit-averaged CWM, reverse complement ({n_hits} hits)", result.cwms["hits_rc"][i],
             rev),
        ]
        if "seqlets_only" in result.cwms:
            panels.append((f"Missed seqlets ({int(counts['num_seqlets_only'][i])})",
                           result.cwms["seqlets_only"][i], fwd))
            panels.append(
                (f"Extra restricted hits ({int(counts['num_hits_restricted_only'][i])})",
                 result.cwms["hits_restricted_only"][i], fwd))
        cwm_src = figs.src(plots.cwm_figure(m, panels), f"motifs/motif_{i:03d}_cwms.png")
        dist_src = figs.src(
            plots.distributions_figure(
                m,
                result.hits_per_region.filter(pl.col("motif_name") == m),
                result.hit_statistics.filter(pl.col("motif_name") == m),
            ),
            f"motifs/motif_{i:03d}_distributions.png",
        )
        motifs.append({
            "name": m, "n_hits": n_hits, "label": labels.get(m, m),
            "matches": _match_rows(matches.get(m)),
            "similarity": _fmt(float(counts["cwm_similarity"][i])),
            "cells": [_fmt(rows[i][c.name]) for c in columns[1:]],
            "figures": [_Figure(cwm_src, f"CWM logos of {m}", _CWM_CAPTION),
                        _Figure(dist_src, f"Hit distributions of {m}", _DIST_CAPTION)],
        })
    return motifs


def _match_rows(row: dict[str, Any] | None) -> list[dict[str, str]]:
    """One motif's TOMTOM matches as table cells, best first."""
    if row is None:
        return []
    return [{"rank": str(k + 1), "id": i, "name": n, "p": f"{p:.2g}", "q": f"{q:.2g}",
             "orientation": o}
            for k, (i, n, p, q, o) in enumerate(zip(
                row["match_id"], row["match_name"], row["match_pvalue"], row["match_qvalue"],
                row["match_orientation"], strict=True))]


def render_page(
    result: ReportTables, out_dir: Path, embed_images: bool = False, title_hint: str = ""
) -> str:
    """The report page as HTML text (writes figure files under ``out_dir`` unless embedded)."""
    figs = _Figures(out_dir, embed_images)
    names = result.motif_names
    total = result.hits_per_region.filter(pl.col("motif_name") == "total")
    columns = [_Column(*c) for c in _COLUMNS if c[0] in result.motif_report.columns]
    seqlet_figures = []
    if result.seqlets is not None:
        seqlet_figures.append(_Figure(
            figs.src(plots.hits_vs_seqlets_figure(result.motif_report), "hits_vs_seqlets.png"),
            "Hits vs. seqlets per motif",
            "Distinct hits against TF-MoDISco seqlets per motif (log-log; dashed: y = x). Hits "
            "usually outnumber seqlets: TF-MoDISco filters strictly and looks at a narrower "
            "window." + _ABBREV))
        if result.seqlet_confusion is not None:
            seqlet_figures.append(_Figure(
                figs.src(plots.confusion_figure(
                    confusion_matrix(result.seqlet_confusion, names), names),
                    "seqlet_confusion.png"),
                "Seqlet vs. hit confusion",
                "Rows: seqlet motif; columns: hit motif. Overlapping hits per seqlet, estimated "
                "by binning positions to the motif width. Off-diagonal colour marks motifs "
                "competing for sites." + _ABBREV))
    coocc = (
        result.cooccurrence.drop("motif_name").to_numpy().astype(np.int64)
        if names
        else np.zeros((0, 0), np.int64)
    )
    region_figures = [
        _Figure(figs.src(plots.total_hits_figure(total), "total_hits_per_region.png"),
                "Total hits per region",
                "Fraction of regions by their total number of hits (all motifs); regions "
                "without hits count as 0."),
        _Figure(figs.src(plots.cooccurrence_figure(coocc, names), "motif_cooccurrence.png"),
                "Motif co-occurrence",
                "Regions holding both motifs divided by the geometric mean of the regions "
                "holding each (1 on the diagonal)." + _ABBREV),
    ]
    qvalue_figures = []
    if result.qvalue_levels is not None:
        qvalue_figures.append(_Figure(
            figs.src(qvalue_figure(result.qvalue_levels), "qvalue_levels.png"),
            "Hits kept at q <= 0.01, 0.05 and 0.1",
            "Per motif, all of its hits and those whose per-motif q-value (hit_qvalue, "
            "README \"Calibrated hits\") is at most each level (table: motif_qvalues.tsv)."
            + _ABBREV))
    return _template().render(
        css=_CSS, title_hint=title_hint, n_regions=result.n_regions,
        n_hits=int((total["num_hits"] * total["num_regions"]).sum()),
        n_distinct=int(result.motif_report["num_hits_total"].sum()),
        has_seqlets=result.seqlets is not None, compute_recall=result.compute_recall,
        columns=columns, motifs=_motifs(result, figs, columns), seqlet_figures=seqlet_figures,
        match_database=result.match_database if result.matches is not None else "",
        region_figures=region_figures, qvalue_figures=qvalue_figures,
        qvalue_table=(result.qvalue_levels.rows() if result.qvalue_levels is not None else []),
        qvalue_columns=(result.qvalue_levels.columns if result.qvalue_levels is not None
                        else []),
    )


def write_page(
    result: ReportTables, out_dir: Path, embed_images: bool = False, title_hint: str = ""
) -> Path:
    """Write ``out_dir/report.html`` and its figures
    (:func:`nemo_dask.storage.outputs.open_output`: a file atomically, a symlink's target, a
    device or FIFO directly)."""
    make_output_dir(out_dir, "report directory")
    page = render_page(result, out_dir, embed_images, title_hint)
    path = out_dir / "report.html"
    write_text(path, page, "report page")
    return path
