"""A run's q-values from its hits and its nulls: the one place that combines them.

Both the end-of-run pass of call-hits (:mod:`.assign`) and the in-process evaluation
(:mod:`.evaluate`) call :func:`run_qvalues`, so what the README measures is what a run
computes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import polars as pl

from .flank import WHOLE, flank_null, stratum_expr
from .params import CalibrationParams
from .qvalues import Key, QTable, assign, qvalue_tables

_NULL_SCHEMA = {"source": pl.String, "motif": pl.String, "stratum": pl.Int64,
                "score": pl.Float64, "weight": pl.Float64}


class Estimate(NamedTuple):
    """Every hit's q-value (``q``, shape=(n,), in the order of the hits given), the groups
    and tables it came from, and the null hits' counts per null."""

    q: np.ndarray
    groups: dict[str, str]
    tables: dict[Key, QTable]
    n_null: dict[str, int]

    def record(self) -> dict[str, Any]:
        """Counts for ``parameters.json``: each motif's group and each table's counts."""
        return {
            "groups": {m: g for m, g in sorted(self.groups.items())},
            "group_counts": {f"{g}|{s}" if s != WHOLE or _strata(self.tables) else g:
                             {"targets": t.n_targets, "null": t.n_null}
                             for (g, s), t in sorted(self.tables.items())},
        }


def _strata(tables: dict[Key, QTable]) -> bool:
    return any(s != WHOLE for _, s in tables)


def run_qvalues(hits: pl.DataFrame, fitted: pl.DataFrame | None, params: CalibrationParams, *,
                motifs: pl.DataFrame, width: int, motif_width: int,
                ratio: float = 1.0) -> Estimate:
    """The q-value of every hit of a run.

    Parameters
    ----------
    hits : DataFrame
        Every target hit: ``motif_id``, ``motif_name``, ``hit_start`` and the ranked score
        column (``params.column``), in the stored hits' units.
    fitted : DataFrame, optional
        The fitted null's hits (``motif_id`` and ``motif_name`` of the motif they stand for,
        ``hit_start``, the score column); needed when ``params`` has a fitted null.
    params : CalibrationParams
    motifs : DataFrame
        The run's motif table (the flank null's trim windows).
    width, motif_width : int
        Region width L and untrimmed motif width W (the flank null's positions).
    ratio : float
        Weight of one fitted null hit (regions called / background regions for a background
        null; 1 otherwise).

    Raises
    ------
    InputError
        The flank null on regions too narrow to have flanks.
    ValueError
        A fitted null is asked for but ``fitted`` is None.
    """
    column = params.column
    positions = motifs.select("motif_id", "motif_start", "motif_end")

    def strata(frame: pl.DataFrame) -> pl.Series:
        if not params.positional:
            return pl.Series("stratum", np.full(frame.height, WHOLE, dtype=np.int64))
        return (frame.select("motif_id", "hit_start").join(positions, on="motif_id", how="left",
                                                           maintain_order="left")
                .select(stratum_expr(width, params.flank, params.zones).alias("stratum"))
                .to_series())

    stratum = strata(hits)
    targets = hits.select(motif=pl.col("motif_name"), score=pl.col(column).cast(pl.Float64)
                          ).with_columns(stratum)
    parts: list[pl.DataFrame] = []
    units: dict[tuple[str, int], float] = {}
    zones = range(params.zones + 1) if params.positional else (WHOLE,)
    if params.positional:
        flank_hits, flank_units = flank_null(hits, motifs, width, motif_width, params.flank,
                                             params.zones, column)
        parts.append(flank_hits)
        units.update(flank_units)
    if params.fitted is not None:
        if fitted is None:
            raise ValueError(f"the {params.fitted} null's hits are needed")
        parts.append(fitted.select(source=pl.lit(params.fitted), motif=pl.col("motif_name"),
                                   score=pl.col(column).cast(pl.Float64),
                                   weight=pl.lit(float(ratio), pl.Float64))
                     .with_columns(strata(fitted)))
        units.update({(params.fitted, z): float(ratio) for z in zones})
    nulls = (pl.concat([p.select(list(_NULL_SCHEMA)).cast(_NULL_SCHEMA) for p in parts])
             if parts else pl.DataFrame(schema=_NULL_SCHEMA))
    groups, tables = qvalue_tables(targets, nulls, units, min_hits=params.min_hits)
    # (a flank hit is a null hit of every stratum: counted once, in the flanks)
    once = nulls.filter((pl.col("source") != "flank") | (pl.col("stratum") == params.zones))
    counts = dict(once.group_by("source").len().iter_rows())
    q = assign(hits, groups, tables, column, stratum.to_numpy())
    return Estimate(q, groups, tables,
                    {name: int(counts.get(name, 0)) for name, _ in sorted(set(units))})
