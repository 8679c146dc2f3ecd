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


def _bash_example(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"README.md has no bash block under {heading!r}"
    return match.group(1)


def test_many_runs_example_runs_as_written(tmp_path):
    """The sheet of the bundled fixture at modes pp and hh and two lambdas, then intersect-hits
    across the four runs, from a directory laid out as the repository is."""
    import os

    import polars as pl

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(README.parent / "tests" / "data")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c",
                           _bash_example("## Many runs on one cluster")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 runs: 4 done" in proc.stdout
    summary = pl.read_csv(tmp_path / "runs.summary.tsv", separator="\t")
    assert summary["status"].to_list() == ["done"] * 4
    assert summary["regions"].to_list() == [350] * 4
    hits = {name: pl.scan_parquet(tmp_path / "runs" / name / "hits" / "*.parquet").collect()
            for name in summary["name"]}
    assert len({h.height for h in hits.values()}) == 4  # four different runs
    shared = pl.read_csv(tmp_path / "runs" / "hits_intersect.tsv", separator="\t")
    assert 0 < shared.height < min(h.height for h in hits.values())
