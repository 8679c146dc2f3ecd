"""A benchmark input built independently of the bundled fixture: other motifs, motif width,
region width and noise, so that speed and parity figures are not tuned to one data set.

``K`` random motifs (Dirichlet position weight matrices of 8-20 bp, centred in windows of
``W`` = 30 bp whose flanks carry little weight) are written as a tfmodisco-lite H5
(``pos_patterns/pattern_k`` with ``contrib_scores``, ``hypothetical_contribs`` and
``sequence``). ``N`` regions of width ``L`` (default 1500) of random sequence (GC 0.42) get a
Poisson(5) number of planted instances each (random motif and strand, positions
~ Normal(L/2, L/7)), some overlapping; hypothetical contributions are the planted motifs'
log-odds times a log-normal strength plus smoothed Gaussian noise, as a finemo regions.npz
(float16 contributions, int8 one-hot). Deterministic for a seed::

    python benchmarks/make_planted_set.py /tmp/planted
    nemo-dask bench -r /tmp/planted/regions.npz -m /tmp/planted/modisco.h5 --matrix -n 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np


def make_motifs(rng: np.random.Generator, k: int, width: int) -> list[np.ndarray]:
    """``k`` position weight matrices (W, 4): a Dirichlet core of 8-20 bp inside a nearly
    uniform window of ``width``."""
    ppms = []
    for _ in range(k):
        core = int(rng.integers(8, 21))
        ppm = np.full((width, 4), 0.25)
        start = (width - core) // 2 + int(rng.integers(-3, 4))
        ppm[start:start + core] = rng.dirichlet(np.full(4, 0.35), size=core)
        flank = rng.dirichlet(np.full(4, 20.0), size=width)  # faint structure outside
        outside = np.ones(width, dtype=bool)
        outside[start:start + core] = False
        ppm[outside] = flank[outside]
        ppms.append(ppm)
    return ppms


def write_modisco(path: Path, ppms: list[np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        group = f.create_group("pos_patterns")
        for i, ppm in enumerate(ppms):
            hyp = np.log2(np.clip(ppm, 1e-3, None) / 0.25)
            hyp -= hyp.mean(axis=1, keepdims=True)
            info = (ppm * np.log2(np.clip(ppm, 1e-3, None) / 0.25)).sum(axis=1, keepdims=True)
            p = group.create_group(f"pattern_{i}")
            p["sequence"] = ppm
            p["hypothetical_contribs"] = hyp * info
            p["contrib_scores"] = ppm * hyp * info
            seqlets = p.create_group("seqlets")
            seqlets["n_seqlets"] = np.array([100])


def make_regions(rng: np.random.Generator, ppms: list[np.ndarray], n: int, length: int):
    gc = np.array([0.29, 0.21, 0.21, 0.29])
    codes = rng.choice(4, size=(n, length), p=gc)
    hyp = np.zeros((n, 4, length), dtype=np.float32)
    width = ppms[0].shape[0]
    for r in range(n):
        for _ in range(rng.poisson(5.0)):
            m = int(rng.integers(len(ppms)))
            ppm = ppms[m] if rng.random() < 0.5 else ppms[m][::-1, ::-1]
            pos = int(np.clip(rng.normal(length / 2, length / 7), 0, length - width))
            codes[r, pos:pos + width] = [rng.choice(4, p=row / row.sum()) for row in ppm]
            logodds = np.log2(np.clip(ppm, 1e-3, None) / 0.25).T
            hyp[r, :, pos:pos + width] += 0.02 * rng.lognormal(0, 0.5) * (
                logodds - logodds.mean(axis=0, keepdims=True))
    noise = rng.normal(0, 0.006, size=hyp.shape)
    kernel = np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)
    kernel /= kernel.sum()
    noise = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 2, noise)
    hyp += noise.astype(np.float32)
    hyp -= hyp.mean(axis=1, keepdims=True)
    seqs = np.zeros((n, 4, length), dtype=np.int8)
    np.put_along_axis(seqs, codes[:, None, :], 1, axis=1)
    return seqs, hyp.astype(np.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("-n", "--regions", type=int, default=1000)
    parser.add_argument("-L", "--width", type=int, default=1500)
    parser.add_argument("-k", "--motifs", type=int, default=14, help="patterns (x2 strands)")
    parser.add_argument("-W", "--motif-width", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    ppms = make_motifs(rng, args.motifs, args.motif_width)
    write_modisco(args.out / "modisco.h5", ppms)
    seqs, contribs = make_regions(rng, ppms, args.regions, args.width)
    n = args.regions
    np.savez(args.out / "regions.npz", sequences=seqs, contributions=contribs,
             chr=np.array(["chr1"] * n), chr_id=np.zeros(n, dtype=np.uint32),
             start=np.arange(n, dtype=np.int64) * 10 * args.width,
             peak_id=np.arange(n, dtype=np.uint32),
             peak_name=np.array([f"peak_{i}" for i in range(n)]))
    print(args.out / "modisco.h5")
    print(args.out / "regions.npz")


if __name__ == "__main__":
    main()
