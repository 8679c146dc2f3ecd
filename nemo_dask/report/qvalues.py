"""The report's calibration section: hits kept per motif at q <= 0.01, 0.05 and 0.1.

Only for runs with q-values (README "Calibrated hits"): ``motif_qvalues.tsv`` and a grouped bar
chart, both from the run's ``hit_qvalue`` column over all of its hits.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from ..calibration.assign import LEVELS
from .plots import short_name, to_png

#: File name of the table.
QVALUE_TABLE = "motif_qvalues.tsv"


def qvalue_levels(hits: pl.LazyFrame, names: list[str]) -> pl.DataFrame:
    """One row per motif (``names`` order): ``num_hits`` and ``num_hits_q<=L`` for each level
    of :data:`nemo_dask.calibration.assign.LEVELS` (hits of both strands)."""
    counts = (
        hits.group_by("motif_name")
        .agg(pl.len().alias("num_hits"),
             *[(pl.col("hit_qvalue") <= level).sum().alias(f"num_hits_q<={level:g}")
               for level in LEVELS])
        .collect()
    )
    frame = pl.DataFrame({"motif_name": names}, schema={"motif_name": pl.String})
    return frame.join(counts, on="motif_name", how="left").fill_null(0).with_columns(
        pl.exclude("motif_name").cast(pl.Int64))


def qvalue_figure(table: pl.DataFrame) -> bytes:
    """Grouped bars: per motif, its hits and those kept at each q-value level (log scale)."""
    names = table["motif_name"].to_list()
    columns = ["num_hits", *[f"num_hits_q<={level:g}" for level in LEVELS]]
    labels = ["all hits", *[f"q <= {level:g}" for level in LEVELS]]
    fig = Figure(figsize=(max(5.0, 0.6 * len(names) + 2), 3.6))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    width = 0.8 / len(columns)
    for i, (col, label) in enumerate(zip(columns, labels, strict=True)):
        ax.bar(x + (i - (len(columns) - 1) / 2) * width,
               np.maximum(table[col].to_numpy(), 0.5), width, label=label)
    ax.set_yscale("log")
    ax.set_xticks(x, [short_name(n) for n in names], rotation=45, ha="right")
    ax.set_xlabel("Motif")
    ax.set_ylabel("Hits")
    ax.set_title("Hits kept at each q-value level")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return to_png(fig)
