"""Pattern PPMs (the TOMTOM query): the softmax scale fit, the window, and a synthetic check
on JASPAR motifs other than the fixture's, planted as the fixture's generator plants them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nemo_dask.errors import InputError
from nemo_dask.matching.database import open_database
from nemo_dask.matching.query import fit_softmax_scale, pattern_ppms, softmax_ppm
from nemo_dask.matching.tomtom import tomtom_matches


def test_softmax_scale_fit_inverts_log_odds() -> None:
    rng = np.random.default_rng(0)
    ppm = rng.dirichlet(np.full(4, 0.4), size=12).T  # (4, 12)
    for sign in (1.0, -1.0):
        # A hypothetical CWM: scaled, per-position-centred log-odds (any scale, either sign).
        h = sign * 0.013 * (np.log(ppm) - np.log(ppm).mean(axis=0))
        beta = fit_softmax_scale(h, ppm, np.full(4, 0.25))
        assert np.isclose(beta, sign / 0.013, rtol=1e-6)
        assert np.allclose(softmax_ppm(h, beta, np.full(4, 0.25)), ppm, atol=1e-9)


def test_background_and_one_hot_limits() -> None:
    h = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    bg = np.array([0.3, 0.2, 0.2, 0.3])
    # Seqlets all at each column's maximum: the likelihood grows without bound; the fit stops
    # where the PPM is one-hot to float64 precision.
    beta = fit_softmax_scale(h, h, bg)
    assert beta > 30 and np.allclose(softmax_ppm(h, beta, bg), h, atol=1e-12)
    # beta = 0 is the background itself: the MLE when the seqlets' bases are the background.
    obs = np.repeat(bg[:, None], 2, axis=1)
    h2 = np.array([[0.5, -0.2], [0.1, 0.3], [-0.4, 0.0], [-0.2, -0.1]])
    ppm = softmax_ppm(h2, fit_softmax_scale(h2, obs, bg), bg)
    assert np.allclose(ppm.sum(axis=0), 1) and np.abs(ppm - obs).max() < 0.05


def test_fixture_patterns_window_and_shapes(modisco_h5) -> None:
    names = ["pos_patterns.pattern_0", "neg_patterns.pattern_0"]
    for method in ("hcwm", "sequence"):
        q = pattern_ppms(modisco_h5, names, method=method, trim_threshold=0.2)
        for n in names:
            assert q[n].ppm.shape == (4, q[n].end - q[n].start)
            assert np.allclose(q[n].ppm.sum(axis=0), 1.0)
        if method == "hcwm":  # the repressive pattern's scale is negative: matched as itself
            assert q["pos_patterns.pattern_0"].beta > 0 > q["neg_patterns.pattern_0"].beta
    wide = pattern_ppms(modisco_h5, names[:1], trim_threshold=0.05)[names[0]]
    narrow = pattern_ppms(modisco_h5, names[:1], trim_threshold=0.5)[names[0]]
    assert wide.start <= narrow.start < narrow.end <= wide.end


def test_refusals(modisco_h5) -> None:
    with pytest.raises(InputError, match="has no pattern pos_patterns.pattern_9"):
        pattern_ppms(modisco_h5, ["pos_patterns.pattern_9"])
    with pytest.raises(InputError, match="not one of"):
        pattern_ppms(modisco_h5, ["pos_patterns.pattern_0"], method="softmax")
    with pytest.raises(InputError, match="4 positive frequencies"):
        pattern_ppms(modisco_h5, ["pos_patterns.pattern_0"], background=[0.5, 0.5, 0, 0])


#: JASPAR2024 CORE vertebrate motifs none of which the fixture planted, some with close
#: relatives in the database (FOXA2/FOXA1, MEF2C/MEF2A, IRF4/IRF8, TFAP2A/TFAP2B-C).
OTHER_MOTIFS = {"MA0047.4": 1, "MA0114.5": 1, "MA0060.4": 1, "MA0090.4": 1, "MA0497.2": 1,
                "MA1419.2": 1, "MA0105.4": 1, "MA0872.1": 1, "MA0143.5": -1}


def _planted_h5(path, db, seed: int = 7) -> dict[str, str]:
    """A tfmodisco-lite-shaped H5, one pattern per motif of OTHER_MOTIFS: 60 seqlets of width
    30 holding an instance sampled from the motif (either strand, as the fixture's generator
    plants them: hypothetical contribution = sign x strength x 0.01 x centred log2 odds, plus
    noise). Returns pattern -> planted matrix ID."""
    rng = np.random.default_rng(seed)
    bg = np.array([0.29, 0.21, 0.21, 0.29])
    planted = {}
    with h5py.File(path, "w") as h5:
        for k, (mid, sign) in enumerate(OTHER_MOTIFS.items()):
            ppm = db.ppms[db.ids.index(mid)]
            ppm = (ppm * 50 + 0.25) / (ppm * 50 + 0.25).sum(axis=0)
            w, width, n = ppm.shape[1], 30, 60
            at = (width - w) // 2
            seq = np.zeros((n, 4, width))
            hyp = rng.normal(0, 0.004, (n, 4, width))
            for i in range(n):
                p = ppm[::-1, ::-1] if k % 2 else ppm  # patterns of either orientation
                bases = rng.choice(4, size=width, p=bg)
                bases[at:at + w] = [rng.choice(4, p=p[:, j]) for j in range(w)]
                seq[i, bases, np.arange(width)] = 1
                lo = np.log2(p / 0.25)
                hyp[i, :, at:at + w] += sign * rng.lognormal(0, 0.55) * 0.01 * (lo - lo.mean(0))
            hyp -= hyp.mean(axis=1, keepdims=True)
            group = h5.require_group("pos_patterns" if sign > 0 else "neg_patterns")
            g = group.create_group(f"pattern_{k}")
            g["sequence"] = seq.mean(axis=0).T
            g["hypothetical_contribs"] = hyp.mean(axis=0).T
            g["contrib_scores"] = (hyp * seq).mean(axis=0).T
            planted[f"{group.name[1:]}.pattern_{k}"] = mid
    return planted


def test_other_planted_jaspar_motifs_are_their_own_top_match(tmp_path) -> None:
    db = open_database("jaspar")
    planted = _planted_h5(tmp_path / "planted.h5", db)
    queries = pattern_ppms(tmp_path / "planted.h5", list(planted))
    found = tomtom_matches([queries[p].ppm for p in planted], db, top_k=3)
    top = {p: m[0].id for p, m in zip(planted, found, strict=True)}
    assert top == planted
    assert all(m[0].qvalue < 1e-3 for m in found)
