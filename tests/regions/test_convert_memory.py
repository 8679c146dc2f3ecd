"""Peak memory of a conversion is bounded by a chunk, not by the number of regions N.

Each conversion runs in a fresh subprocess that reports its own peak RSS (``VmHWM`` of
``/proc/self/status``; ``ru_maxrss`` where that is missing); inputs of N and 4N regions are the test
fixture's 30 regions tiled. Run this file as a script for the figures quoted in the notes::

    python tests/test_convert_memory.py --n 2800 --formats npz modisco chrombpnet-h5 bpnet-h5 bigwig
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

D = Path(__file__).parents[1] / "data" / "convert"

_CHILD = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from nemo_dask.regions import convert
fmt, args, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
func = getattr(convert, "convert_" + fmt.replace("-", "_"))
regions = func(*args["pos"], out, **args["kw"], progress=False)
try:  # VmHWM: this process's own peak (ru_maxrss may include the parent's, inherited at exec)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": regions.n_regions, "maxrss_mb": peak / 1024,
                  "seconds": time.perf_counter() - t0}))
"""


def make_inputs(fmt: str, n: int, where: Path) -> dict:
    """Tiled inputs of ``n`` regions for ``fmt``; returns the converter's arguments."""
    reps = -(-n // 30)
    peaks_src = "peaks_bw.narrowPeak" if fmt == "bigwig" else "peaks.narrowPeak"
    lines = (D / peaks_src).read_text().splitlines() * reps
    peaks = where / f"{fmt}-{n}.narrowPeak"
    peaks.write_text("\n".join(lines[:n]) + "\n")
    if fmt == "bigwig":
        return {"pos": [str(peaks), str(D / "genome.fa"), [str(D / "contribs.bw")]], "kw": {}}
    with np.load(D / "ohe.npz") as o, np.load(D / "shap.npz") as s:
        ohe = np.tile(o["arr_0"], (reps, 1, 1))[:n]
        shap = np.nan_to_num(np.tile(s["arr_0"], (reps, 1, 1))[:n])
    if fmt == "npz":
        path = where / f"regions-{n}.npz"
        with np.load(D / "expected_modisco.npz") as r:
            ref = {k: np.concatenate([r[k]] * reps)[:n] for k in r.files}
        np.savez_compressed(path, **ref)
        return {"pos": [str(path)], "kw": {}}
    if fmt == "modisco":
        np.savez_compressed(where / f"ohe-{n}.npz", ohe)
        np.savez_compressed(where / f"shap-{n}.npz", shap)
        return {"pos": [str(where / f"ohe-{n}.npz"), [str(where / f"shap-{n}.npz")]],
                "kw": {"peaks": str(peaks)}}
    path = where / f"{fmt}-{n}.h5"
    with h5py.File(path, "w") as f:
        if fmt == "chrombpnet-h5":
            f.create_dataset("raw/seq", data=ohe, chunks=(64, 4, ohe.shape[2]))
            f.create_dataset("shap/seq", data=shap.astype(np.float16),
                             chunks=(64, 4, ohe.shape[2]), compression="gzip")
        else:
            f.create_dataset("input_seqs", data=ohe.swapaxes(1, 2), chunks=(64, ohe.shape[2], 4))
            f.create_dataset("hyp_scores", data=shap.astype(np.float16).swapaxes(1, 2),
                             chunks=(64, ohe.shape[2], 4), compression="gzip")
    return {"pos": [[str(path)]], "kw": {"peaks": str(peaks)}}


def peak_rss(fmt: str, n: int, where: Path) -> float:
    """Peak RSS (MB) of converting ``n`` tiled regions of ``fmt`` in a fresh process (the
    conversion's wall time is printed to stderr)."""
    args = make_inputs(fmt, n, where)
    out = where / f"{fmt}-{n}.zarr"
    proc = subprocess.run([sys.executable, "-c", _CHILD, fmt, json.dumps(args), str(out)],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] == n
    print(f"{fmt} n={n}: {result['seconds']:.1f} s", file=sys.stderr)
    return float(result["maxrss_mb"])


@pytest.mark.parametrize("fmt", ["npz", "modisco"])
def test_peak_rss_does_not_grow_with_n(fmt: str, tmp_path: Path) -> None:
    small, large = peak_rss(fmt, 600, tmp_path), peak_rss(fmt, 2400, tmp_path)
    assert large < 1.3 * small, (small, large)


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2800)
    parser.add_argument("--formats", nargs="+",
                        default=["npz", "modisco", "chrombpnet-h5", "bpnet-h5", "bigwig"])
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in opts.formats:
            a = peak_rss(fmt, opts.n, Path(tmp))
            b = peak_rss(fmt, 4 * opts.n, Path(tmp))
            print(f"{fmt:14s} N={opts.n}: {a:7.1f} MB   4N={4 * opts.n}: {b:7.1f} MB   "
                  f"ratio {b / a:.3f}", flush=True)
