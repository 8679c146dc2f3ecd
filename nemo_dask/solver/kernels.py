"""finemo 0.41's numerics as pure tensor steps: motif preparation, preprocessing, the proximal
gradient step and scoring (see ALGORITHM.md). No state, no bookkeeping of which region sits in
which batch slot: that is :mod:`.stream`'s job.

Motifs are cropped to the union of their trimmed windows (finemo multiplies every motif by its
trim mask, so they are zero outside it): the convolutions use only that union and place the
results at the same positions. Tensors are kept channels-last as finemo keeps them, so that
oneDNN picks the same kernels and rounding matches finemo's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..motifs import Motifs
from ..params import SolverParams


class PreparedMotifs(NamedTuple):
    """Motif tensors on a device: cropped to the union of the trimmed windows for the steps,
    and whole (finemo's own tensors) for the preprocessing and ``exact``."""

    cwms: torch.Tensor  # (M, 4, Wc) float32, trimmed (and sqrt-transformed if asked)
    masks: torch.Tensor  # (M, 4, Wc) float32 trim masks
    lambdas: torch.Tensor  # (1, M, 1) float32
    offset: int  # first column of the crop in the untrimmed motif
    width: int  # W, the untrimmed width
    full_cwms: torch.Tensor  # (M, 4, W) finemo's trimmed motifs, channels-last
    full_masks: torch.Tensor  # (M, 4, W) finemo's trim masks, channels-last

    def uncropped(self) -> PreparedMotifs:
        """The same motifs with the crop undone (offset 0, Wc = W): finemo's convolutions
        exactly, for ``exact``."""
        return self._replace(cwms=self.full_cwms, masks=self.full_masks, offset=0)


class Preprocessed(NamedTuple):
    """Regions ready for the optimiser (finemo's per-batch preprocessing)."""

    x: torch.Tensor  # (B, 4, L) contributions, divided by their global scale
    seq: torch.Tensor | None  # (B, 4, Lw) one-hot under the motif windows; None if hypothetical
    imp: torch.Tensor  # (B, M, P) importance scale of each motif position
    gscale: torch.Tensor  # (B,) global scale (RMS of the contributions)


class Scores(NamedTuple):
    """Per-hit statistics of retired regions (finemo's hit scoring)."""

    coef: torch.Tensor  # (B, M, P) coefficients, post-filtered if asked
    similarity: torch.Tensor  # (B, M, P)
    importance: torch.Tensor  # (B, M, P)
    importance_sq: torch.Tensor  # (B, M, P)


def prepare_motifs(motifs: Motifs, device: torch.device | str, sqrt_transform: bool) -> PreparedMotifs:
    """Move a motif set to ``device`` as the solver uses it (trimmed, cropped, float32).

    As finemo's ``fit_contribs``: channels-last float32 motifs times channels-last masks,
    then the signed square root and its renormalisation, summed over the same layout (so
    that the motifs have finemo's bits)."""
    device = torch.device(device)
    mask = channels_last(torch.from_numpy(motifs.trim_masks)[:, None, :].repeat(1, 4, 1)
                         .to(device=device, dtype=torch.float32))
    cwms = channels_last(torch.from_numpy(motifs.cwms).to(device=device, dtype=torch.float32))
    cwms = cwms * mask
    if sqrt_transform:
        cwms = signed_sqrt(cwms)
        cwms = cwms / (cwms**2).sum(dim=(1, 2)).sqrt()[:, None, None]
    cols = np.flatnonzero(motifs.trim_masks.any(axis=0))
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    lambdas = torch.as_tensor(np.asarray(motifs.lambdas), dtype=torch.float32)[None, :, None]
    return PreparedMotifs(
        cwms=channels_last(cwms[:, :, lo:hi]),
        masks=channels_last(mask[:, :, lo:hi]),
        lambdas=lambdas.to(device),
        offset=lo,
        width=motifs.width,
        full_cwms=cwms,
        full_masks=mask,
    )


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` (B, C, L) stored as (B, L, C), the layout finemo uses: oneDNN then picks the same
    convolution kernels, so rounding (and so knife-edge convergence decisions) match finemo."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def signed_sqrt(x: torch.Tensor) -> torch.Tensor:
    """finemo's ``sqrt_transform``: sign(x) sqrt(|x|)."""
    return torch.sign(x) * torch.sqrt(torch.abs(x))


def global_scales(x: torch.Tensor) -> torch.Tensor:
    """finemo's ``global_scale`` of each region: the RMS of its contributions over bases and
    positions, ``sqrt(sum(x^2) / L)`` (ALGORITHM.md, per-region preprocessing).

    Parameters
    ----------
    x : Tensor, shape=(B, 4, L)
        Contributions as fitted (projected or hypothetical, signed-sqrt if asked).

    Returns
    -------
    Tensor, shape=(B,)
        In ``x``'s dtype; summed in ``x``'s memory layout (finemo's channels-last for its bits).
    """
    return ((x**2).sum(dim=(1, 2)) / x.shape[2]).sqrt()


def preprocess(contribs: torch.Tensor, seqs: torch.Tensor | None, mo: PreparedMotifs,
               params: SolverParams, lw: int) -> Preprocessed:
    """finemo's preprocessing of a batch of regions.

    Parameters
    ----------
    contribs : Tensor, shape=(B, 4, L) or (B, L), float32, on the solver's device
        Hypothetical contributions, or compact projected ones.
    seqs : Tensor, shape=(B, 4, L), float32, or None
        One-hot sequences; given for projected modes (contributions are masked by them).
    lw : int
        Width of the motif windows' union, ``L - W + Wc``.
    """
    x, seq, gscale = scaled_contributions(contribs, seqs, mo, params, lw)
    # finemo's whole-width convolution (the crop would sum the same terms in another order).
    energy = F.conv1d(x**2, mo.full_masks)
    return Preprocessed(x, seq, importance_scale(energy, params), gscale)


def scaled_contributions(contribs: torch.Tensor, seqs: torch.Tensor | None,
                         mo: PreparedMotifs, params: SolverParams,
                         lw: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The first part of :func:`preprocess`: x (B, 4, L) divided by its global scale, the
    one-hot under the motif windows (B, 4, Lw) or None, and the global scales (B,)."""
    # finemo's layouts (channels-last contributions and sequences, so their product is too):
    # the global scale is a sum over that layout, and its rounding depends on the order.
    x = channels_last(contribs[:, None, :] if contribs.ndim == 2 else contribs)
    lo = mo.offset
    seq = None
    if seqs is not None:
        seqs = channels_last(seqs)
        x = x * seqs
        seq = seqs[:, :, lo:lo + lw]
    if params.sqrt_transform:
        x = signed_sqrt(x)
    gscale = global_scales(x)
    if params.global_scale is not None:  # a fixed scale for tiled calling (params.py)
        gscale = torch.full_like(gscale, params.global_scale)
    return torch.nan_to_num(x / gscale[:, None, None]), seq, gscale


def importance_scale(energy: torch.Tensor, params: SolverParams) -> torch.Tensor:
    """finemo's importance scale from the window energies: (E + eps)^(-1/2), at most 10."""
    return ((energy + params.eps) ** -0.5).clamp(max=10)


def prox_step(
    cwms: torch.Tensor,
    x: torch.Tensor,
    seq: torch.Tensor | None,
    imp: torch.Tensor,
    y: torch.Tensor,
    c: torch.Tensor,
    i: torch.Tensor,
    step: torch.Tensor,
    lambdas: torch.Tensor,
    lo: int,
    pred: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One proximal-gradient step with momentum from the extrapolated point ``y``.

    Shapes: x (B, 4, L); seq (B, 4, Lw) or None (hypothetical); imp, y, c (B, M, P);
    i (B, 1, 1) int; step (B, 1, 1). ``pred``: the transposed convolution of ``y * imp``
    (B, 4, Lw) when the caller formed it otherwise (:mod:`.gpu`). Returns the next
    extrapolated point, the new iterate, the duality gap at ``y`` (divided by L) and the NLL
    (divided by 2L).
    """
    length = x.shape[2]
    if pred is None:
        pred = F.conv_transpose1d(y * imp, cwms)  # (B, 4, Lw): zero outside [lo, lo + Lw)
    if seq is not None:
        pred = pred * seq
    hi = lo + pred.shape[2]
    resid = x.clone()
    resid[:, :, lo:hi] -= pred
    ngrad = F.conv1d(resid[:, :, lo:hi], cwms) * imp  # minus the gradient, (B, M, P)

    nll = (resid**2).sum(dim=(1, 2))
    dual_norm = (ngrad / lambdas).amax(dim=(1, 2))
    dual_scale = (torch.clamp(1 / dual_norm, max=1.0) ** 2 + 1) / 2
    dual_diff = (resid * x).sum(dim=(1, 2))
    l1 = (torch.abs(y).sum(dim=2, keepdim=True) * lambdas).sum(dim=(1, 2))
    gap = (nll * dual_scale - dual_diff + l1).abs() / length

    c_next = F.relu(y + step * (ngrad - lambdas))
    mom = i / (i + 3.0)
    y_next = (1 + mom) * c_next - mom * c
    return y_next, c_next, gap, nll / (2 * length)


@functools.lru_cache(maxsize=1)
def compiled_step() -> Callable:
    """:func:`prox_step` through ``torch.compile`` (finemo's ``--compile``), compiled once."""
    return torch.compile(prox_step, fullgraph=True, dynamic=True)


def score(x: torch.Tensor, imp: torch.Tensor, coef: torch.Tensor, mo: PreparedMotifs,
          params: SolverParams, lw: int) -> Scores:
    """finemo's hit statistics of finished regions: similarity, importance and the
    post-filter (hits whose similarity is below the motif's lambda are dropped).

    Shapes: x (B, 4, L), imp and coef (B, M, P).
    """
    lo = mo.offset
    imp_sq = imp**-2 - params.eps
    xw = x[:, :, lo:lo + lw]
    importance = F.conv1d(torch.abs(xw), mo.masks)
    similarity = F.conv1d(xw, mo.cwms) / imp_sq.sqrt()
    if params.post_filter:
        coef = coef * (similarity >= mo.lambdas)
    return Scores(coef, similarity, importance, imp_sq)
