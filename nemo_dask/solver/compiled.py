"""finemo's optimiser for one region, compiled with numba: the CPU's default solver.

Each region is solved on its own, from its preprocessed arrays to its final iterate, with
finemo 0.41's arithmetic (ALGORITHM.md, "The optimisation"): the same proximal step from the
extrapolated point, Nesterov momentum, duality gap, divergence restarts and stopping rules, in
float32. What changes is how the two convolutions of a step are formed, which only reorders
the terms of sums (the rounding-robust parity of the README):

- The prediction ``conv_transpose1d(y * imp, cwms)`` is scattered from the non-zeros of ``y``
  (nnz x 4 Wc operations; the dense transposed convolution costs M x P x 4 Wc).
- The gradient ``conv1d(x - pred, cwms) * imp`` is ``g0 - conv1d(pred, cwms) * imp``, with
  ``g0 = conv1d(x, cwms) * imp`` computed once per region; ``conv1d(pred, cwms)`` is formed at
  each step, per region, the cheaper of two ways given that step's counts:

  * *columns*: the sum over the non-zeros of ``y`` of each one's column of the step's linear
    map, i.e. the cross-correlation of its motif with every motif at the 2 Wc - 1 shifts where
    they overlap (masked by the region's sequence in projected modes): nnz x (2 Wc - 1) x M.
    Columns depend on the sequence and the motifs only, so each is built once per region
    (hypothetical modes share the motif set's Gram kernels);
  * *direct*: the correlation of the masked prediction's non-zero entries with every motif:
    entries x Wc x M, never more than a dense convolution (a quarter of one in projected
    modes, where one base per position is non-zero).

  Sparse iterates (the usual lambdas) take the columns, dense ones (low lambda, divergence
  episodes) the direct way. Both are formed from ``y`` afresh at every step: nothing
  accumulates from step to step, so no error does.
- The step itself runs only over the positions where anything can change: those the
  prediction reaches, those where ``c`` is non-zero and those where the gradient of the empty
  prediction exceeds lambda; elsewhere ``y`` and ``c`` stay zero, the gradient is ``g0`` and
  its maximum per position is kept from the start.
- The residual's sums (the NLL and the dual's ``<r, x>``) run in float64 over the
  prediction's support, from ``Σ x²``.

Arrays are motif-major, (M, P), so that every inner loop runs along positions (contiguous
and vectorised). Each region's result depends on that region alone: it is the same whatever
the batch, block or thread it is solved in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: QC ``status`` codes, in the order of schema.QC_STATUS.
CONVERGED, TIMEOUT, FAILED = 0, 1, 2

_NJIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


@njit(**_NJIT)
def build_column(col, w, wkr, seq, q, mm):
    """``col`` (M, 2 Wc - 1) = conv1d(seq * conv_transpose(unit at (mm, q)), cwms) around
    ``q``: col[m, k + kr] = Σ_b w[mm, b, k] seq[b, q + k] wkr[b, m, kr], where
    ``wkr[b, m, kr] = w[m, b, Wc - 1 - kr]`` (``col[:, j]`` is the shift ``j - Wc + 1``)."""
    wc = w.shape[2]
    nm = w.shape[0]
    col[:, :] = 0
    for k in range(wc):
        for b in range(4):
            v = w[mm, b, k] * seq[b, q + k]
            if v != 0:
                for m in range(nm):
                    row = col[m]
                    src = wkr[b, m]
                    for kr in range(wc):
                        row[k + kr] += v * src[kr]


@njit(**_NJIT)
def _intervals(flags, n, starts, stops):
    """The maximal runs of non-zero ``flags[:n]`` as [starts, stops); returns how many."""
    k = 0
    inside = False
    for p in range(n):
        if flags[p]:
            if not inside:
                starts[k] = p
                inside = True
        elif inside:
            stops[k] = p
            k += 1
            inside = False
    if inside:
        stops[k] = n
        k += 1
    return k


@njit(**_NJIT)
def _fused(g0, imp, corr, lam_m, one_lam, y, c, dpos, nz, step, mom, onep):
    """One motif's step over a run of positions (1-D views of equal length): the gradient,
    its maximum per position, the proximal step, the momentum, and which positions keep
    non-zeros (bit 0: ``y``, bit 1: ``c``): finemo's formulas in float32, in its order of
    operations. Indices run from 0 so that the loop vectorises."""
    zero = np.float32(0.0)
    for p in range(g0.shape[0]):
        g = g0[p] - corr[p] * imp[p]
        gd = g if one_lam else g / lam_m
        dpos[p] = gd if gd > dpos[p] else dpos[p]
        cn = y[p] + step * (g - lam_m)
        cn = cn if cn > zero else zero
        yn = onep * cn - mom * c[p]
        c[p] = cn
        y[p] = yn
        nz[p] |= (yn != zero) | ((cn != zero) << 1)


@njit(**_NJIT)
def _corr_onehot(dst, pm1, sb, wm, k0, k1):
    """``dst[j] += Σ_k pm1[j + k] * wm[sb[j + k], k]`` for k in [k0, k1): one motif's
    correlation with a prediction that is non-zero at one base per position (projected
    modes), the base picked by selects so that the loop along positions vectorises."""
    n = dst.shape[0]
    for k in range(k0, k1):
        w0, w1, w2, w3 = wm[0, k], wm[1, k], wm[2, k], wm[3, k]
        src = pm1[k:k + n]
        bs = sb[k:k + n]
        for j in range(n):
            b = bs[j]
            wv = w0 if b == 0 else (w1 if b == 1 else (w2 if b == 2 else w3))
            dst[j] += src[j] * wv


@njit(**_NJIT)
def _corr_bases(dst, pred, wm, a, k0, k1):
    """``dst[j] += Σ_b Σ_k pred[b, a + j + k] * wm[b, k]`` for k in [k0, k1): one motif's
    correlation with a prediction over all four bases (hypothetical modes)."""
    n = dst.shape[0]
    for b in range(4):
        for k in range(k0, k1):
            wv = wm[b, k]
            src = pred[b, a + k:a + k + n]
            for j in range(n):
                dst[j] += src[j] * wv


@njit(**_NJIT)
def solve_region(x, seq, lo, g0, imp, lam, one_lam, w, wkr, gram, bases,
                 y, c, corr, pred, lists, flags, starts, stops, vec, colslot, pool, pool_keys,
                 step_size_max, step_size_min, tol, max_steps, step_adjust, way):
    """Solve one region's non-negative lasso as finemo's ``fit_contribs`` does.

    Parameters
    ----------
    x : ndarray, shape=(4, L), float32
        The region's contributions divided by its global scale.
    seq : ndarray, shape=(4, Lw), float32
        The one-hot sequence under the motif windows (projected modes), or ones (hypothetical
        modes); ``lo`` is the column of ``x`` where it starts.
    g0, imp : ndarray, shape=(M, P), float32
        ``conv1d(x, cwms) * imp`` and the importance scale.
    lam : ndarray, shape=(M,), float32
        The motifs' lambdas; ``one_lam`` when all are equal (max(g / λ) is then max(g) / λ).
    w : ndarray, shape=(M, 4, Wc), float32
        The cropped motifs; ``wkr[b, m, kr] = w[m, b, Wc - 1 - kr]``, shape (4, M, Wc).
    gram : ndarray, shape=(M, M, 2 Wc - 1), float32, or shape (0, 0, 0)
        Every motif's column (:func:`build_column` with ``seq`` all ones) in hypothetical
        modes; empty: columns are built per region from ``seq``. ``bases``: 1 in projected
        modes, 4 in hypothetical ones.
    y, c, corr : ndarray, shape=(M, P), float32
        Scratch, zero on entry. On return ``y`` and ``corr`` are zero and ``c`` holds the
        final iterate, non-zero only at the positions ``lists[1, :n]`` (``n`` returned).
    pred : ndarray, shape=(4, Lw), float32
        Scratch, zero on entry and on return.
    lists : ndarray, shape=(2, P), int32
        Scratch: positions where ``y`` (row 0) and ``c`` (row 1) have non-zeros.
    flags : ndarray, shape=(4, Lw), uint8
        Scratch.
    starts, stops : ndarray, shape=(Lw + 1,), int32
        Scratch.
    vec : ndarray, shape=(2, Lw), float32
        Scratch.
    colslot : ndarray, shape=(M, P), int32
        -1 on entry and on return; ``pool`` (C, M, 2 Wc - 1) float32 and ``pool_keys`` (C,)
        int64 hold up to C columns built for this region.
    step_size_max, step_size_min, tol, max_steps, step_adjust
        finemo's optimiser settings.
    way : int
        How ``conv1d(pred, cwms)`` is formed: 0 the cheaper way at each step, 1 always by
        columns (while the cache holds them), 2 always directly (tests use 1 and 2).

    Returns
    -------
    gap, nll : float32
        The duality gap / L and NLL / (2L) at the last step (finemo's QC values).
    steps : int
        The step counter when the region retired (finemo's ``num_steps``).
    step : float32
        The final step size.
    status : int
        TIMEOUT when the counter passed ``max_steps`` (even if the gap converged on that
        step, as finemo warns), else CONVERGED or FAILED.
    n_c : int
        How many positions of ``lists[1]`` hold ``c``'s non-zeros.
    """
    f32 = np.float32
    nm, npos_all = g0.shape
    length = x.shape[1]
    wc = w.shape[2]
    lw = pred.shape[1]
    ncol = 2 * wc - 1
    cap = pool.shape[0]
    has_gram = gram.shape[0] > 0
    lam0 = lam[0]
    cand, inw, nz, sb = flags[0], flags[1], flags[2], flags[3]
    ylist, clist = lists[0], lists[1]
    dpos, pm1 = vec[0], vec[1]
    # Once per region: Σ x²; the positions where the empty prediction's gradient exceeds λ
    # (only there can a coefficient become non-zero away from the others); the largest
    # g0 (/ λ) per position, the dual norm's term wherever nothing changes; and whether the
    # sequence is one-hot (each position one base or none), with the base of each position.
    x2 = 0.0
    for b in range(4):
        for t in range(length):
            xv = np.float64(x[b, t])
            x2 += xv * xv
    gm0 = np.full(npos_all, -np.inf, dtype=np.float32)
    cand[:npos_all] = 0
    for m in range(nm):
        lm = lam[m]
        row = g0[m]
        for p in range(npos_all):
            g = row[p]
            gd = g if one_lam else g / lm
            gm0[p] = gd if gd > gm0[p] else gm0[p]
            cand[p] |= g > lm
    onehot = bases == 1
    for t in range(lw):
        total = f32(0.0)
        sb[t] = 0
        for b in range(4):
            v = seq[b, t]
            if v != 0:
                onehot = onehot and v == 1
                sb[t] = b
            total += v
        onehot = onehot and total <= 1
    pm1[:lw] = 0
    absm = np.zeros(nm, dtype=np.float64)
    used = 0
    i = 0
    step = f32(step_size_max)
    ny = 0
    nc = 0
    gap = f32(0.0)
    nll = f32(0.0)
    status = CONVERGED
    while True:
        # 1. The prediction from y's non-zeros, and Σ|y| per motif (the L1 term).
        absm[:] = 0.0
        nnz = 0
        missing = 0
        for a in range(ny):
            q = ylist[a]
            for mm in range(nm):
                v = y[mm, q]
                if v != 0:
                    nnz += 1
                    absm[mm] += abs(v)
                    s = v * imp[mm, q]
                    for b in range(4):
                        dst = pred[b, q:q + wc]
                        src = w[mm, b]
                        for k in range(wc):
                            dst[k] += s * src[k]
                    if not has_gram and colslot[mm, q] < 0:
                        missing += 1
        # 2. Mask by the sequence; the residual's sums over the prediction's support.
        inw[:lw] = 0
        for a in range(ny):
            inw[ylist[a]:ylist[a] + wc] = 1
        nsup = _intervals(inw, lw, starts, stops)
        d_r2 = 0.0
        d_rx = 0.0
        for iv in range(nsup):
            for t in range(starts[iv], stops[iv]):
                one = f32(0.0)
                for b in range(4):
                    pm = pred[b, t] * seq[b, t]
                    pred[b, t] = pm
                    one += pm
                    xv = x[b, lo + t]
                    r = xv - pm
                    x64 = np.float64(xv)
                    r64 = np.float64(r)
                    d_r2 += r64 * r64 - x64 * x64
                    d_rx += r64 * x64 - x64 * x64
                pm1[t] = one
        nll_full = f32(x2 + d_r2)
        dual_diff = f32(x2 + d_rx)
        l1 = 0.0
        for mm in range(nm):
            l1 += np.float64(f32(absm[mm]) * lam[mm])
        l1_32 = f32(l1)
        # 3. conv1d(pred, cwms) where the prediction reaches ([q - Wc + 1, q + Wc - 1] around
        #    each non-zero), the cheaper way: by columns (short loops, one per non-zero and
        #    motif) or densely over the reached positions (long loops, one per motif and
        #    motif column; a quarter of the work where one base per position is non-zero).
        inw[:npos_all] = 0
        for a in range(ny):
            inw[max(0, ylist[a] - wc + 1):min(npos_all, ylist[a] + wc)] = 1
        nreach = _intervals(inw, npos_all, starts, stops)
        reach = 0
        for iv in range(nreach):
            reach += stops[iv] - starts[iv]
        per_pos = 3 if onehot else 4 * bases
        cost_cols = nnz * nm * (ncol + 24)
        cost_dense = nm * wc * (reach * per_pos + nreach * 24 * (1 if onehot else 4))
        if (way == 1 or (way == 0 and cost_cols < cost_dense)) and used + missing <= cap:
            for a in range(ny):
                q = ylist[a]
                for mm in range(nm):
                    v = y[mm, q]
                    if v == 0:
                        continue
                    s = v * imp[mm, q]
                    if has_gram:
                        col = gram[mm]
                    else:
                        slot = colslot[mm, q]
                        if slot < 0:
                            slot = used
                            used += 1
                            colslot[mm, q] = slot
                            pool_keys[slot] = mm * npos_all + q
                            build_column(pool[slot], w, wkr, seq, q, mm)
                        col = pool[slot]
                    p0 = q - wc + 1
                    j0 = max(0, -p0)
                    j1 = min(ncol, npos_all - p0)
                    for m in range(nm):
                        dst = corr[m, p0 + j0:p0 + j1]
                        src = col[m, j0:j1]
                        for j in range(j1 - j0):
                            dst[j] += s * src[j]
        else:
            for iv in range(nreach):
                a0, a1 = starts[iv], stops[iv]
                for m in range(nm):
                    if onehot:
                        _corr_onehot(corr[m, a0:a1], pm1[a0:], sb[a0:], w[m], 0, wc)
                    else:
                        _corr_bases(corr[m, a0:a1], pred, w[m], a0, 0, wc)
        inw[:lw] = 0
        for a in range(ny):
            inw[ylist[a]:ylist[a] + wc] = 1
        nsup = _intervals(inw, lw, starts, stops)
        for iv in range(nsup):
            pred[:, starts[iv]:stops[iv]] = 0
            pm1[starts[iv]:stops[iv]] = 0
        # 4. The step over the positions where anything can change (see the module's
        #    docstring), fused; elsewhere y and c stay zero and the gradient is g0.
        inw[:npos_all] = cand[:npos_all]
        for a in range(ny):
            inw[max(0, ylist[a] - wc + 1):min(npos_all, ylist[a] + wc)] = 1
        for a in range(nc):
            inw[clist[a]] = 1
        nwork = _intervals(inw, npos_all, starts, stops)
        i32 = f32(i)
        mom = i32 / (i32 + f32(3.0))
        onep = f32(1.0) + mom
        for iv in range(nwork):
            dpos[starts[iv]:stops[iv]] = -np.inf
            nz[starts[iv]:stops[iv]] = 0
        for m in range(nm):
            for iv in range(nwork):
                a0, a1 = starts[iv], stops[iv]
                _fused(g0[m, a0:a1], imp[m, a0:a1], corr[m, a0:a1], lam[m], one_lam,
                       y[m, a0:a1], c[m, a0:a1], dpos[a0:a1], nz[a0:a1], step, mom, onep)
                corr[m, a0:a1] = 0
        dual_norm = f32(-np.inf)
        for p in range(npos_all):
            d = dpos[p] if inw[p] else gm0[p]
            dual_norm = d if d > dual_norm else dual_norm
        ny = 0
        nc = 0
        for iv in range(nwork):
            for p in range(starts[iv], stops[iv]):
                if nz[p] & 1:
                    ylist[ny] = p
                    ny += 1
                if nz[p] & 2:
                    clist[nc] = p
                    nc += 1
        if one_lam:
            dual_norm = dual_norm / lam0
        inv = f32(1.0) / dual_norm
        if inv > f32(1.0):
            inv = f32(1.0)
        dual_scale = (inv * inv + f32(1.0)) / f32(2.0)
        gap = abs(nll_full * dual_scale - dual_diff + l1_32) / f32(length)
        nll = nll_full / f32(2 * length)
        i += 1
        if not np.isfinite(gap):  # divergence: restart from zero with a smaller step
            for a in range(ny):
                y[:, ylist[a]] = 0
            for a in range(nc):
                c[:, clist[a]] = 0
            ny = 0
            nc = 0
            i = 0
            step = f32(step * f32(step_adjust))
        if i > max_steps:
            status = TIMEOUT
            break
        if gap <= f32(tol):
            status = CONVERGED
            break
        if step < f32(step_size_min):
            status = FAILED
            break
    for slot in range(used):
        key = pool_keys[slot]
        colslot[key // npos_all, key % npos_all] = -1
    for a in range(ny):
        y[:, ylist[a]] = 0
    return gap, nll, i, step, status, nc


@njit(**_NJIT)
def take_iterate(c, clist, nc):
    """The non-zeros of the final iterate ``c`` (M, P) at the positions ``clist[:nc]``, as
    (motif, position, value) arrays in (motif, position) order; ``c`` is zero on return."""
    n = 0
    for a in range(nc):
        for m in range(c.shape[0]):
            if c[m, clist[a]] != 0:
                n += 1
    motif = np.empty(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    val = np.empty(n, dtype=np.float32)
    k = 0
    for m in range(c.shape[0]):
        for a in range(nc):
            v = c[m, clist[a]]
            if v != 0:
                motif[k] = m
                pos[k] = clist[a]
                val[k] = v
                k += 1
                c[m, clist[a]] = 0
    return motif, pos, val


@njit(**_NJIT)
def window_sums(x, w, masks, lo, rows, motif, pos):
    """finemo's hit statistics' convolutions at the hits only: for hit h (region ``rows[h]``,
    motif ``motif[h]``, window start ``pos[h]``), ``conv1d(x, cwms)`` (the similarity's
    numerator) and ``conv1d(|x|, masks)`` (hit_importance), summed in float64 and rounded once.

    Shapes: x (B, 4, L) float32; w, masks (M, 4, Wc); rows, motif, pos (H,). Returns two
    float32 arrays of shape (H,).
    """
    n = rows.shape[0]
    wc = w.shape[2]
    dot = np.empty(n, dtype=np.float32)
    imp = np.empty(n, dtype=np.float32)
    for h in range(n):
        xr = x[rows[h]]
        m = motif[h]
        start = lo + pos[h]
        acc = 0.0
        acc_abs = 0.0
        for b in range(4):
            for k in range(wc):
                v = np.float64(xr[b, start + k])
                acc += v * np.float64(w[m, b, k])
                acc_abs += abs(v) * masks[m, b, k]
        dot[h] = np.float32(acc)
        imp[h] = np.float32(acc_abs)
    return dot, imp
