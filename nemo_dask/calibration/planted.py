"""Planted-truth inputs made from nothing but a seed: regions whose motif instances are known.

For measuring what a q-value promises (:mod:`nemo_dask.calibration`): every planted instance
is recorded, so each hit is either on one (of any kind) or on none, and the share of kept hits
on none, against the nominal level, is the observed false discovery rate.

The model follows the public fixture's generator (its README, "How it was generated"):
hypothetical contributions at a planted instance are ``sign x strength x mean-centred
log2(PPM / background)`` for its columns, strength = the motif's scale x lognormal(0, sigma),
plus smooth mean-centred noise that is stronger near the summit. Kinds of instance, as in the
fixture's ground_truth.tsv: ``planted``, ``decoy`` (a weak partial motif: 40-60 % of its
columns at 0.3 x strength), plus noise-only regions. Two kinds of *unrecorded* structure model
what a trained network attributes beyond the planted motifs (the judge's second set): weak
``native`` instances of the motifs and instances of ``feature`` motifs that are not in the
motif set; hits on them count as false, as they would against a planted truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..motifs import Motifs, trim_window
from ..schema import MOTIFS_SCHEMA, polars_schema

#: Base order of every matrix: A, C, G, T.
BACKGROUND = np.array([0.29, 0.21, 0.21, 0.29])


@dataclass(frozen=True)
class PlantedSettings:
    """How :func:`make_planted` draws regions (defaults: a small fixture-like set)."""

    n_regions: int = 300
    width: int = 500                   # L
    n_motifs: int = 5                  # patterns in the motif set (one negative if >= 4)
    motif_width: int = 30              # untrimmed W
    core_widths: tuple[int, int] = (8, 15)
    instances_per_region: float = 3.0  # Poisson mean of planted instances per region
    position_sd: float = 70.0          # bp around the summit (the centre)
    strength_sigma: float = 0.55       # lognormal spread of instance strengths
    noise_sd: float = 0.5              # log2-odds units, as the fixture
    noise_smooth: float = 1.0          # bp, Gaussian smoothing of the noise
    summit_noise: float = 0.8          # noise sd at the summit is (0.6 + this) x at the edges' 0.6
    null_fraction: float = 0.06        # regions with no motif, noise only
    decoy_rate: float = 0.35           # weak partial instances per region (recorded, kind decoy)
    native_rate: float = 0.0           # unrecorded weak instances of the motifs per region
    native_strength: float = 0.35      # their strength relative to planted ones
    feature_rate: float = 0.0          # unrecorded instances of motifs outside the set
    n_features: int = 6
    jitter: float = 0.0                # per-base multiplicative noise of instance contributions
    #: Where the unrecorded structure lies: None uniformly along the window; else
    #: ~ Normal(summit, this) bp (structure a network attributes near the summit).
    extra_position_sd: float | None = None
    seed: int = 0
    #: Seed of the motif set (motifs, their scales and the feature motifs); None: ``seed``.
    #: Background regions for a motif set: the same ``motif_seed``, another ``seed``.
    motif_seed: int | None = None


@dataclass
class Planted:
    """Planted-truth regions (finemo's regions.npz arrays) and motifs.

    sequences : shape=(N, 4, L) int8; contributions : shape=(N, 4, L) float16 (hypothetical);
    motifs : the motif set (forward and reverse complement of each pattern), as
    :func:`nemo_dask.motifs.load_motifs` makes them; ppms : name -> (4, w) matrices;
    truth : one row per recorded instance: region, start, end (region coordinates, half-open),
    motif (pattern name), strand, kind (planted | decoy), strength.
    """

    settings: PlantedSettings
    sequences: np.ndarray
    contributions: np.ndarray
    motifs: Motifs
    cwms: dict[str, np.ndarray]
    hypothetical: dict[str, np.ndarray]
    truth: pl.DataFrame
    extra: pl.DataFrame = field(default_factory=pl.DataFrame)  # the unrecorded structure

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """finemo's regions.npz members for these regions (chr1, one region per 10 kb)."""
        n, length = self.sequences.shape[0], self.sequences.shape[2]
        return {"sequences": self.sequences, "contributions": self.contributions,
                "chr": np.array(["chr1"] * n), "chr_id": np.zeros(n, dtype=np.uint32),
                "start": np.arange(n, dtype=np.int32) * 10_000 + 1000,
                "end": np.arange(n, dtype=np.int32) * 10_000 + 1000 + length,
                "peak_id": np.arange(n, dtype=np.uint32),
                "peak_name": np.array([f"peak{i}" for i in range(n)])}


def _ppm(rng: np.random.Generator, width: int) -> np.ndarray:
    # Dirichlet columns, redrawn until informative: IC >= 1 bit, as JASPAR cores mostly are.
    cols = []
    while len(cols) < width:
        p = rng.dirichlet(np.full(4, 0.25))
        if np.sum(p * np.log2(np.maximum(p, 1e-9) / 0.25)) >= 1.0:
            cols.append(0.97 * p + 0.03 * BACKGROUND)
    return np.stack(cols, axis=1)


def _log_odds(ppm: np.ndarray) -> np.ndarray:
    lo = np.log2(ppm / BACKGROUND[:, None])
    return lo - lo.mean(axis=0, keepdims=True)


def _sample(rng: np.random.Generator, ppm: np.ndarray) -> np.ndarray:
    u = rng.random(ppm.shape[1])
    return np.minimum((np.cumsum(ppm, axis=0) < u).sum(axis=0), 3)


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return x
    half = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    k /= k.sum()
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), -1, x)


def make_planted(settings: PlantedSettings | None = None, **overrides) -> Planted:
    """Draw regions with planted motif instances; deterministic for ``settings.seed``.

    Raises
    ------
    ValueError
        A core width does not fit in ``motif_width``.
    """
    s = settings or PlantedSettings()
    if overrides:
        s = PlantedSettings(**{**s.__dict__, **overrides})
    if s.core_widths[1] > s.motif_width:
        raise ValueError(f"core widths {s.core_widths} exceed motif_width {s.motif_width}")
    rng = np.random.default_rng([s.seed if s.motif_seed is None else s.motif_seed, 2025])
    names = [f"pos_patterns.pattern_{k}" for k in range(s.n_motifs)]
    signs = np.ones(s.n_motifs)
    if s.n_motifs >= 4:
        names[-1] = "neg_patterns.pattern_0"
        signs[-1] = -1.0
    ppms = {n: _ppm(rng, int(rng.integers(s.core_widths[0], s.core_widths[1] + 1)))
            for n in names}
    scales = rng.uniform(0.8, 1.4, s.n_motifs)
    features = [_ppm(rng, int(rng.integers(6, 12))) for _ in range(s.n_features)]
    flanks = rng.normal(0, 0.01, size=(s.n_motifs, 4, s.motif_width))
    rng = np.random.default_rng([s.seed, 2026])  # the regions

    n, length = s.n_regions, s.width
    seqs = rng.choice(4, size=(n, length), p=BACKGROUND)
    # Noise: smooth, mean-centred over bases, stronger near the summit (as the fixture's).
    centred = (np.arange(length) - length / 2) / (length / 5)
    envelope = 0.6 + s.summit_noise * np.exp(-0.5 * centred**2)
    noise = _smooth(rng.normal(0, s.noise_sd, size=(n, 4, length)), s.noise_smooth)
    noise -= noise.mean(axis=1, keepdims=True)
    hyp = noise * envelope
    truth: list[dict] = []
    extra: list[dict] = []
    is_null = rng.random(n) < s.null_fraction

    def plant(r: int, ppm: np.ndarray, sign: float, strength: float, start: int, strand: str,
              cols: slice | None = None) -> None:
        lo = _log_odds(ppm)
        bases = _sample(rng, ppm)
        if strand == "-":
            lo, bases = lo[::-1, ::-1], 3 - bases[::-1]
        w = ppm.shape[1]
        sel = cols or slice(0, w)
        contrib = sign * strength * lo[:, sel]
        if s.jitter > 0:
            contrib = contrib * rng.lognormal(0, s.jitter, size=contrib.shape[1])
        span = slice(start + (sel.start or 0), start + (sel.stop if sel.stop is not None else w))
        seqs[r, span] = bases[sel]
        hyp[r, :, span] += contrib

    def place(w: int) -> int:
        pos = int(round(rng.normal(length / 2, s.position_sd))) - w // 2
        return int(np.clip(pos, 0, length - w))

    for r in range(n):
        if is_null[r]:
            continue
        for _ in range(rng.poisson(s.instances_per_region)):
            k = int(rng.integers(s.n_motifs))
            ppm = ppms[names[k]]
            w = ppm.shape[1]
            start, strand = place(w), "+" if rng.random() < 0.5 else "-"
            strength = scales[k] * rng.lognormal(0, s.strength_sigma)
            plant(r, ppm, signs[k], strength, start, strand)
            truth.append({"region": r, "start": start, "end": start + w, "motif": names[k],
                          "strand": strand, "kind": "planted", "strength": signs[k] * strength})
        if rng.random() < s.decoy_rate:
            k = int(rng.integers(s.n_motifs))
            ppm = ppms[names[k]]
            w = ppm.shape[1]
            keep = max(2, int(round(w * rng.uniform(0.4, 0.6))))
            first = int(rng.integers(0, w - keep + 1))
            start, strand = place(w), "+" if rng.random() < 0.5 else "-"
            strength = 0.3 * scales[k] * rng.lognormal(0, s.strength_sigma)
            plant(r, ppm, signs[k], strength, start, strand, slice(first, first + keep))
            truth.append({"region": r, "start": start + first, "end": start + first + keep,
                          "motif": names[k], "strand": strand, "kind": "decoy",
                          "strength": signs[k] * strength})
    # Unrecorded structure, anywhere (also in noise-only regions): what a network may see.
    for kind, rate in (("native", s.native_rate), ("feature", s.feature_rate)):
        for r in range(n):
            for _ in range(rng.poisson(rate)):
                if kind == "native":
                    k = int(rng.integers(s.n_motifs))
                    ppm, sign = ppms[names[k]], signs[k]
                    strength = s.native_strength * scales[k] * rng.lognormal(0, s.strength_sigma)
                    label = names[k]
                else:
                    k = int(rng.integers(len(features)))
                    ppm, sign, label = features[k], 1.0, f"feature_{k}"
                    strength = rng.uniform(0.4, 1.0) * rng.lognormal(0, s.strength_sigma)
                w = ppm.shape[1]
                if s.extra_position_sd is None:
                    start = int(rng.integers(0, length - w + 1))
                else:
                    start = int(np.clip(round(rng.normal(length / 2, s.extra_position_sd))
                                        - w // 2, 0, length - w))
                plant(r, ppm, sign, strength, start, "+" if rng.random() < 0.5 else "-")
                extra.append({"region": r, "start": start, "end": start + w, "motif": label,
                              "kind": kind})
    onehot = np.zeros((n, 4, length), dtype=np.int8)
    np.put_along_axis(onehot, seqs[:, None, :], 1, axis=1)
    contributions = (0.01 * hyp).astype(np.float16)

    cwms, hyps = {}, {}
    for k, name in enumerate(names):
        ppm = ppms[name]
        w = ppm.shape[1]
        lo = _log_odds(ppm)
        # tfmodisco's CWM: the mean projected contribution of the instances; hypothetical:
        # the mean hypothetical one. Centred in W columns with faint flanks (trimmed away).
        cwm = np.full((4, s.motif_width), 0.0)
        hy = np.full((4, s.motif_width), 0.0)
        off = (s.motif_width - w) // 2
        cwm[:, off:off + w] = signs[k] * scales[k] * ppm * lo
        hy[:, off:off + w] = signs[k] * scales[k] * lo
        flank = flanks[k]
        cwms[name], hyps[name] = cwm + flank * (cwm == 0), hy + flank * (hy == 0)
    motifs = motifs_from_matrices(cwms)
    truth_df = pl.DataFrame(truth, schema={"region": pl.Int64, "start": pl.Int64,
                                           "end": pl.Int64, "motif": pl.String,
                                           "strand": pl.String, "kind": pl.String,
                                           "strength": pl.Float64})
    extra_df = pl.DataFrame(extra, schema={"region": pl.Int64, "start": pl.Int64,
                                           "end": pl.Int64, "motif": pl.String,
                                           "kind": pl.String})
    return Planted(s, onehot, contributions, motifs, cwms, hyps, truth_df, extra_df)


def motifs_from_matrices(cwms: dict[str, np.ndarray], lambda_default: float = 0.7,
                         trim_threshold: float = 0.3) -> Motifs:
    """Motifs (mode pp) from ``{name: CWM (4, W)}``, as :func:`nemo_dask.motifs.load_motifs`
    makes them from an H5 holding those CWMs (normalised, trimmed, float16, with reverse
    complements)."""
    rows, mats, masks = [], [], []
    for name, cwm in cwms.items():
        scale = float(np.linalg.norm(cwm))
        fwd = cwm / scale
        s, e = trim_window(fwd, trim_threshold)
        width = fwd.shape[1]
        for strand, m, a, b in (("+", fwd, s, e), ("-", fwd[::-1, ::-1], width - e, width - s)):
            mask = np.zeros(width, dtype=np.int8)
            mask[a:b] = 1
            mats.append(m)
            masks.append(mask)
            rows.append({"motif_id": len(rows), "motif_name": name, "motif_name_orig": name,
                         "strand": strand, "motif_start": a, "motif_end": b,
                         "motif_scale": scale, "lambda": lambda_default})
    table = pl.DataFrame(rows, schema=polars_schema(MOTIFS_SCHEMA))
    return Motifs(cwms=np.stack(mats).astype(np.float16), trim_masks=np.stack(masks),
                  lambdas=table.get_column("lambda").to_numpy().astype(np.float64), table=table)


def write_modisco_h5(planted: Planted, path) -> None:
    """A tfmodisco-lite-like H5 of the motif set (contrib_scores, hypothetical_contribs,
    sequence as W x 4), enough for call-hits and the motif table; no seqlets."""
    import h5py

    with h5py.File(path, "w") as h5:
        for name, cwm in planted.cwms.items():
            group, pattern = name.split(".")
            g = h5.require_group(group).create_group(pattern)
            g.create_dataset("contrib_scores", data=cwm.T.astype(np.float32))
            g.create_dataset("hypothetical_contribs",
                             data=planted.hypothetical[name].T.astype(np.float32))
            seq = np.abs(cwm) / np.maximum(np.abs(cwm).sum(axis=0, keepdims=True), 1e-9)
            g.create_dataset("sequence", data=seq.T.astype(np.float32))
