"""Per-window contribution scales of a regions store, for a fixed ``global_scale``.

finemo divides each region's contributions by their RMS, ``global_scale = sqrt(sum(x^2) / L)``
(ALGORITHM.md, per-region preprocessing), so a quiet background window is magnified to the
same size as a peak. Tiled calling can instead divide every window by one fixed value; the
documented choice is a percentile of the peak windows' own scales, computed here from a store
of peak windows (``nemo-dask convert bigwig``) chunk by chunk.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import InputError

#: The percentile of ``--global-scale-from STORE`` without ``:PERCENTILE``: the median window.
DEFAULT_SCALE_PERCENTILE = 50.0


def window_scales(regions: object, *, use_hypothetical: bool = False,
                  sqrt_transform: bool = False) -> np.ndarray:
    """finemo's ``global_scale`` of every region of a store, shape (N,), float64.

    Parameters
    ----------
    regions : Regions
        An open store (:func:`nemo_dask.regions.store.open_store`).
    use_hypothetical : bool
        Modes ph/hh: the contributions as stored; otherwise projected onto the sequence.
    sqrt_transform : bool
        Apply the signed square root first, as the solver does with ``-q``.
    """
    import torch

    # The solver's own formulas, so a fixed scale is a percentile of the very values finemo's
    # per-region scaling would have used.
    from ..solver.kernels import channels_last, global_scales, signed_sqrt

    n, chunk = regions.n_regions, max(1, regions.chunk_size)  # type: ignore[attr-defined]
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = regions.read_block(start, stop)  # type: ignore[attr-defined]
        x = torch.from_numpy(block.contributions.astype(np.float32))
        if x.ndim == 2:
            x = x[:, None, :]
        x = channels_last(x)
        if not use_hypothetical:
            x = x * channels_last(torch.from_numpy(block.sequences.astype(np.float32)))
        if sqrt_transform:
            x = signed_sqrt(x)
        out[start:stop] = global_scales(x).numpy()
    return out


def peak_scale(store: str | os.PathLike[str], percentile: float = DEFAULT_SCALE_PERCENTILE, *,
               use_hypothetical: bool = False, sqrt_transform: bool = False) -> float:
    """A percentile of the (non-zero) per-window scales of a store of peak windows.

    Raises
    ------
    InputError
        A percentile outside [0, 100], or a store whose windows are all zero.
    """
    from .store import open_store

    if not 0 <= percentile <= 100:
        raise InputError(f"--global-scale-from: percentile {percentile} must lie in [0, 100]")
    scales = window_scales(open_store(store), use_hypothetical=use_hypothetical,
                           sqrt_transform=sqrt_transform)
    scales = scales[scales > 0]
    if not len(scales):
        raise InputError(f"{store}: every window's contributions are zero; no scale to take")
    return float(np.percentile(scales, percentile))


def parse_scale_from(text: str) -> tuple[str, float]:
    """``STORE`` or ``STORE:PERCENTILE`` (default :data:`DEFAULT_SCALE_PERCENTILE`) of
    ``--global-scale-from``."""
    match = re.fullmatch(r"(.+?)(?::(\d+(?:\.\d*)?))?", text)
    assert match is not None
    return match.group(1), float(match.group(2)) if match.group(2) else DEFAULT_SCALE_PERCENTILE


__all__ = ("DEFAULT_SCALE_PERCENTILE", "parse_scale_from", "peak_scale", "window_scales")
