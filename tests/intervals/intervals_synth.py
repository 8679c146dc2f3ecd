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
