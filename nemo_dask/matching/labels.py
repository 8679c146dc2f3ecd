"""``motif_label``: the name every output shows for a motif.

``pos_patterns.pattern_3 (SOX2)`` when the motif's best TOMTOM match passes the q-value
threshold, else the motif's name. A name given with ``-N`` wins: a renamed motif is labelled by
its new name alone. finemo's ``motif_name`` is never changed (parity, and the run's identity).
"""

from __future__ import annotations

import re

import polars as pl

LABEL = "motif_label"


def label_of(motif_name: str, motif_name_orig: str, match_names: list[str],
             match_qvalues: list[float], qvalue: float) -> str:
    """The label of one motif (module docstring)."""
    if motif_name != motif_name_orig:  # renamed with -N: the user's name wins
        return motif_name
    if match_names and match_qvalues[0] <= qvalue:
        return f"{motif_name} ({match_names[0]})"
    return motif_name


def motif_labels(motifs: pl.DataFrame) -> dict[int, str]:
    """motif_id -> label, from a run's motif table (its names when it was never annotated)."""
    column = LABEL if LABEL in motifs.columns else "motif_name"
    return dict(zip(motifs["motif_id"].to_list(), motifs[column].to_list(), strict=True))


def with_labels(hits: pl.LazyFrame, motifs: pl.DataFrame) -> pl.LazyFrame:
    """``hits`` (with ``motif_id``) plus ``motif_label`` as its last column."""
    labels = motif_labels(motifs)
    return hits.with_columns(pl.col("motif_id").replace_strict(
        labels, default=None, return_dtype=pl.String).alias(LABEL))


def labels_by_name(motifs: pl.DataFrame) -> dict[str, str]:
    """motif_name -> label (a motif's two strands share one)."""
    column = LABEL if LABEL in motifs.columns else "motif_name"
    return dict(zip(motifs["motif_name"].to_list(), motifs[column].to_list(), strict=False))


def file_stem(label: str) -> str:
    """A label as a portable file name: runs of characters other than letters, digits, ``.``,
    ``_`` and ``-`` become one ``_`` (``pos_patterns.pattern_3 (FOS::JUN)`` ->
    ``pos_patterns.pattern_3_FOS_JUN``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
    return stem if stem not in ("", ".", "..") else "motif"
