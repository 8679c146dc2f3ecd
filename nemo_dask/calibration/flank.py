"""The positional (flank) null: a run's own hits in the outer part of peak-centred windows.

finemo's regions are windows of width L centred on a peak's summit. True instances of the
motifs that make a peak concentrate near its summit (ChIP/ATAC footprints; the public fixture
places them ~ Normal(summit, 110 bp) in L = 1000), while false hits -- chance matches of the
motif, native instances the network attributes outside the bound site, other learned
features, noise -- fall anywhere in the window. The hits of motif m whose centre lies in the
**flanks**, farther than ``flank x L/2`` from the window's centre, then estimate m's false hits
per position at each score. Nothing is fitted: the null costs a pass over the stored hits at
the end of the run.

The rest of the window is cut into ``zones`` rings of equal width around the centre (the
*strata*), and q-values are computed in each stratum on its own (:mod:`.qvalues`), a flank
hit standing there for

    weight_(m, z) = (positions of ring z a hit of m can take) / (those in the flanks)

false hits. Inner rings hold most true instances, so their hits reach small q-values with
fewer hits than a whole-window estimate would need; the kept hits of every stratum have an
FDR at most the level, and so has their union. Hits in the flanks are the null itself: their
q-value is 1.

Assumptions (README "Calibrated hits" measures what happens when they bend): the windows are
centred on summits (tiled and interval stores are not: no flank null there); false hits are
as dense in the flanks as near the summit at every score (noise or learned structure that is
denser at the summit makes the estimate low there); true hits in the flanks are few (instances
spread wider make it high: conservative, recall is lost).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..errors import InputError

#: The stratum of hits of a run without the flank null (one stratum: the whole window).
WHOLE = 0


def _zones(distance: np.ndarray, width: int, flank: float, zones: int) -> np.ndarray:
    """Stratum of each distance (bp) from the window's centre: ring 0..zones-1, or ``zones``
    (the flanks)."""
    edge = flank * width / 2.0
    ring = np.floor(distance / edge * zones) if edge > 0 else np.full(distance.shape, zones)
    return np.where(distance > edge, zones, np.minimum(ring, zones - 1)).astype(np.int64)


def zone_positions(motifs: pl.DataFrame, width: int, motif_width: int, flank: float,
                   zones: int) -> dict[int, np.ndarray]:
    """motif_id -> positions a hit of the motif can take in each stratum, shape=(zones + 1,)
    (the last: the flanks).

    Raises
    ------
    InputError
        Some motif has no position in the flanks (windows too narrow for the flank null).
    """
    starts = np.arange(width - motif_width + 1, dtype=np.float64)
    out = {}
    for mid, s, e in motifs.select("motif_id", "motif_start", "motif_end").iter_rows():
        distance = np.abs(starts + (s + e) / 2.0 - width / 2.0)
        counts = np.bincount(_zones(distance, width, flank, zones), minlength=zones + 1)
        if counts[zones] == 0:
            raise InputError(f"regions of {width} bp leave motif {mid} (untrimmed width "
                             f"{motif_width}) no position in the flanks beyond "
                             f"{flank:g} x L/2 of the summit: the flank null needs wider "
                             "regions (or another --null)")
        out[int(mid)] = counts
    return out


def stratum_expr(width: int, flank: float, zones: int) -> pl.Expr:
    """A hit's stratum from ``hit_start``, ``motif_start`` and ``motif_end`` (Int64)."""
    centre = (pl.col("hit_start").cast(pl.Float64)
              + (pl.col("motif_start").cast(pl.Float64) + pl.col("motif_end").cast(pl.Float64))
              / 2.0)
    distance = (centre - width / 2.0).abs()
    edge = flank * width / 2.0
    ring = (distance / edge * zones).floor().clip(upper_bound=zones - 1) if edge > 0 \
        else pl.lit(zones, pl.Float64)
    return pl.when(distance > edge).then(zones).otherwise(ring).cast(pl.Int64)


def flank_null(hits: pl.DataFrame, motifs: pl.DataFrame, width: int, motif_width: int,
               flank: float, zones: int, column: str
               ) -> tuple[pl.DataFrame, dict[tuple[str, int], float]]:
    """The null hits of the flank null and their +1 weights.

    Parameters
    ----------
    hits : DataFrame
        The run's hits with ``motif_id``, ``motif_name``, ``hit_start`` and ``column``.
    motifs : DataFrame
        The motif table (``motif_id``, ``motif_start``, ``motif_end``).
    width, motif_width : int
        Region width L and untrimmed motif width W (bp).
    flank, zones
        Flanks beyond ``flank x L/2``; the rest in ``zones`` rings.
    column : str
        The ranked score.

    Returns
    -------
    nulls : DataFrame
        ``source`` ("flank"), ``motif``, ``stratum``, ``score``, ``weight``: one row per flank
        hit and stratum.
    units : dict
        ("flank", stratum) -> the weight of the +1 there (the largest over motifs).
    """
    counts = zone_positions(motifs, width, motif_width, flank, zones)
    table = motifs.select("motif_id", "motif_start", "motif_end")
    in_flank = (hits.select("motif_id", "motif_name", "hit_start", column)
                .join(table, on="motif_id", how="left")
                .filter(stratum_expr(width, flank, zones) == zones))
    parts, units = [], {}
    for z in range(zones + 1):
        weights = {m: float(c[z] / c[zones]) for m, c in counts.items()}
        units[("flank", z)] = max(weights.values()) if z < zones else 1.0
        parts.append(in_flank.select(
            source=pl.lit("flank"), motif=pl.col("motif_name"),
            stratum=pl.lit(z, pl.Int64), score=pl.col(column).cast(pl.Float64),
            weight=pl.col("motif_id").replace_strict(weights, return_dtype=pl.Float64)))
    return pl.concat(parts), units
