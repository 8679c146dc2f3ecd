"""What a calibrated call-hits run does besides finemo's fit: the null, the score, the pools."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

#: The nulls (README "Calibrated hits"): decoy motifs fitted with the real ones; the real
#: motifs on each region's contributions shuffled in blocks; the real motifs on background
#: regions of another store.
NULLS = ("decoy", "shuffle", "background")

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


@dataclass(frozen=True)
class CalibrationParams:
    """How call-hits assigns ``hit_qvalue`` (None of these changes a hit).

    Attributes
    ----------
    null : {"decoy", "shuffle", "background"}
        See :data:`NULLS`.
    score : str
        A key of :data:`SCORES`: what the q-value ranks.
    background : str, optional
        The background regions store (``null="background"`` only).
    seed : int
        Seeds the decoy shuffles and the contribution shuffles (per region, by its row).
    min_hits : int
        Motifs with fewer target hits share one pooled q-value group.
    decoy_max_similarity : float
        A decoy is redrawn while its best cross-correlation with a real motif reaches this.
    shuffle_block : int
        Block length (bp) of the contribution shuffle: blocks keep their internal order, so
        smoothness up to this length survives.
    """

    null: str = "decoy"
    score: str = "importance_sq"
    background: str | None = None
    seed: int = 0
    min_hits: int = 50
    decoy_max_similarity: float = 0.5
    shuffle_block: int = 3

    def __post_init__(self) -> None:
        if self.null not in NULLS:
            raise InputError(f"calibration null must be one of {list(NULLS)}, got {self.null!r}")
        if self.score not in SCORES:
            raise InputError(f"q-value score must be one of {list(SCORES)}, got {self.score!r}")
        if (self.null == "background") != (self.background is not None):
            raise InputError("the background null needs a background regions store "
                             "(--background STORE), and a background store needs that null")
        if not (isinstance(self.min_hits, int) and self.min_hits >= 1):
            raise InputError(f"min_hits must be an integer >= 1, got {self.min_hits!r}")
        if not (isinstance(self.shuffle_block, int) and self.shuffle_block >= 1):
            raise InputError(f"shuffle_block must be an integer >= 1, got {self.shuffle_block!r}")
        if not (math.isfinite(self.decoy_max_similarity) and 0 < self.decoy_max_similarity <= 1):
            raise InputError("decoy_max_similarity must lie in (0, 1], got "
                             f"{self.decoy_max_similarity!r}")

    @property
    def column(self) -> str:
        """The stored hits column the q-value ranks."""
        return SCORES[self.score]

    def identity(self) -> dict:
        """What determines the q-values (a part of the run's identity)."""
        return {k: v for k, v in vars(self).items()}
