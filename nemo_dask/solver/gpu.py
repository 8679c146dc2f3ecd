"""The batched torch step's choice of how to form the prediction, for GPUs.

On a GPU the whole batch takes each step together, and the host reads the device's state only
at the convergence checks (every ``check_every`` steps: ``stream``). The transposed
convolution ``conv_transpose1d(y * imp, cwms)`` costs B x M x P x 4 Wc whatever ``y`` holds;
formed instead from the non-zeros of ``y`` (a scatter of nnz x 4 Wc products with
``index_add_``) it costs a fraction of that while they are few, and more once they are not
(atomic additions are slower per term than a convolution). Which one runs is decided at each
check, from the batch's count of non-zeros read in the same transfer as the convergence flags,
so no step waits for the host:

- the sparse way runs while the batch's non-zeros are at most :data:`SPARSE_SHARE` of
  B x M x P, with room for :func:`capacity` of them (fixed shapes: ``torch.nonzero_static``
  never synchronises);
- should the non-zeros outgrow that room between two checks (a divergence, say), the
  device raises a flag; at the check the window is undone (its starting state was kept) and
  taken again with the dense convolution. Results never depend on a truncated list.

Both ways compute the same sums in another order (the prediction's last bits differ, as
finemo's own do between batch sizes). On the CPU the compiled solver (:mod:`.cpu`) runs
instead; tests run this path on CPU tensors.
"""

from __future__ import annotations

import torch

#: The sparse prediction runs while the batch's non-zeros are at most this share of its
#: B x M x P coefficients (a scatter term costs several times a convolution's multiply-add,
#: and its room must stay within the memory of :data:`ROOM_FLOATS`).
SPARSE_SHARE = 0.001
#: Memory of the scatter's terms and destinations, in float32 values per coefficient of the
#: batch (budgeted by ``stream.cuda_batch_size``).
ROOM_FLOATS = 2
#: Smallest room for non-zeros.
MIN_CAPACITY = 1024


def capacity(total_nonzeros: int, n_coefficients: int, width: int) -> int | None:
    """Room for the non-zeros of the next window, or None when the dense way should run.

    Parameters
    ----------
    total_nonzeros : int
        Non-zeros of the batch's extrapolated points at the check.
    n_coefficients : int
        B x M x P.
    width : int
        Wc, the motifs' cropped width: each non-zero scatters 4 Wc terms, held with their
        int64 destinations (12 bytes each), so the room is at most
        ROOM_FLOATS x 4 x B x M x P / (48 Wc) non-zeros.

    Returns
    -------
    int or None
        Four times the non-zeros, rounded up to a power of two (a divergence between two
        checks would overflow it and is undone), at least :data:`MIN_CAPACITY`.
    """
    if total_nonzeros > SPARSE_SHARE * n_coefficients:
        return None
    room = max(MIN_CAPACITY, 1 << (4 * max(1, total_nonzeros) - 1).bit_length())
    return room if room * 48 * max(1, width) <= ROOM_FLOATS * 4 * n_coefficients else None


def sparse_prediction(y: torch.Tensor, imp: torch.Tensor, cwms: torch.Tensor,
                      room: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv_transpose1d(y * imp, cwms)`` from the non-zeros of ``y`` (at most ``room``).

    Parameters
    ----------
    y, imp : Tensor, shape=(B, M, P)
        The extrapolated point and the importance scale, any layout.
    cwms : Tensor, shape=(M, 4, Wc)
    room : int
        How many non-zeros the scatter holds.

    Returns
    -------
    pred : Tensor, shape=(B, 4, P + Wc - 1)
        The transposed convolution (without the one-hot mask).
    overflow : Tensor, shape=(), bool
        True when ``y`` has more than ``room`` non-zeros (``pred`` then lacks some): the
        caller must not keep this step.
    """
    b_, m_, p_ = y.shape
    wc = cwms.shape[2]
    lw = p_ + wc - 1
    dev = y.device
    # Indices into the (B, P, M) order, the storage of the solver's channels-last tensors.
    flat = y.transpose(1, 2).reshape(-1)
    idx = torch.nonzero_static(flat, size=room, fill_value=-1).view(-1)
    overflow = torch.count_nonzero(flat) > room
    valid = idx >= 0
    safe = idx.clamp(min=0)
    m = safe % m_
    bp = safe // m_
    b, p = bp // p_, bp % p_
    vals = flat[safe] * imp.transpose(1, 2).reshape(-1)[safe] * valid
    terms = vals[:, None, None] * cwms[m]  # (room, 4, Wc)
    rows = (b * 4)[:, None] + torch.arange(4, device=dev)[None, :]  # (room, 4)
    dest = (rows * lw + p[:, None])[:, :, None] + torch.arange(wc, device=dev)[None, None, :]
    pred = torch.zeros(b_ * 4 * lw, dtype=y.dtype, device=dev)
    pred.index_add_(0, dest.reshape(-1), terms.reshape(-1))
    return pred.view(b_, 4, lw), overflow
