"""finemo's optimiser for one region, compiled with numba: the CPU's default solver.

Each region is solved on its own, from its preprocessed arrays to its final iterate, with
finemo 0.41's arithmetic (ALGORITHM.md, "The optimisation"): the same proximal step from the
extrapolated point, Nesterov momentum, duality gap, divergence restarts and stopping rules, in
float32. What changes is how the two convolutions of a step are formed, which only reorders
the terms of sums (the rounding-robust parity of the README):

- The prediction ``conv_transpose1d(y * imp, cwms)`` is scattered from the non-zeros of ``y``
  (nnz x 4 Wc operations; the dense transposed convolution costs M x P x 4 Wc), or, once they
  are many, accumulated motif by motif along the runs of positions holding them.
- The gradient ``conv1d(x - pred, cwms) * imp`` is ``g0 - conv1d(pred, cwms) * imp``, with
  ``g0 = conv1d(x, cwms) * imp`` computed once per region; ``conv1d(pred, cwms)`` is formed at
  each step, per region, the cheaper of two ways given that step's counts:

  * *columns*: the sum over the non-zeros of ``y`` of each one's column of the step's linear
    map, i.e. the cross-correlation of its motif with every motif at the 2 Wc - 1 shifts where
    they overlap (masked by the region's sequence in projected modes): nnz x (2 Wc - 1) x M.
    Columns depend on the sequence and the motifs only, so each is built once per region
    (hypothetical modes share the motif set's Gram kernels);
  * *dense*: the correlation of the masked prediction with every motif over the positions
    it reaches: (positions) x Wc x M, a quarter of that where the sequence is one-hot (one
    base per position is non-zero), never more than a dense convolution.

  Sparse iterates (the usual lambdas) take the columns, dense ones (low lambda, divergence
  episodes) the dense way. Both are formed from ``y`` afresh at every step: nothing
  accumulates from step to step, so no error does.
- The step itself runs only over the positions where anything can change: those the
  prediction reaches, those where ``c`` is non-zero and those where the gradient of the empty
  prediction exceeds lambda; elsewhere ``y`` and ``c`` stay zero, the gradient is ``g0`` and
  its maximum per position is kept from the start.
- The residual's sums (the NLL and the dual's ``<r, x>``) run in float64 over the
  prediction's support, from ``Σ x²``.

Arrays are position-major, as torch's channels-last tensors store them: (P, M) for motif
positions, (L, 4) for bases, so that a run of positions is one contiguous stretch and every
inner loop is long and vectorised whatever M. Each region's result depends on that region
alone: it is the same whatever the batch, block or thread it is solved in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: QC ``status`` codes, in the order of schema.QC_STATUS.
CONVERGED, TIMEOUT, FAILED = 0, 1, 2

_NJIT = dict(nogil=True, boundscheck=False, error_model="numpy")


def _kernel(**options):
    """``numba.njit`` with its on-disk cache (compiled once per machine, loaded in ~0.1 s),
    or without when no cache location is writable (a read-only install and home): then each
    process compiles the kernels on first use instead of failing to import."""
    def wrap(fn):
        try:
            return njit(cache=True, **_NJIT, **options)(fn)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            return njit(cache=False, **_NJIT, **options)(fn)
    return wrap
#: Lanes of the blocked maximum in :func:`_fused` (a fixed-length inner loop vectorises).
_LANES = 16


@_kernel()
def build_column(col, w, wkr, seq, q, mm):
    """``col`` (2 Wc - 1, M) = conv1d(seq * conv_transpose(unit at (mm, q)), cwms) around
    ``q``: col[k + kr, m] = Σ_b w[mm, k, b] seq[q + k, b] wkr[b, kr, m], where
    ``wkr[b, kr, m] = w[m, Wc - 1 - kr, b]`` (``col[j]`` is the shift ``j - Wc + 1``)."""
    wc = w.shape[1]
    nm = w.shape[0]
    colf = col.reshape(-1)
    colf[:] = 0
    for k in range(wc):
        for b in range(4):
            v = w[mm, k, b] * seq[q + k, b]
            if v != 0:
                dst = colf[k * nm:(k + wc) * nm]
                src = wkr[b].reshape(-1)
                for j in range(wc * nm):
                    dst[j] += v * src[j]


@_kernel()
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


@_kernel(inline="always")
def _fused_entry(e, j, g0, imp, corr, lm, one_lam, y, c, nzb, acc, step, mom, onep):
    """The step at one (position, motif) entry ``e``: the gradient, the proximal step and the
    momentum, finemo's formulas in float32 in its order of operations; ``nzb[e]`` gets bit 0
    where ``y``'s new value is non-zero and bit 1 where ``c``'s is, ``acc[j]`` the running
    maximum of g (/ λ), and ``corr[e]`` is cleared."""
    zero = np.float32(0.0)
    g = g0[e] - corr[e] * imp[e]
    corr[e] = zero
    gd = g if one_lam else g / lm
    acc[j] = gd if gd > acc[j] else acc[j]
    cn = y[e] + step * (g - lm)
    cn = cn if cn > zero else zero
    yn = onep * cn - mom * c[e]
    c[e] = cn
    y[e] = yn
    nzb[e] = (yn != zero) | ((cn != zero) << 1)


@_kernel()
def _fused_one(g0, imp, corr, lam0, y, c, nzb, acc, step, mom, onep):
    """:func:`_fused_entry` over a stretch of entries (flat views of equal length) with one
    λ for every motif, in blocks of 16 (a fixed-length inner loop, so that the running
    maximum vectorises with the rest)."""
    n = g0.shape[0]
    nb = n // _LANES
    for blk in range(nb):
        o = blk * _LANES
        for j in range(_LANES):
            _fused_entry(o + j, j, g0, imp, corr, lam0, True, y, c, nzb, acc, step, mom, onep)
    for e in range(nb * _LANES, n):
        _fused_entry(e, 0, g0, imp, corr, lam0, True, y, c, nzb, acc, step, mom, onep)


@_kernel()
def _fused_tiled(g0, imp, corr, lam, y, c, nzb, acc, step, mom, onep):
    """:func:`_fused_one` with a λ per entry (``lam``, the motifs' lambdas per position)."""
    n = g0.shape[0]
    nb = n // _LANES
    for blk in range(nb):
        o = blk * _LANES
        for j in range(_LANES):
            e = o + j
            _fused_entry(e, j, g0, imp, corr, lam[e], False, y, c, nzb, acc, step, mom, onep)
    for e in range(nb * _LANES, n):
        _fused_entry(e, 0, g0, imp, corr, lam[e], False, y, c, nzb, acc, step, mom, onep)


@_kernel()
def _corr_onehot(corr, pm1, sb, wsel, a0, a1):
    """``corr[p] += Σ_k pm1[p + k] * wsel[k, sb[p + k]]`` for p in [a0, a1): the masked
    prediction's correlation with every motif where one base per position is non-zero
    (``wsel`` (Wc, 5, M): row 4, for positions without a base, is zero). Four shifts at a
    time, so that each row of ``corr`` is loaded and stored a quarter as often."""
    nm = corr.shape[1]
    wc = wsel.shape[0]
    w4 = wc - wc % 4
    for p in range(a0, a1):
        dst = corr[p]
        for k in range(0, w4, 4):
            v0, v1, v2, v3 = pm1[p + k], pm1[p + k + 1], pm1[p + k + 2], pm1[p + k + 3]
            s0 = wsel[k, sb[p + k]]
            s1 = wsel[k + 1, sb[p + k + 1]]
            s2 = wsel[k + 2, sb[p + k + 2]]
            s3 = wsel[k + 3, sb[p + k + 3]]
            for m in range(nm):
                dst[m] += (v0 * s0[m] + v1 * s1[m]) + (v2 * s2[m] + v3 * s3[m])
        for k in range(w4, wc):
            v = pm1[p + k]
            src = wsel[k, sb[p + k]]
            for m in range(nm):
                dst[m] += v * src[m]


@_kernel()
def _corr_bases(corr, pred, wsel, a0, a1):
    """``corr[p] += Σ_k Σ_b pred[p + k, b] * wsel[k, b]`` for p in [a0, a1): the masked
    prediction's correlation with every motif over all four bases (the four at once)."""
    nm = corr.shape[1]
    wc = wsel.shape[0]
    for p in range(a0, a1):
        dst = corr[p]
        for k in range(wc):
            v0, v1, v2, v3 = pred[p + k, 0], pred[p + k, 1], pred[p + k, 2], pred[p + k, 3]
            s0, s1, s2, s3 = wsel[k, 0], wsel[k, 1], wsel[k, 2], wsel[k, 3]
            for m in range(nm):
                dst[m] += (v0 * s0[m] + v1 * s1[m]) + (v2 * s2[m] + v3 * s3[m])


@_kernel()
def _pred_onehot(pm1, z, sb, wone):
    """``pm1[j + k] += z[j] * wone[sb[j + k], k]``: one motif's share of the prediction at each
    position's base, for the coefficients ``z`` of a run of consecutive positions (``pm1`` and
    ``sb`` start at the run's first position; ``wone`` (5, Wc), row 4 zero)."""
    n = z.shape[0]
    for k in range(wone.shape[1]):
        w0, w1, w2, w3, w4 = wone[0, k], wone[1, k], wone[2, k], wone[3, k], wone[4, k]
        dst = pm1[k:k + n]
        bs = sb[k:k + n]
        for j in range(n):
            b = bs[j]
            wv = w0 if b == 0 else (w1 if b == 1 else (w2 if b == 2 else (w3 if b == 3
                                                                        else w4)))
            dst[j] += z[j] * wv


@_kernel()
def solve_region(x, seq, lo, g0, imp, lam, lam_tiled, one_lam, w, wkr, wsel, wone, gram,
                 bases, y, c, corr, pred, pm1, lists, flags, nzb, starts, stops, colslot, pool,
                 pool_keys, step_size_max, step_size_min, tol, max_steps, step_adjust, way):
    """Solve one region's non-negative lasso as finemo's ``fit_contribs`` does.

    Parameters
    ----------
    x : ndarray, shape=(L, 4), float32
        The region's contributions divided by its global scale.
    seq : ndarray, shape=(Lw, 4), float32
        The one-hot sequence under the motif windows (projected modes), or ones (hypothetical
        modes); ``lo`` is the position of ``x`` where it starts.
    g0, imp : ndarray, shape=(P, M), float32
        ``conv1d(x, cwms) * imp`` and the importance scale.
    lam, lam_tiled : ndarray, shape=(M,) and (P * M,), float32
        The motifs' lambdas, and repeated for every position; ``one_lam`` when all are equal
        (max(g / λ) is then max(g) / λ, exactly).
    w : ndarray, shape=(M, Wc, 4), float32
        The cropped motifs (``w[m, k, b]`` = cwms[m, b, k]).
    wkr, wsel, wone : ndarray, float32
        The same rearranged: ``wkr[b, kr, m] = w[m, Wc - 1 - kr, b]`` (4, Wc, M); ``wsel[k,
        b, m] = w[m, k, b]`` with a zero row b = 4 (Wc, 5, M); ``wone[m, b, k] = w[m, k, b]``
        with a zero row b = 4 (M, 5, Wc).
    gram : ndarray, shape=(M, 2 Wc - 1, M), float32, or shape (0, 0, 0)
        Every motif's column (:func:`build_column` with ``seq`` all ones) in hypothetical
        modes; empty: columns are built per region from ``seq``. ``bases``: 1 in projected
        modes, 4 in hypothetical ones.
    y, c, corr : ndarray, shape=(P, M), float32
        Scratch, zero on entry. On return ``y`` and ``corr`` are zero and ``c`` holds the
        final iterate, non-zero only at the positions ``lists[1, :n]`` (``n`` returned).
    pred : ndarray, shape=(Lw, 4), float32
        Scratch, zero on entry and on return; ``pm1`` (Lw + P,) too.
    lists : ndarray, shape=(2, P), int32
        Scratch: positions where ``y`` (row 0) and ``c`` (row 1) have non-zeros.
    flags : ndarray, shape=(3, Lw), uint8
        Scratch; ``nzb`` (P * M,) uint8 too.
    starts, stops : ndarray, shape=(Lw + 1,), int32
        Scratch.
    colslot : ndarray, shape=(P, M), int32
        -1 on entry and on return; ``pool`` (C, 2 Wc - 1, M) float32 and ``pool_keys`` (C,)
        int64 hold up to C columns built for this region.
    step_size_max, step_size_min, tol, max_steps, step_adjust
        finemo's optimiser settings.
    way : int
        How ``conv1d(pred, cwms)`` is formed: 0 the cheaper way at each step, 1 always by
        columns (while the cache holds them), 2 always densely (tests use 1 and 2).

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
    npos_all, nm = g0.shape
    length = x.shape[0]
    wc = w.shape[1]
    lw = pred.shape[0]
    ncol = 2 * wc - 1
    cap = pool.shape[0]
    has_gram = gram.shape[0] > 0
    lam0 = lam[0]
    cand, inw, sb = flags[0], flags[1], flags[2]
    ylist, clist = lists[0], lists[1]
    g0f, impf, yf, cf, corrf = (g0.reshape(-1), imp.reshape(-1), y.reshape(-1), c.reshape(-1),
                                corr.reshape(-1))
    predf = pred.reshape(-1)
    acc = np.empty(_LANES, dtype=np.float32)
    zbuf = np.empty(npos_all, dtype=np.float32)
    # Once per region: Σ x²; the positions where the empty prediction's gradient exceeds λ
    # (only there can a coefficient become non-zero away from the others); the largest
    # g0 (/ λ) per position, the dual norm's term wherever nothing changes; and whether the
    # sequence is one-hot (one base per position, or none), with each position's base.
    x2 = 0.0
    for t in range(length):
        for b in range(4):
            xv = np.float64(x[t, b])
            x2 += xv * xv
    gm0 = np.empty(npos_all, dtype=np.float32)
    for p in range(npos_all):
        best = f32(-np.inf)
        over = False
        for m in range(nm):
            g = g0[p, m]
            gd = g if one_lam else g / lam[m]
            best = gd if gd > best else best
            over = over or g > lam[m]
        gm0[p] = best
        cand[p] = over
    onehot = bases == 1
    for t in range(lw):
        total = f32(0.0)
        sb[t] = 4
        for b in range(4):
            v = seq[t, b]
            if v != 0:
                onehot = onehot and v == 1
                sb[t] = b
            total += v
        onehot = onehot and total <= 1
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
        # 1. The prediction from y's non-zeros, and Σ|y| per motif (the L1 term): scattered
        #    from each non-zero (one loop of 4 Wc), or, once they are many, motif by motif
        #    along the runs of positions holding them, at each position's base (projected
        #    modes: all the residual needs).
        absm[:] = 0.0
        nnz = 0
        missing = 0
        for a in range(ny):
            q = ylist[a]
            for mm in range(nm):
                v = y[q, mm]
                if v != 0:
                    nnz += 1
                    absm[mm] += abs(v)
                    if not has_gram and colslot[q, mm] < 0:
                        missing += 1
        nruns = 0
        for a in range(ny):
            if a == 0 or ylist[a] != ylist[a - 1] + 1:
                nruns += 1
        base_only = onehot and nm * wc * (3 * ny + 24 * nruns) < nnz * (4 * wc + 24)
        if base_only:
            a = 0
            while a < ny:
                e = a + 1
                while e < ny and ylist[e] == ylist[e - 1] + 1:
                    e += 1
                q0, n = ylist[a], e - a
                z = zbuf[:n]
                for mm in range(nm):
                    for j in range(n):
                        z[j] = y[q0 + j, mm] * imp[q0 + j, mm]
                    _pred_onehot(pm1[q0:], z, sb[q0:], wone[mm])
                a = e
        else:
            for a in range(ny):
                q = ylist[a]
                dst = predf[4 * q:4 * (q + wc)]
                # The position's non-zeros two at a time (each window of pred loaded and
                # stored half as often).
                pending = -1
                for mm in range(nm):
                    v = y[q, mm]
                    if v == 0:
                        continue
                    if pending < 0:
                        pending = mm
                        continue
                    s0 = y[q, pending] * imp[q, pending]
                    s1 = v * imp[q, mm]
                    src0 = w[pending].reshape(-1)
                    src1 = w[mm].reshape(-1)
                    for j in range(4 * wc):
                        dst[j] += s0 * src0[j] + s1 * src1[j]
                    pending = -1
                if pending >= 0:
                    s0 = y[q, pending] * imp[q, pending]
                    src0 = w[pending].reshape(-1)
                    for j in range(4 * wc):
                        dst[j] += s0 * src0[j]
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
                    if base_only:
                        pm = pm1[t] if b == sb[t] else f32(0.0)
                    else:
                        pm = pred[t, b] * seq[t, b]
                        pred[t, b] = pm
                        one += pm
                    xv = x[lo + t, b]
                    r = xv - pm
                    x64 = np.float64(xv)
                    r64 = np.float64(r)
                    d_r2 += r64 * r64 - x64 * x64
                    d_rx += r64 * x64 - x64 * x64
                if not base_only:
                    pm1[t] = one
        nll_full = f32(x2 + d_r2)
        dual_diff = f32(x2 + d_rx)
        l1 = 0.0
        for mm in range(nm):
            l1 += np.float64(f32(absm[mm]) * lam[mm])
        l1_32 = f32(l1)
        # 3. conv1d(pred, cwms) where the prediction reaches ([q - Wc + 1, q + Wc - 1] around
        #    each non-zero), the cheaper way: by columns (one loop of (2 Wc - 1) M per
        #    non-zero) or densely over the reached positions (one loop of M per position,
        #    shift and non-zero base).
        inw[:npos_all] = 0
        for a in range(ny):
            inw[max(0, ylist[a] - wc + 1):min(npos_all, ylist[a] + wc)] = 1
        nreach = _intervals(inw, npos_all, starts, stops)
        reach = 0
        for iv in range(nreach):
            reach += stops[iv] - starts[iv]
        cost_cols = nnz * (ncol * nm + 24)
        cost_dense = reach * wc * (1 if onehot else 4) * (nm + 24)
        if (way == 1 or (way == 0 and cost_cols < cost_dense)) and used + missing <= cap:
            for a in range(ny):
                q = ylist[a]
                for mm in range(nm):
                    v = y[q, mm]
                    if v == 0:
                        continue
                    s = v * imp[q, mm]
                    if has_gram:
                        col = gram[mm]
                    else:
                        slot = colslot[q, mm]
                        if slot < 0:
                            slot = used
                            used += 1
                            colslot[q, mm] = slot
                            pool_keys[slot] = q * nm + mm
                            build_column(pool[slot], w, wkr, seq, q, mm)
                        col = pool[slot]
                    p0 = q - wc + 1
                    j0 = max(0, -p0)
                    j1 = min(ncol, npos_all - p0)
                    dst = corrf[(p0 + j0) * nm:(p0 + j1) * nm]
                    src = col.reshape(-1)[j0 * nm:j1 * nm]
                    for j in range((j1 - j0) * nm):
                        dst[j] += s * src[j]
        else:
            for iv in range(nreach):
                if onehot:
                    _corr_onehot(corr, pm1, sb, wsel, starts[iv], stops[iv])
                else:
                    _corr_bases(corr, pred, wsel, starts[iv], stops[iv])
        inw[:lw] = 0
        for a in range(ny):
            inw[ylist[a]:ylist[a] + wc] = 1
        nsup = _intervals(inw, lw, starts, stops)
        for iv in range(nsup):
            pred[starts[iv]:stops[iv]] = 0
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
        acc[:] = -np.inf
        for iv in range(nwork):
            e0, e1 = starts[iv] * nm, stops[iv] * nm
            if one_lam:
                _fused_one(g0f[e0:e1], impf[e0:e1], corrf[e0:e1], lam0, yf[e0:e1], cf[e0:e1],
                           nzb[e0:e1], acc, step, mom, onep)
            else:
                _fused_tiled(g0f[e0:e1], impf[e0:e1], corrf[e0:e1], lam_tiled[e0:e1],
                             yf[e0:e1], cf[e0:e1], nzb[e0:e1], acc, step, mom, onep)
        dual_norm = acc[0]
        for j in range(1, _LANES):
            dual_norm = acc[j] if acc[j] > dual_norm else dual_norm
        for p in range(npos_all):
            if not inw[p]:
                dual_norm = gm0[p] if gm0[p] > dual_norm else dual_norm
        ny = 0
        nc = 0
        for iv in range(nwork):
            for p in range(starts[iv], stops[iv]):
                bits = 0
                row = nzb[p * nm:(p + 1) * nm]
                for m in range(nm):
                    bits |= row[m]
                if bits & 1:
                    ylist[ny] = p
                    ny += 1
                if bits & 2:
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
                y[ylist[a]] = 0
            for a in range(nc):
                c[clist[a]] = 0
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
        colslot[key // nm, key % nm] = -1
    for a in range(ny):
        y[ylist[a]] = 0
    return gap, nll, i, step, status, nc


@_kernel()
def take_iterate(c, clist, nc):
    """The non-zeros of the final iterate ``c`` (P, M) at the positions ``clist[:nc]``, as
    (motif, position, value) arrays; ``c`` is zero on return."""
    n = 0
    for a in range(nc):
        for m in range(c.shape[1]):
            if c[clist[a], m] != 0:
                n += 1
    motif = np.empty(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    val = np.empty(n, dtype=np.float32)
    k = 0
    for a in range(nc):
        p = clist[a]
        for m in range(c.shape[1]):
            v = c[p, m]
            if v != 0:
                motif[k] = m
                pos[k] = p
                val[k] = v
                k += 1
                c[p, m] = 0
    return motif, pos, val


@_kernel()
def window_sums(x, w, masks, lo, rows, motif, pos):
    """finemo's hit statistics' convolutions at the hits only: for hit h (region ``rows[h]``,
    motif ``motif[h]``, window start ``pos[h]``), ``conv1d(x, cwms)`` (the similarity's
    numerator) and ``conv1d(|x|, masks)`` (hit_importance), summed in float64 and rounded once.

    Shapes: x (B, L, 4) float32; w, masks (M, Wc, 4); rows, motif, pos (H,). Returns two
    float32 arrays of shape (H,).
    """
    n = rows.shape[0]
    wc = w.shape[1]
    dot = np.empty(n, dtype=np.float32)
    imp = np.empty(n, dtype=np.float32)
    for h in range(n):
        xr = x[rows[h]]
        m = motif[h]
        start = lo + pos[h]
        acc = 0.0
        acc_abs = 0.0
        for k in range(wc):
            for b in range(4):
                v = np.float64(xr[start + k, b])
                acc += v * np.float64(w[m, k, b])
                acc_abs += abs(v) * masks[m, k, b]
        dot[h] = np.float32(acc)
        imp[h] = np.float32(acc_abs)
    return dot, imp


@_kernel()
def importance(x, run_lo, run_hi, npos, eps):
    """finemo's importance scale ``min((E + eps)^(-1/2), 10)``, float32, with the window
    energies E[m, p] (Σ of x² over motif m's trim mask at p) from prefix sums of Σ_b x²
    (float64, rounded once): O(L + P M) instead of the convolution's P M 4 W.

    Shapes: x (B, L, 4) float32; run_lo, run_hi (M, R) int64: the runs [lo, hi) of each trim
    mask within the untrimmed width (one for a window; a blend of two motifs can have two),
    padded with empty runs (lo = hi). Returns (B, P, M) float32.
    """
    n, length = x.shape[0], x.shape[1]
    nm, nr = run_lo.shape
    out = np.empty((n, npos, nm), dtype=np.float32)
    pref = np.empty(length + 1, dtype=np.float64)
    eps32 = np.float32(eps)
    one, cap = np.float32(1.0), np.float32(10.0)
    for r in range(n):
        pref[0] = 0.0
        for t in range(length):
            s = 0.0
            for b in range(4):
                v = np.float64(x[r, t, b])
                s += v * v
            pref[t + 1] = pref[t] + s
        for p in range(npos):
            for m in range(nm):
                acc = 0.0
                for j in range(nr):
                    acc += pref[p + run_hi[m, j]] - pref[p + run_lo[m, j]]
                v = one / np.sqrt(np.float32(acc) + eps32)
                out[r, p, m] = v if v < cap else cap
    return out


@_kernel()
def solve_chunk(r0, r1, x, seq, lo, g0, imp, lam, lam_tiled, one_lam, w, wkr, wsel, wone, gram,
                bases, y, c, corr, pred, pm1, lists, flags, nzb, starts, stops, colslot, pool,
                pool_keys, step_size_max, step_size_min, tol, max_steps, step_adjust, way,
                qc_f, qc_i):
    """:func:`solve_region` for regions ``r0:r1`` of a chunk (x (B, L, 4), seq (B, Lw, 4) or
    (1, Lw, 4) shared, g0 and imp (B, P, M)), one after the other with the same scratch.
    Writes gap, nll and step size to ``qc_f[r]`` and steps and status to ``qc_i[r]``;
    returns the final iterates' non-zeros as (row, motif, position, value) arrays."""
    cap = 64 * (r1 - r0) + 64
    rows = np.empty(cap, dtype=np.int64)
    motif = np.empty(cap, dtype=np.int64)
    pos = np.empty(cap, dtype=np.int64)
    val = np.empty(cap, dtype=np.float32)
    n = 0
    for r in range(r0, r1):
        sr = seq[0] if seq.shape[0] == 1 else seq[r]
        gap, nll, steps, step, status, nc = solve_region(
            x[r], sr, lo, g0[r], imp[r], lam, lam_tiled, one_lam, w, wkr, wsel, wone, gram,
            bases, y, c, corr, pred, pm1, lists, flags, nzb, starts, stops, colslot, pool,
            pool_keys, step_size_max, step_size_min, tol, max_steps, step_adjust, way)
        qc_f[r, 0] = gap
        qc_f[r, 1] = nll
        qc_f[r, 2] = step
        qc_i[r, 0] = steps
        qc_i[r, 1] = status
        mm, pp, vv = take_iterate(c, lists[1], nc)
        k = mm.shape[0]
        if n + k > cap:
            cap = 2 * (n + k)
            rows = _grown(rows, cap)
            motif = _grown(motif, cap)
            pos = _grown(pos, cap)
            val = _grown(val, cap)
        rows[n:n + k] = r
        motif[n:n + k] = mm
        pos[n:n + k] = pp
        val[n:n + k] = vv
        n += k
    return rows[:n].copy(), motif[:n].copy(), pos[:n].copy(), val[:n].copy()


@_kernel()
def _grown(a, cap):
    out = np.empty(cap, dtype=a.dtype)
    out[:a.shape[0]] = a
    return out
