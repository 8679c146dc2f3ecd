"""Calibrated hits: per-motif q-values from a stated null (README "Calibrated hits").

``params`` (what to do), ``decoys`` (decoy motifs), ``nulls`` (a block's null fit, on a
worker), ``qvalues`` (the estimate), ``assign`` (the end-of-run pass that writes
``hit_qvalue``), ``planted`` (planted-truth inputs to measure them on).
"""

from .params import NULLS, SCORES, CalibrationParams

__all__ = ("NULLS", "SCORES", "CalibrationParams")
