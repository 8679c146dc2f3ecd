"""What a calibrated call-hits run does besides finemo's fit: the null, the score, the pools."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

#: The nulls (README "Calibrated hits"): the run's own hits in the windows' flanks (nothing
#: fitted); decoy motifs fitted with the real ones; the real motifs on each region's
#: contributions shuffled in blocks; the real motifs on background regions of another store.
NULLS = ("flank", "decoy", "shuffle", "background")
#: Nulls that need a second fit of every region (or of the background regions).
FITTED_NULLS = ("decoy", "shuffle", "background")
#: The default: calibrated on the most kinds of planted data at no fitting cost (README).
DEFAULT_NULL = "flank"

#: Scores a q-value may rank -> the stored hits column holding it. ``importance_sq`` (the
#: window's summed squared contribution, on the region's raw scale) is the default: on the
#: planted-truth sets of README "Calibrated hits" it ranked planted instances above other hits
#: better than every other column and product of columns tried.
SCORES = {
    "importance_sq": "hit_importance_sq",
    "coefficient_global": "hit_coefficient_global",
    "coefficient": "hit_coefficient",
    "similarity": "hit_similarity",
    "importance": "hit_importance",
}


def null_parts(null: str) -> tuple[str, ...]:
    """The nulls of a ``--null`` value in canonical order (``decoy+flank`` -> flank, decoy).

    Raises
    ------
    InputError
        An unknown null, a repeated one, or two fitted nulls (one extra fit per block).
    """
    parts = [p.strip() for p in str(null).split("+")]
    unknown = [p for p in parts if p not in NULLS]
    if unknown or not parts:
        raise InputError(f"calibration null must be one of {list(NULLS)} or two joined by "
                         f"'+' (e.g. flank+decoy), got {null!r}")
    if len(set(parts)) != len(parts) or sum(p in FITTED_NULLS for p in parts) > 1:
        raise InputError(f"null {null!r}: combine the flank null with at most one of "
                         f"{list(FITTED_NULLS)}, each once")
    return tuple(p for p in NULLS if p in parts)


@dataclass(frozen=True)
class CalibrationParams:
    """How call-hits assigns ``hit_qvalue`` (None of these changes a hit).

    Attributes
    ----------
    null : str
        One of :data:`NULLS`, or the flank null and one fitted null joined by ``+``
        (``flank+decoy``: the larger of the two FDR estimates at each threshold).
    score : str
        A key of :data:`SCORES`: what the q-value ranks.
    background : str, optional
        The background regions store (a null with ``background`` only).
    seed : int
        Seeds the decoy shuffles and the contribution shuffles (per region, by its row).
    min_hits : int
        Motifs with fewer target hits share one pooled q-value group.
    decoy_max_similarity : float
        A decoy is redrawn while its best cross-correlation with a real motif reaches this.
    shuffle_block : int
        Block length (bp) of the contribution shuffle: blocks keep their internal order, so
        smoothness up to this length survives.
    flank : float
        The flank null's flanks start this fraction of L/2 from the window's centre (0.7: the
        outer 30 % of each half-window).
    zones : int
        With the flank null, the rest of the window is cut into this many rings (strata) around
        the centre, each given its own q-values (:mod:`nemo_dask.calibration.flank`).
    """

    null: str = DEFAULT_NULL
    score: str = "importance_sq"
    background: str | None = None
    seed: int = 0
    min_hits: int = 50
    decoy_max_similarity: float = 0.5
    shuffle_block: int = 3
    flank: float = 0.7
    zones: int = 4

    def __post_init__(self) -> None:
        parts = null_parts(self.null)
        object.__setattr__(self, "null", "+".join(parts))
        if self.score not in SCORES:
            raise InputError(f"q-value score must be one of {list(SCORES)}, got {self.score!r}")
        if ("background" in parts) != (self.background is not None):
            raise InputError("the background null needs a background regions store "
                             "(--background STORE), and a background store needs that null")
        if not (isinstance(self.min_hits, int) and self.min_hits >= 1):
            raise InputError(f"min_hits must be an integer >= 1, got {self.min_hits!r}")
        if not (isinstance(self.shuffle_block, int) and self.shuffle_block >= 1):
            raise InputError(f"shuffle_block must be an integer >= 1, got {self.shuffle_block!r}")
        if not (math.isfinite(self.decoy_max_similarity) and 0 < self.decoy_max_similarity <= 1):
            raise InputError("decoy_max_similarity must lie in (0, 1], got "
                             f"{self.decoy_max_similarity!r}")
        if not (math.isfinite(self.flank) and 0 < self.flank < 1):
            raise InputError(f"flank must lie in (0, 1), got {self.flank!r}")
        if not (isinstance(self.zones, int) and self.zones >= 1):
            raise InputError(f"zones must be an integer >= 1, got {self.zones!r}")

    @property
    def parts(self) -> tuple[str, ...]:
        """The nulls combined (:func:`null_parts`)."""
        return null_parts(self.null)

    @property
    def fitted(self) -> str | None:
        """The null that needs a second fit (decoy, shuffle or background), if any."""
        return next((p for p in self.parts if p in FITTED_NULLS), None)

    @property
    def positional(self) -> bool:
        """Whether the flank null is one of the nulls."""
        return "flank" in self.parts

    @property
    def column(self) -> str:
        """The stored hits column the q-value ranks."""
        return SCORES[self.score]

    def identity(self) -> dict:
        """What determines the q-values (recorded in parameters.json and the manifest)."""
        keep = {k: v for k, v in vars(self).items()}
        if not self.positional:
            keep.pop("flank")
            keep.pop("zones")
        return keep


#: ``--null none``: no q-values.
NO_NULL = "none"


def resolve_calibration(null: str | None, background: str | None, score: str, *, tiled: bool,
                        where: str) -> CalibrationParams | None:
    """The calibration of a run from call-hits' options (None: no q-values).

    ``null`` None is the default: the background null when a ``background`` store is given,
    else the flank null -- except on a tiled (interval) store, whose windows have no summit:
    there the run gets no q-values unless a null is named, and a warning says so.

    Raises
    ------
    InputError
        An unknown null, the flank null asked for on a tiled store, a background store with a
        null that does not use it (or none), or an unknown score.
    """
    if null == NO_NULL:
        if background is not None:
            raise InputError(f"--background {background} gives the background null its "
                             "regions, but --null none turns q-values off; drop one of them")
        return None
    if null is None:
        if background is not None:
            null = "background"
        elif tiled:
            warnings.warn(f"{where} holds tiled windows (convert intervals), which have no "
                          "summit, so the default flank null does not apply and the hits get "
                          "no q-values; pass --null decoy or --background STORE for q-values",
                          stacklevel=4)
            return None
        else:
            null = DEFAULT_NULL
    params = CalibrationParams(null=null, score=score, background=background)
    if tiled and params.positional:
        raise InputError(f"{where} holds tiled windows (convert intervals), which have no "
                         "summit: the flank null needs windows centred on peak summits; use "
                         "--null decoy or --background STORE")
    return params


def fitted_identity(params: CalibrationParams | None,
                    background: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The part of a run's identity its null fit adds: what determines the null partitions
    every block writes (None without a fitted null; the flank null and the q-value settings
    are computed again from the stored hits at the end of each call, and change no file of a
    block)."""
    if params is None or params.fitted is None:
        return None
    record: dict[str, Any] = {"null": params.fitted}
    if params.fitted == "decoy":
        record.update(seed=params.seed, decoy_max_similarity=params.decoy_max_similarity)
    elif params.fitted == "shuffle":
        record.update(seed=params.seed, shuffle_block=params.shuffle_block)
    else:
        record["background"] = background
    return record
