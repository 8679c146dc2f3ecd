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
    """Motif tensors on a device, cropped to the union of the trimmed windows."""

    cwms: torch.Tensor  # (M, 4, Wc) float32, trimmed (and sqrt-transformed if asked)
    masks: torch.Tensor  # (M, 4, Wc) float32 trim masks
    lambdas: torch.Tensor  # (1, M, 1) float32
    offset: int  # first column of the crop in the untrimmed motif
    width: int  # W, the untrimmed width


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
    """Move a motif set to ``device`` as the solver uses it (trimmed, cropped, float32)."""
    device = torch.device(device)
    mask = torch.from_numpy(motifs.trim_masks.astype(np.float32))[:, None, :].repeat(1, 4, 1)
    cwms = torch.from_numpy(motifs.cwms).to(torch.float32) * mask
    if sqrt_transform:
        cwms = signed_sqrt(cwms)
        cwms = cwms / (cwms**2).sum(dim=(1, 2)).sqrt()[:, None, None]
    cols = np.flatnonzero(motifs.trim_masks.any(axis=0))
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    lambdas = torch.as_tensor(np.asarray(motifs.lambdas), dtype=torch.float32)[None, :, None]
    return PreparedMotifs(
        cwms=channels_last(cwms[:, :, lo:hi].to(device)),
        masks=channels_last(mask[:, :, lo:hi].to(device)),
        lambdas=lambdas.to(device),
        offset=lo,
        width=motifs.width,
    )


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` (B, C, L) stored as (B, L, C), the layout finemo uses: oneDNN then picks the same
    convolution kernels, so rounding (and so knife-edge convergence decisions) match finemo."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def signed_sqrt(x: torch.Tensor) -> torch.Tensor:
    """finemo's ``sqrt_transform``: sign(x) sqrt(|x|)."""
    return torch.sign(x) * torch.sqrt(torch.abs(x))


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
    x = contribs[:, None, :] if contribs.ndim == 2 else contribs
    lo = mo.offset
    seq = None
    if seqs is not None:
        x = x * seqs
        seq = seqs[:, :, lo:lo + lw]
    if params.sqrt_transform:
        x = signed_sqrt(x)
    length = x.shape[2]
    gscale = ((x**2).sum(dim=(1, 2)) / length).sqrt()
    if params.global_scale is not None:  # a fixed scale for tiled calling (params.py)
        gscale = torch.full_like(gscale, params.global_scale)
    x = torch.nan_to_num(x / gscale[:, None, None])
    energy = F.conv1d(x[:, :, lo:lo + lw] ** 2, mo.masks)
    imp = ((energy + params.eps) ** -0.5).clamp(max=10)
    return Preprocessed(x, seq, imp, gscale)


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One proximal-gradient step with momentum from the extrapolated point ``y``.

    Shapes: x (B, 4, L); seq (B, 4, Lw) or None (hypothetical); imp, y, c (B, M, P);
    i (B, 1, 1) int; step (B, 1, 1). Returns the next extrapolated point, the new iterate,
    the duality gap at ``y`` (divided by L) and the NLL (divided by 2L).
    """
    length = x.shape[2]
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


def sparse_prediction(cwms_t: torch.Tensor, coef: torch.Tensor, imp: torch.Tensor,
                      seq: torch.Tensor | None, lw: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                  int]:
    """The transposed convolution ``conv_transpose1d(coef * imp, cwms)`` (times ``seq``)
    computed from ``coef``'s non-zeros only, by scatter-adding one scaled motif per non-zero.

    The extrapolated point of the lasso has a handful of non-zeros per region among M x P, so
    the dense transposed convolution computes mostly zeros; this costs nnz x Wc x 4. Each
    output is the same sum as the dense one up to the order of its terms (last bits). CPU
    tensors only.

    Parameters
    ----------
    cwms_t : Tensor, shape=(M, Wc, 4)
        The cropped motifs, position-major (``cwms.transpose(1, 2)``, contiguous).
    coef, imp : Tensor, shape=(B, M, P), channels-last (stored as (B, P, M))
    seq : Tensor, shape=(B, 4, Lw), channels-last, or None (hypothetical modes)
        Multiplying each scattered term by the one-hot base is exact (0 or 1), so masking
        before the sum equals masking after it.
    lw : int
        ``P + Wc - 1``.

    Returns
    -------
    pred : Tensor, shape=(B, 4, Lw), channels-last
    abs_sum : Tensor, shape=(B, M)
        Σ_p |coef[b, m, p]| (the L1 term of the duality gap), from the same non-zeros.
    nnz : int
        How many non-zeros ``coef`` has.
    """
    b_, m_, _ = coef.shape
    nz = _NonZeros(cwms_t.numpy(), coef, imp, seq, lw)
    pred = torch.zeros((b_ * lw, 4), dtype=coef.dtype)
    pred.index_add_(0, torch.from_numpy(nz.rows), torch.from_numpy(nz.terms))
    return (pred.view(b_, lw, 4).transpose(1, 2), torch.from_numpy(nz.abs_sum(b_)).view(b_, m_),
            nz.vals.size)


def _storage(t: torch.Tensor) -> np.ndarray:
    """The flat numpy view of a channels-last (B, C, L) CPU tensor's storage, (B, L, C) order."""
    return t.transpose(1, 2).reshape(-1).numpy()


class _NonZeros:
    """The non-zeros of a (B, M, P) coefficient tensor and the motif columns each adds to the
    prediction (B * Lw rows of 4 bases). The index arithmetic runs in numpy on views of the
    tensors' storage: for a few hundred elements it costs a fraction of torch's dispatch."""

    def __init__(self, cwms_t: np.ndarray, coef: torch.Tensor, imp: torch.Tensor,
                 seq: torch.Tensor | None, lw: int):
        m_, p_ = coef.shape[1], coef.shape[2]
        wc = cwms_t.shape[1]
        flat = _storage(coef)
        idx = np.flatnonzero(flat != 0)  # ascending: the order torch.nonzero gives
        self.vals = flat[idx]
        self.m = idx % m_
        bp = idx // m_  # b * P + p
        self.b = bp // p_
        scale = self.vals * _storage(imp)[idx]
        terms = (scale[:, None, None] * cwms_t[self.m]).reshape(-1, 4)
        #: rows of the (B * Lw, 4) prediction: b * Lw + p + k for k < Wc
        self.rows = ((bp + self.b * (wc - 1))[:, None] + np.arange(wc)).reshape(-1)
        if seq is not None:
            terms *= _storage(seq).reshape(-1, 4)[self.rows]
        self.terms = terms
        self.m_ = m_

    def abs_sum(self, n_regions: int) -> np.ndarray:
        """Σ_p |coef| per (region, motif), (B * M,) float32, added in index order."""
        out = np.zeros(n_regions * self.m_, dtype=np.float32)
        np.add.at(out, self.b * self.m_ + self.m, np.abs(self.vals))
        return out


class SparseStep:
    """The CPU step (the default there): :func:`prox_step` with the transposed convolution
    from the extrapolated point's non-zeros (:class:`_NonZeros`), and fewer, layout-friendly
    passes over the (B, M, P) tensors.

    The arithmetic is :func:`prox_step`'s except for the order of terms in the prediction and
    in the L1 sum, so iterates agree with finemo's to the last bits (the duality-gap stop can
    then differ by a step in knife-edge regions, ALGORITHM.md). Built once per motif set and
    region width; called as :func:`prox_step` without the motif arguments.

    Parameters
    ----------
    mo : PreparedMotifs
        The motifs, on the CPU.
    npos : int
        P = L - W + 1, the motif positions per region.
    """

    def __init__(self, mo: PreparedMotifs, npos: int):
        m_, _, wc = mo.cwms.shape
        self.cwms = mo.cwms
        self.cwms_t = mo.cwms.transpose(1, 2).contiguous().numpy()  # (M, Wc, 4)
        self.masks_t = mo.masks.transpose(1, 2).contiguous().numpy().astype(bool)
        # λ spread over positions in the tensors' layout: broadcasting a (1, M, 1) λ over a
        # channels-last tensor takes a slow strided loop, a (1, M, P) one a vectorised one.
        self.lam = channels_last(mo.lambdas.expand(1, m_, npos).contiguous())
        self.lam_row = mo.lambdas.view(1, -1)
        lam = mo.lambdas.view(-1)
        # One λ for all motifs (finemo's default): max(g / λ) is max(g) / λ exactly (division by
        # a positive number is monotone in IEEE arithmetic), which spares a pass over (B, M, P).
        self.one_lambda = lam[0] if bool((lam == lam[0]).all()) and float(lam[0]) > 0 else None
        self.lo = mo.offset
        self.lw = npos + wc - 1

    def __call__(self, x: torch.Tensor, seq: torch.Tensor | None, imp: torch.Tensor,
                 y: torch.Tensor, c: torch.Tensor, i: torch.Tensor, step: torch.Tensor,
                 consume: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor]:
        """One step from ``y``; shapes and results as :func:`prox_step`. Inputs are not
        modified, unless ``consume``: then ``y`` and ``c`` (the caller's old iterates, dead
        after the step) are overwritten, and the next extrapolated point is built in ``y``'s
        buffer, which saves two allocations and passes over (B, M, P) per step."""
        b_, m_, _ = y.shape
        length, lo, lw = x.shape[2], self.lo, self.lw
        nz = _NonZeros(self.cwms_t, y, imp, seq, lw)
        # The prediction over whole regions (zero outside the windows), so that the residual
        # and its sums are finemo's term for term: the gap decides when a region stops.
        rows = nz.rows + np.repeat(nz.b * (length - lw) + lo, self.cwms_t.shape[1])
        pred = torch.zeros((b_ * length, 4), dtype=y.dtype)
        pred.index_add_(0, torch.from_numpy(rows), torch.from_numpy(nz.terms))
        resid = x - pred.view(b_, length, 4).transpose(1, 2)  # channels-last, as x
        ngrad = F.conv1d(resid[:, :, lo:lo + lw], self.cwms)
        ngrad.mul_(imp)

        nll = (resid**2).sum(dim=(1, 2)).numpy()
        if self.one_lambda is not None:
            dual_norm = ngrad.amax(dim=(1, 2)) / self.one_lambda
        else:
            dual_norm = (ngrad / self.lam).amax(dim=(1, 2))
        dual_diff = (resid * x).sum(dim=(1, 2)).numpy()
        l1 = (torch.from_numpy(nz.abs_sum(b_)).view(b_, m_) * self.lam_row).sum(dim=1).numpy()
        # The rest of the gap is a few values per region: numpy's float32 operations are
        # torch's, one by one, at a fraction of the dispatch cost.
        f1 = np.float32(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            dual_scale = (np.minimum(f1 / dual_norm.numpy(), f1) ** 2 + f1) / np.float32(2)
            gap = np.abs(nll * dual_scale - dual_diff + l1) / np.float32(length)
        # Nesterov momentum i / (i + 3), in float32 as torch computes it from the int counter.
        i_f = i.view(-1).numpy().astype(np.float32)
        mom_np = i_f / (i_f + np.float32(3))
        mom = torch.from_numpy(mom_np).view(-1, 1, 1)
        one_plus = torch.from_numpy(mom_np + f1).view(-1, 1, 1)

        # c_next = relu(y + step * (g - λ)), in place in the gradient's buffer.
        c_next = ngrad.sub_(self.lam).mul_(step).add_(y).relu_()
        if consume:
            y_next = torch.mul(c_next, one_plus, out=y)
            y_next.sub_(c.mul_(mom))
        else:
            y_next = c_next * one_plus
            y_next.sub_(mom * c)
        return (y_next, c_next, torch.from_numpy(gap),
                torch.from_numpy(nll / np.float32(2 * length)))

    def score(self, x: torch.Tensor, imp: torch.Tensor, coef: torch.Tensor,
              params: SolverParams) -> dict[str, np.ndarray]:
        """finemo's hit statistics (:func:`score`) at ``coef``'s non-zeros only, from the
        motif windows under each: the convolutions of :func:`score` evaluated at a handful of
        positions instead of all M x P. Sums run in float64 and are rounded once, so they
        agree with finemo's float32 convolutions to their rounding (~1e-7 relative).

        Parameters
        ----------
        x : Tensor, shape=(B, 4, L), channels-last
        imp, coef : Tensor, shape=(B, M, P), channels-last

        Returns
        -------
        dict of ndarray
            ``row`` (index into the B regions), ``motif_id``, ``hit_start`` and the hit
            columns ``hit_coefficient``, ``hit_similarity``, ``hit_importance``,
            ``hit_importance_sq``, one entry per non-zero that passes the post-filter.
        """
        m_, p_ = coef.shape[1], coef.shape[2]
        wc = self.cwms_t.shape[1]
        flat = _storage(coef)
        idx = np.flatnonzero(flat != 0)
        m = idx % m_
        bp = idx // m_
        b, pos = bp // p_, bp % p_
        imp_nz = torch.from_numpy(_storage(imp)[idx])
        imp_sq = (imp_nz**-2 - params.eps).numpy()
        # windows[h, k, base] = x[b, base, lo + pos + k]: the contributions under each hit
        xs = _storage(x).reshape(x.shape[0], -1, 4)
        cols = self.lo + pos[:, None] + np.arange(wc)
        windows = xs[b[:, None], cols].astype(np.float64)  # (nnz, Wc, 4)
        cwms = self.cwms_t[m].astype(np.float64)
        similarity = ((windows * cwms).sum(axis=(1, 2)).astype(np.float32)
                      / np.sqrt(imp_sq))
        importance = (np.abs(windows) * self.masks_t[m]).sum(axis=(1, 2)).astype(np.float32)
        vals = flat[idx]
        keep = (similarity >= self.lam_row.numpy()[0, m]) if params.post_filter else \
            np.ones(idx.size, dtype=bool)
        return {"row": b[keep], "motif_id": m[keep], "hit_start": pos[keep],
                "hit_coefficient": vals[keep], "hit_similarity": similarity[keep],
                "hit_importance": importance[keep], "hit_importance_sq": imp_sq[keep]}


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
