"""Make the 30-region converter fixtures of tests/data/convert from the shared small fixture.

Run once (not by pytest): ``python tests/data/convert/make_subsets.py FIXTURE_DIR``, then the
finemo 0.41 commands listed in tests/data/README.md produce the expected_*.npz files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pyBigWig
import pyfaidx

# Rows of the fixture's peaks.narrowPeak: the first 18, then the special regions (54 N run,
# 90/91 duplicate pair, 242 NaN flank, 294 chromosome end in the stored window, 334 all-zero,
# 335..349 null regions) and two more.
ROWS = list(range(18)) + [54, 90, 91, 100, 200, 242, 294, 334, 335, 338, 340, 349]
W_IN, W_OUT = 1200, 1040          # fixture stored width, subset stored width (centre crop)
CROP = (W_IN - W_OUT) // 2
NULL_NAME_ROW = 5                 # subset row whose peak name becomes "." (finemo: "None")


def main(fixture: Path, out: Path) -> None:
    rows = np.array(ROWS)
    lines = (fixture / "peaks.narrowPeak").read_text().splitlines()
    sub = [lines[i].split("\t") for i in rows]
    sub[NULL_NAME_ROW][3] = "."
    (out / "peaks.narrowPeak").write_text("".join("\t".join(r) + "\n" for r in sub))
    (out / "chrom_order.txt").write_text("chr2\nchr3\n")

    with np.load(fixture / "ohe.npz") as d:
        ohe = d["arr_0"][rows][:, :, CROP:CROP + W_OUT]
    with np.load(fixture / "shap.npz") as d:
        shap = d["arr_0"][rows][:, :, CROP:CROP + W_OUT]
    np.savez_compressed(out / "ohe.npz", ohe)
    np.savez_compressed(out / "shap.npz", shap)
    # A second attribution file (.npy, float32) for finemo's float16 averaging.
    rng = np.random.default_rng(3)
    shap2 = (shap * rng.uniform(0.5, 1.5, size=shap.shape)).astype(np.float32)
    np.save(out / "shap2.npy", shap2)

    blosc = hdf5plugin.Blosc(cname="zstd", clevel=9, shuffle=hdf5plugin.Blosc.BITSHUFFLE)
    with h5py.File(out / "chrombpnet.h5", "w") as f:
        f.create_dataset("raw/seq", data=ohe, chunks=(8, 4, W_OUT), **blosc)
        f.create_dataset("shap/seq", data=shap.astype(np.float16), chunks=(8, 4, W_OUT),
                         **blosc)
    with h5py.File(out / "bpnet.h5", "w") as f:
        f.create_dataset("input_seqs", data=ohe.swapaxes(1, 2), chunks=(8, W_OUT, 4), **blosc)
        f.create_dataset("hyp_scores", data=shap.astype(np.float16).swapaxes(1, 2),
                         chunks=(8, W_OUT, 4), **blosc)
    make_bigwig_genome(fixture, out, lines)


def make_bigwig_genome(fixture: Path, out: Path, lines: list[str]) -> None:
    """A small genome of the 30 loci: 1200 bp of the fixture genome around each finemo window,
    laid end to end on chrA (first 15) and chrB; the first locus starts 150 bp into its window
    (so its region starts before position 0), and the peaks and bigWig are moved with them."""
    genome = pyfaidx.Fasta(str(fixture / "genome.fa"), one_based_attributes=False)
    bw_in = pyBigWig.open(str(fixture / "contribs_projected.bw"))
    with np.load(fixture / "regions.npz") as d:
        starts = d["start"]
    seqs: dict[str, list[str]] = {"chrA": [], "chrB": []}
    values: dict[str, list[np.ndarray]] = {"chrA": [], "chrB": []}
    peaks = []
    offset = {"chrA": 0, "chrB": 0}
    for k, row in enumerate(ROWS):
        fields = lines[row].split("\t")
        chrom, s0 = fields[0], int(starts[row])
        lo = s0 + 150 if k == 0 else s0 - 100
        hi = min(s0 + 1100, len(genome[chrom]))
        new = "chrA" if k < 15 else "chrB"
        shift = offset[new] - lo
        seqs[new].append(genome[chrom][lo:hi].seq)
        values[new].append(np.asarray(bw_in.values(chrom, lo, hi, numpy=True), dtype=np.float32))
        fields[0] = new
        fields[1] = str(int(fields[1]) + shift)
        fields[2] = str(int(fields[2]) + shift)
        if k == NULL_NAME_ROW:
            fields[3] = "."
        peaks.append("\t".join(fields))
        offset[new] += hi - lo
    with open(out / "genome.fa", "w") as f:
        for chrom, parts in seqs.items():
            seq = "".join(parts)
            f.write(f">{chrom}\n")
            f.writelines(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60))
    pyfaidx.Faidx(str(out / "genome.fa"))  # writes genome.fa.fai
    (out / "peaks_bw.narrowPeak").write_text("\n".join(peaks) + "\n")
    bw = pyBigWig.open(str(out / "contribs.bw"), "w")
    bw.addHeader([(c, offset[c]) for c in seqs])
    for chrom, parts in values.items():
        vals = np.concatenate(parts)
        ok = ~np.isnan(vals)
        # one fixed-step run per stretch of present values (missing stays missing)
        idx = np.flatnonzero(ok)
        for run in np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1):
            if run.size:
                bw.addEntries(chrom, int(run[0]), values=vals[run].tolist(), span=1, step=1)
    bw.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent)
