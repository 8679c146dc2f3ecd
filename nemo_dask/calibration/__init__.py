"""Calibrated hits: per-motif q-values from a stated null (README "Calibrated hits").

``params`` (what to do: the nulls, the default, the rules for tiled stores), ``flank`` (the
default positional null: strata and weights), ``decoys`` (decoy motifs), ``nulls`` (a block's
null fit, on a worker), ``qvalues`` (the estimate), ``estimate`` (a run's nulls combined into
q-values), ``assign`` (the end-of-run pass that writes ``qvalues/``), ``planted`` and
``evaluate`` (planted-truth inputs, and measuring q-values on them).
"""

from .params import NULLS, SCORES, CalibrationParams

__all__ = ("NULLS", "SCORES", "CalibrationParams")
