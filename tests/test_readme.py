"""What README.md promises runs: its Python example, on a small store, as a user would paste it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

README = Path(__file__).parents[1] / "README.md"


def _python_example() -> str:
    section = README.read_text().split("### From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under 'From Python'"
    return match.group(1)


def test_from_python_example_runs(tmp_path, regions_npz, modisco_h5):
    from nemo_dask.regions.convert import convert_npz

    npz = tmp_path / "regions24.npz"
    np.savez(npz, **{k: v[:24] for k, v in regions_npz.items()})
    convert_npz(npz, tmp_path / "regions.zarr", progress=False)
    (tmp_path / "modisco.h5").symlink_to(modisco_h5)
    (tmp_path / "example.py").write_text(_python_example())
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("shape: (")  # the printed table of hits
    # Closing the cluster prints no tracebacks, no killed workers (issue 29, items 12-13).
    for noise in ("Traceback", "Error", "still alive", "killing"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out" / "hits").glob("*.parquet"))
