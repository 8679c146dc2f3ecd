"""Converting a whole chromosome: peak memory flat from one length to four times it.

Each conversion runs in a fresh subprocess that reports its own peak RSS (VmHWM), as
tests/regions/test_convert_memory.py does. benchmarks/tiled_genome.py runs the 50 Mb case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from intervals_synth import pattern_cwm, write_long_genome

_CHILD = """
import json, sys, warnings
warnings.simplefilter("ignore")
from nemo_dask.regions.convert import convert_intervals
regions = convert_intervals(sys.argv[1], sys.argv[2], sys.argv[3], whole_genome=True,
                            progress=False)
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"n": regions.n_regions, "maxrss_mb": peak / 1024}))
"""


def _peak_rss(where: Path, length: int, cwm) -> tuple[int, float]:
    sub = where / str(length)
    sub.mkdir()
    fasta, bw = write_long_genome(sub, length, cwm)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(fasta), str(bw),
                           str(sub / "s.zarr")], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["n"], result["maxrss_mb"]


def test_whole_chromosome_memory_is_flat(tmp_path, modisco_h5):
    cwm = pattern_cwm(modisco_h5)
    n1, small = _peak_rss(tmp_path, 2_000_000, cwm)
    n4, large = _peak_rss(tmp_path, 8_000_000, cwm)
    assert n1 == 2223 and n4 == 8889  # ceil((length + 100 - 1000) / 900) + 1 windows
    assert large < 1.15 * small, (small, large)
