"""Synthetic genomes for interval tests: a FASTA and a projected-contribution bigWig with CWMs
planted at known genomic positions (the fixture's real modisco patterns)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

BASES = np.array(list("ACGT"))


def pattern_cwm(modisco_h5: Path, name: str = "pattern_0") -> np.ndarray:
    """(W, 4) contrib_scores of a positive pattern."""
    with h5py.File(modisco_h5, "r") as f:
        return np.asarray(f["pos_patterns"][name]["contrib_scores"], dtype=np.float64)


def write_genome(where: Path, chroms: dict[str, int], plants: dict[str, list[int]],
                 cwm: np.ndarray, *, seed: int = 0, noise: float = 0.002,
                 strength: float = 1.0, bw_name: str = "contribs.bw") -> tuple[Path, Path]:
    """FASTA + bigWig: random sequence, small Gaussian contributions, and at each planted
    untrimmed start the CWM's best base per position with its contribution (``strength`` x the
    CWM value), i.e. the projected contributions of a strong instance on the + strand."""
    import pyBigWig

    rng = np.random.default_rng(seed)
    fasta = where / "genome.fa"
    bw_path = where / bw_name
    best = cwm.argmax(axis=1)
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader(list(chroms.items()))
    with open(fasta, "w") as fa:
        for chrom, length in chroms.items():
            seq = rng.integers(0, 4, length)
            values = rng.normal(0, noise, length)
            for p in plants.get(chrom, []):
                lo, hi = max(p, 0), min(p + len(cwm), length)
                seq[lo:hi] = best[lo - p:hi - p]
                values[lo:hi] = strength * cwm[np.arange(lo - p, hi - p), best[lo - p:hi - p]]
            text = "".join(BASES[seq])
            fa.write(f">{chrom}\n")
            for i in range(0, length, 60):
                fa.write(text[i:i + 60] + "\n")
            bw.addEntries(chrom, 0, values=values.astype(np.float64).tolist(), span=1, step=1)
    bw.close()
    return fasta, bw_path


def write_long_genome(where: Path, length: int, cwm: np.ndarray, *, chrom: str = "chrL",
                      every: int = 5000, seed: int = 0, block: int = 60 * 16384,
                      noise: float = 0.002) -> tuple[Path, Path]:
    """One chromosome of ``length`` bases written 1 Mb at a time (bounded memory), with a
    planted + strand instance of ``cwm`` every ``every`` bases (untrimmed starts
    ``every // 2 + k * every``) in Gaussian noise; returns (FASTA, bigWig)."""
    import pyBigWig

    rng = np.random.default_rng(seed)
    fasta, bw_path = where / f"{chrom}.fa", where / f"{chrom}.bw"
    best = cwm.argmax(axis=1)
    width = len(cwm)
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader([(chrom, length)])
    with open(fasta, "w") as fa:
        fa.write(f">{chrom}\n")
        for lo in range(0, length, block):
            hi = min(lo + block, length)
            seq = rng.integers(0, 4, hi - lo)
            values = rng.normal(0, noise, hi - lo)
            first = -(-(lo - every // 2) // every) * every + every // 2
            for p in range(max(first, every // 2), hi - width, every):
                seq[p - lo:p - lo + width] = best
                values[p - lo:p - lo + width] = cwm[np.arange(width), best]
            text = "".join(BASES[seq])
            # block is a multiple of 60, so lines never straddle two blocks
            fa.write("".join(text[i:i + 60] + "\n" for i in range(0, len(text), 60)))
            bw.addEntries(chrom, lo, values=values, span=1, step=1)
    bw.close()
    return fasta, bw_path
