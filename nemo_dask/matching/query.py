"""Each pattern's position probability matrix (PPM), the query that TOMTOM compares.

TOMTOM compares probability columns, and a CWM is not one: its values are contributions, signed
(negative for repressive patterns) and on an arbitrary scale. Two conversions, both from the
tfmodisco-lite H5 and over the same window, the positions whose total |CWM| reaches
``trim_threshold`` times the maximum (:func:`nemo_dask.motifs.trim_window`):

``hcwm`` (default)
    The softmax of the pattern's hypothetical CWM ``h`` (4 x w) against the background ``b``:
    ``ppm[:, i] = b * exp(beta * h[:, i]) / sum(b * exp(beta * h[:, i]))``. A hypothetical
    contribution is read as a scaled log-odds score (log(p / b) up to a per-position constant),
    which this inverts; the scale ``beta`` is the maximum-likelihood one for the bases of the
    pattern's own seqlets (the H5's ``sequence`` frequencies ``s``): it maximises
    ``sum_i sum_k s[k, i] log ppm[k, i]``, a concave function of ``beta`` (an exponential
    family), solved by safeguarded Newton steps. A negative pattern (contributions below 0 on
    its consensus) gets a negative ``beta``: it is matched as the sequence it occurs on, not as
    its mirror image.
``sequence``
    The seqlets' base frequencies themselves (the H5's ``sequence``; modisco-lite's report
    compares these), a sampling estimate with one seqlet's worth of noise per site.

On synthetic sets of JASPAR motifs planted at known sites and found by tfmodisco-lite (README),
``hcwm`` recovered the planted matrix as top match for more patterns than ``sequence``: the
hypothetical CWM averages the model's view of every site, not only the bases the seqlets hold.
Columns a window leaves without any base (a seqlet past a sequence end) are filled with ``b``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..motifs import _open_h5, trim_window

#: The conversions :func:`pattern_ppms` knows.
PPM_METHODS = ("hcwm", "sequence")

_BETA_BOUND = 1e4  # |beta| past this is a one-hot PPM to float64 precision
_NEWTON_STEPS = 200


@dataclass(frozen=True)
class PatternQuery:
    """One pattern's query PPM and where it comes from.

    Attributes
    ----------
    pattern : str
        ``pos_patterns.pattern_3``: the pattern (finemo's ``motif_name_orig``).
    ppm : ndarray, shape=(4, w), float64
        The query; columns sum to 1.
    start, end : int
        The window, in the pattern's (untrimmed, forward) coordinates.
    beta : float
        The fitted softmax scale (``hcwm``), or NaN (``sequence``).
    """

    pattern: str
    ppm: np.ndarray
    start: int
    end: int
    beta: float


def pattern_ppms(h5_path: str | os.PathLike[str], patterns: list[str], method: str = "hcwm",
                 trim_threshold: float = 0.2,
                 background: np.ndarray | None = None) -> dict[str, PatternQuery]:
    """The query PPM of each pattern in ``patterns`` (``group.pattern_N`` names).

    Parameters
    ----------
    h5_path : path
        The tfmodisco-lite H5 the run's motifs come from.
    patterns : list of str
        Pattern names (finemo's ``motif_name_orig``).
    method : {"hcwm", "sequence"}
        The conversion (module docstring).
    trim_threshold : float
        Window: positions whose total |CWM| (``contrib_scores``) reaches this fraction of the
        maximum, and those between them.
    background : ndarray, shape=(4,), optional
        A, C, G, T frequencies; uniform when omitted.

    Raises
    ------
    InputError
        A pattern, or a dataset it needs, is missing from the H5; a parameter is out of range.
    """
    if method not in PPM_METHODS:
        raise InputError(f"PPM conversion {method!r} is not one of {', '.join(PPM_METHODS)}")
    if not 0 <= trim_threshold <= 1:
        raise InputError(f"trim threshold {trim_threshold} must lie in [0, 1]")
    bg = check_background(background)
    out: dict[str, PatternQuery] = {}
    with _open_h5(Path(h5_path)) as h5:
        for name in patterns:
            group, _, pattern = name.partition(".")
            if group not in h5 or pattern not in h5[group]:
                raise InputError(f"{h5_path}: has no pattern {name}; pass the tfmodisco-lite H5 "
                                 "the run was called with")
            node = h5[group][pattern]
            cwm = _matrix(h5_path, node, name, "contrib_scores")
            seq = _matrix(h5_path, node, name, "sequence")
            start, end = trim_window(cwm, trim_threshold)
            counts = seq[:, start:end]
            if method == "sequence":
                ppm, beta = _fill(counts, bg), float("nan")
            else:
                hyp = _matrix(h5_path, node, name, "hypothetical_contribs")[:, start:end]
                beta = fit_softmax_scale(hyp, _fill(counts, bg), bg)
                ppm = softmax_ppm(hyp, beta, bg)
            out[name] = PatternQuery(name, np.ascontiguousarray(ppm), start, end, beta)
    return out


def check_background(background: np.ndarray | list[float] | None) -> np.ndarray:
    """A, C, G, T frequencies as a float64 array that sums to 1 (uniform when None)."""
    if background is None:
        return np.full(4, 0.25)
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or not np.isfinite(bg).all() or (bg <= 0).any():
        raise InputError(f"background {list(np.ravel(bg))} must be 4 positive frequencies "
                         "(A, C, G, T)")
    return bg / bg.sum()


def softmax_ppm(h: np.ndarray, beta: float, background: np.ndarray) -> np.ndarray:
    """``background * exp(beta * h)`` normalised per column; ``h`` has shape (4, w)."""
    z = beta * h + np.log(background)[:, None]
    z -= z.max(axis=0, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=0, keepdims=True)


def fit_softmax_scale(h: np.ndarray, observed: np.ndarray, background: np.ndarray) -> float:
    """The ``beta`` maximising ``sum(observed * log softmax_ppm(h, beta, background))``.

    ``h`` (4 x w) is rescaled to a largest column L1 norm of 1 first, so that the bound on
    ``beta`` means the same for any contribution scale; the returned value is for ``h`` as
    given. The log-likelihood's derivative is ``sum(observed * h) - sum(ppm * h)`` and its
    second derivative minus the summed per-column variances of ``h`` under ``ppm`` (<= 0), so
    Newton steps kept inside a shrinking bracket converge to the unique maximum, or to the
    bound when the observed bases are all at each column's maximum (a one-hot PPM).
    """
    scale = float(np.abs(h).sum(axis=0).max())
    if not np.isfinite(scale) or scale == 0:
        return 0.0
    x = h / scale
    lo, hi, beta = -_BETA_BOUND, _BETA_BOUND, 0.0
    for _ in range(_NEWTON_STEPS):
        p = softmax_ppm(x, beta, background)
        mean = (p * x).sum(axis=0)
        grad = float((observed * x).sum() - (observed.sum(axis=0) * mean).sum())
        curv = -float((observed.sum(axis=0) * ((p * x * x).sum(axis=0) - mean**2)).sum())
        if grad > 0:
            lo = beta
        else:
            hi = beta
        step = beta - grad / curv if curv < 0 else 0.5 * (lo + hi)
        if not lo < step < hi:
            step = 0.5 * (lo + hi)
        if abs(step - beta) <= 1e-10 * max(1.0, abs(beta)):
            beta = step
            break
        beta = step
    return beta / scale


def _fill(counts: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Base frequencies per column; a column without bases (a seqlet past a sequence end) or
    short of 1 is completed with the background."""
    counts = np.clip(np.nan_to_num(counts), 0, None)
    totals = counts.sum(axis=0)
    full = counts / np.maximum(totals, 1.0)
    return full + np.clip(1.0 - full.sum(axis=0), 0, None) * background[:, None]


def _matrix(path: str | os.PathLike[str], node, name: str, field: str) -> np.ndarray:  # noqa: ANN001
    if field not in node:
        raise InputError(f"{path}: pattern {name} lacks {field!r}, which the motif match "
                         "needs; re-run tfmodisco-lite (`modisco motifs`)")
    raw = np.asarray(node[field][:], dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise InputError(f"{path}: {name}/{field} has shape {raw.shape}, expected (width, 4)")
    return raw.T
