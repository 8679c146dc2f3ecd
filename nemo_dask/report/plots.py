"""The report's figures as PNG bytes (matplotlib's Agg canvas; no pyplot state, no display).

Every figure has a title and labelled axes so that it reads on its own when saved or copied.
"""

from __future__ import annotations

import io

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .logo import draw_logo

DPI = 100
_STAT_LABELS = {
    "hit_coefficient_global": "Hit coefficient",
    "hit_similarity": "Hit similarity",
    "hit_importance": "Hit importance",
}


def short_name(name: str) -> str:
    """``pos_patterns.pattern_3`` -> ``+/3`` (``neg`` -> ``-``); other names unchanged."""
    group, _, pattern = name.partition(".")
    sign = {"pos_patterns": "+", "neg_patterns": "-"}.get(group)
    number = pattern.rpartition("_")[2]
    if sign is None or not number.isdigit():
        return name
    return f"{sign}/{number}"


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def cwm_figure(
    name: str,
    panels: list[tuple[str, np.ndarray, tuple[int, int]]],
) -> bytes:
    """Sequence logos of one motif, two per row.

    Parameters
    ----------
    name : str
        Motif name (figure title).
    panels : list of (title, cwm (4, W), (trim_start, trim_end))
        Logos in reading order; the trimmed core is shaded.
    """
    n_rows = -(-len(panels) // 2)
    fig = Figure(figsize=(11, 1.7 * n_rows + 0.5), layout="constrained")
    fig.suptitle(name, fontsize=11, fontweight="bold")
    axes = fig.subplots(n_rows, 2, squeeze=False)
    for ax, (title, cwm, bounds) in zip(axes.flat, panels, strict=False):
        if np.isnan(cwm).all():
            ax.text(
                0.5,
                0.5,
                "no instances",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            draw_logo(ax, cwm, shade=bounds)
            ax.set_ylabel("contribution", fontsize=8)
            ax.tick_params(labelsize=7)
        ax.set_title(title, fontsize=9, loc="left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    return to_png(fig)


def distributions_figure(name: str, per_region: pl.DataFrame, histograms: pl.DataFrame) -> bytes:
    """Hits per region and the three hit statistics of one motif, side by side.

    Parameters
    ----------
    per_region : polars.DataFrame
        num_hits, num_regions of this motif (zeros included).
    histograms : polars.DataFrame
        statistic, bin_left, bin_right, count of this motif.
    """
    fig = Figure(figsize=(12, 2.3), layout="constrained")
    fig.suptitle(name, fontsize=10, fontweight="bold")
    axes = fig.subplots(1, 4)
    k = per_region["num_hits"].to_numpy()
    n = per_region["num_regions"].to_numpy()
    axes[0].bar(k, n / max(n.sum(), 1), width=0.8, color="#4C72B0")
    axes[0].set_xlabel("hits per region", fontsize=8)
    axes[0].set_ylabel("fraction of regions", fontsize=8)
    axes[0].set_title("Hits per region", fontsize=9)
    for ax, stat in zip(axes[1:], _STAT_LABELS, strict=True):
        h = histograms.filter(pl.col("statistic") == stat)
        left, right, count = (h[c].to_numpy() for c in ("bin_left", "bin_right", "count"))
        total = int(count.sum())
        dens = count / (total * (right - left)) if total else count.astype(float)
        if len(left):
            ax.stairs(dens, np.append(left, right[-1:]), fill=True, color="#55A868")
        ax.set_xlabel(_STAT_LABELS[stat].lower(), fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.set_title(f"{_STAT_LABELS[stat]} (n={total})", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=7)
    return to_png(fig)


def total_hits_figure(per_region: pl.DataFrame) -> bytes:
    """Distribution of the total number of hits per region (all motifs)."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.subplots()
    k = per_region["num_hits"].to_numpy()
    n = per_region["num_regions"].to_numpy()
    ax.bar(k, n / max(n.sum(), 1), width=0.8, color="#4C72B0")
    ax.set_xlabel("total hits per region")
    ax.set_ylabel("fraction of regions")
    ax.set_title(f"Hits per region, all motifs ({int(n.sum())} regions)")
    return to_png(fig)


def _heatmap(
    matrix: np.ndarray, names: list[str], title: str, xlabel: str, ylabel: str, cmap: str, cbar: str
) -> bytes:
    labels = [short_name(m) for m in names]
    side = min(9.0, 3.5 + 0.3 * len(names))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap=cmap, interpolation="nearest", aspect="equal", vmin=0)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.7, label=cbar)
    return to_png(fig)


def cooccurrence_figure(coocc: np.ndarray, names: list[str]) -> bytes:
    """Motif co-occurrence: regions with both motifs / sqrt(regions with each) (cosine)."""
    diag = np.sqrt(np.diag(coocc).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = coocc / np.outer(diag, diag)
    return _heatmap(
        np.nan_to_num(norm),
        names,
        "Motif co-occurrence in regions",
        "motif",
        "motif",
        "Greens",
        "cosine of region indicators",
    )


def confusion_figure(matrix: np.ndarray, names: list[str]) -> bytes:
    """Seqlet-vs-hit confusion: rows seqlet motif, columns hit motif."""
    return _heatmap(
        matrix,
        names,
        "Seqlets overlapping hits",
        "hit motif",
        "seqlet motif",
        "Blues",
        "hits per seqlet (binned overlap)",
    )


def hits_vs_seqlets_figure(report: pl.DataFrame) -> bytes:
    """Hits per motif against TF-MoDISco seqlets per motif, log-log, with the y = x line."""
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    x = report["num_hits_total"].to_numpy().astype(float)
    y = report["num_seqlets"].to_numpy().astype(float)
    ok = (x > 0) & (y > 0)
    ax.scatter(x[ok], y[ok], s=18, color="#C44E52", zorder=3)
    for name, xi, yi, good in zip(report["motif_name"], x, y, ok, strict=True):
        if good:
            ax.annotate(
                short_name(name), (xi, yi), fontsize=8, xytext=(3, 3), textcoords="offset points"
            )
    both = np.concatenate([x[ok], y[ok]])
    lo = float(both.min()) / 2 if both.size else 0.5
    hi = float(both.max()) * 2 if both.size else 10.0
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--", label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    for axis in (ax.xaxis, ax.yaxis):  # 1-2-5 labels: readable over short and long ranges
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("hits per motif")
    ax.set_ylabel("TF-MoDISco seqlets per motif")
    ax.set_title("Hits vs. seqlets per motif")
    ax.legend(loc="upper left", fontsize=8)
    return to_png(fig)
