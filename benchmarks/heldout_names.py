"""Held-out check of motif names: plant JASPAR motifs, run tfmodisco-lite, match its patterns.

For each set of JASPAR2024 CORE vertebrate motifs, makes 350 regions of 400 bp the way the
shared fixture's generator describes itself (its README): Poisson(4) instances per region at
Normal(centre, 110 bp), either strand, sequences sampled from the motif's PPM; hypothetical
contributions = sign x strength x 0.01 x centred log2 odds at the instance (strength = a motif
scale in [0.8, 1.2] x lognormal(0, 0.55)), a third of them weak partial decoys, plus smoothed
centred noise; then ``modisco motifs -n 3000 -w 400 -l 2``. A pattern's planted motif is the
one its seqlets overlap most. Each pattern is matched with
:mod:`nemo_dask.matching` (both PPM conversions, several windows) against JASPAR2024 CORE
vertebrates, and the top match is compared with the planted matrix ID.

Needs tfmodisco-lite's ``modisco`` command (``--modisco``; e.g. a separate virtual environment
with ``pip install modisco-lite``), the ``names`` extra and scipy::

    python benchmarks/heldout_names.py WORKDIR [--modisco PATH] [--fixture-h5 modisco.h5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import h5py
import numpy as np

SETS = {  # name: (seed, positive motifs, negative motifs)
    "A": (11, "FOXA2,HNF4A,NFYA,TEAD1,MEF2C", "SOX2"),
    "B": (12, "KLF4,NRF1,ETS1,RUNX1,IRF4", "TP53"),
    "C": (13, "HNF1A,E2F6,NFKB1,STAT3,EBF1", "ZNF143"),
    "D": (14, "GATA2,SPIB,CEBPA,JUNB,CTCFL", "NR2F2"),
    "E": (15, "ESRRA,PAX5,MYOD1,ZBTB33,TFAP2A", "ELK1"),
    "F": (21, "FOXA1,HNF1B,SOX9,MAFK,RFX1", "NR3C1"),
    "G": (22, "POU2F1,TCF7L2,ESR1,MYB,RUNX3", "ZEB1"),
    "H": (23, "IRF1,STAT1,RELA,ATF4,USF1", "SNAI2"),
    "I": (24, "SP1,EGR1,PBX3,CDX2,NKX2-1", "TBX5"),
    "J": (25, "PAX6,GFI1,PRDM1,THAP11,ZFX", "ONECUT1"),
}
#: The shared fixture's patterns and planted matrices (its modisco_pattern_matches.tsv).
FIXTURE = {"pos_patterns.pattern_0": "MA0139.2", "pos_patterns.pattern_1": "MA0466.4",
           "pos_patterns.pattern_2": "MA0080.7", "pos_patterns.pattern_3": "MA0099.4",
           "pos_patterns.pattern_4": "MA0035.5", "neg_patterns.pattern_0": "MA0138.3"}


def make_set(d: Path, seed: int, pos: list[str], neg: list[str], db) -> None:  # noqa: ANN001
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(seed)
    by_name: dict[str, int] = {}
    for i, n in enumerate(db.names):
        by_name.setdefault(n.upper(), i)
    motifs = []
    for name, sign in [(n, 1) for n in pos] + [(n, -1) for n in neg]:
        i = by_name[name.upper()]
        ppm = db.ppms[i]
        motifs.append({"name": db.names[i], "id": db.ids[i], "sign": sign,
                       "ppm": (ppm * 100 + 0.25) / (ppm * 100 + 0.25).sum(0),
                       "scale": rng.uniform(0.8, 1.2), "freq": rng.uniform(0.6, 1.4)})
    n_regions, width = 350, 400
    seq = rng.choice(4, size=(n_regions, width), p=[0.29, 0.21, 0.21, 0.29])
    hyp = np.zeros((n_regions, 4, width))
    truth = []
    freq = np.array([m["freq"] for m in motifs])
    for r in range(n_regions):
        if rng.random() < 0.04:
            continue
        for _ in range(rng.poisson(4.0)):
            k = rng.choice(len(motifs), p=freq / freq.sum())
            m = motifs[k]
            w = m["ppm"].shape[1]
            s = int(np.clip(rng.normal(width / 2, 110), 0, width - w))
            ppm = m["ppm"]
            lo = np.log2(ppm / 0.25)
            lo -= lo.mean(0)
            if rng.random() < 0.5:
                ppm, lo = ppm[::-1, ::-1], lo[::-1, ::-1]
            bases = np.array([rng.choice(4, p=ppm[:, j]) for j in range(w)])
            strength = m["sign"] * m["scale"] * rng.lognormal(0, 0.55)
            part = slice(0, w)
            if rng.random() < 0.35 / 4:  # a weak partial decoy
                size = max(3, int(w * rng.uniform(0.4, 0.6)))
                a = int(rng.integers(0, w - size + 1))
                part, strength = slice(a, a + size), strength * 0.3
            idx = np.arange(s, s + w)[part]
            seq[r, idx] = bases[part]
            hyp[r][:, idx] += strength * 0.01 * lo[:, part]
            if part == slice(0, w):
                truth.append((r, s, s + w, k))
    noise = gaussian_filter1d(rng.normal(0, 1, (n_regions, 4, width)), 1.0, axis=2)
    noise = noise / noise.std()
    noise -= noise.mean(1, keepdims=True)
    hyp += 0.005 * noise * (1 + np.exp(-((np.arange(width) - width / 2) ** 2) / (2 * 150**2)))
    ohe = np.zeros((n_regions, 4, width), np.int8)
    ohe[np.arange(n_regions)[:, None], seq, np.arange(width)[None]] = 1
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "ohe.npz", ohe)
    np.savez(d / "shap.npz", hyp.astype(np.float32))
    np.save(d / "truth.npy", np.array(truth))
    (d / "motifs.json").write_text(json.dumps([{k: m[k] for k in ("name", "id", "sign")}
                                               for m in motifs]))


def planted_patterns(d: Path) -> dict[str, str]:
    """pattern -> the matrix ID of the motif its seqlets overlap most."""
    motifs = json.loads((d / "motifs.json").read_text())
    truth = np.load(d / "truth.npy")
    out = {}
    with h5py.File(d / "modisco.h5") as h5:
        for group in ("pos_patterns", "neg_patterns"):
            for name in h5.get(group, {}):
                sl = h5[group][name]["seqlets"]
                votes = np.zeros(len(motifs))
                for e, a, b in zip(sl["example_idx"][:], sl["start"][:], sl["end"][:],
                                   strict=True):
                    for _, s, t, k in truth[truth[:, 0] == e]:
                        votes[k] += max(0, min(b, t) - max(a, s))
                out[f"{group}.{name}"] = motifs[int(votes.argmax())]["id"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--modisco", default="modisco", help="tfmodisco-lite's modisco command")
    ap.add_argument("--fixture-h5", type=Path, default=None,
                    help="also match the shared fixture's modisco.h5")
    ap.add_argument("--sets", default=",".join(SETS))
    args = ap.parse_args()

    from nemo_dask.matching.database import open_database
    from nemo_dask.matching.query import pattern_ppms
    from nemo_dask.matching.tomtom import tomtom_matches

    db = open_database("jaspar:2024:CORE:vertebrates")
    cases: list[tuple[str, Path, dict[str, str]]] = []
    if args.fixture_h5 is not None:
        cases.append(("fixture", args.fixture_h5, FIXTURE))
    for name in args.sets.split(","):
        seed, pos, neg = SETS[name]
        d = args.workdir / name
        if not (d / "modisco.h5").exists():
            make_set(d, seed, pos.split(","), neg.split(",") if neg else [], db)
            subprocess.run([args.modisco, "motifs", "-s", "ohe.npz", "-a", "shap.npz", "-n",
                            "3000", "-w", "400", "-l", "2", "-o", "modisco.h5"], cwd=d,
                           check=True, capture_output=True)
        cases.append((name, d / "modisco.h5", planted_patterns(d)))
    n = sum(len(c[2]) for c in cases)
    for method in ("hcwm", "sequence"):
        for trim in (0.1, 0.2, 0.3):
            right, misses = 0, []
            for name, h5, truth in cases:
                q = pattern_ppms(h5, list(truth), method=method, trim_threshold=trim)
                found = tomtom_matches([q[p].ppm for p in truth], db, top_k=3)
                for (pattern, planted), m in zip(truth.items(), found, strict=True):
                    right += m[0].id == planted
                    if m[0].id != planted:
                        misses.append(f"{name}:{pattern} {planted}->{m[0].id} {m[0].name}")
            print(f"{method:8s} trim {trim}: top match = planted for {right}/{n} patterns; "
                  f"misses: {', '.join(misses) or 'none'}")


if __name__ == "__main__":
    main()
