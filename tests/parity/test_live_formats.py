"""Live oracle across input formats: each of the five converters, then call-hits, equals finemo.

On the 30-region converter fixtures (tests/data/convert), finemo 0.41's own extractors and
call-hits run once, in one subprocess; nemo_dask converts the same inputs into Zarr stores and
calls hits on a cluster. compare_hits must find the same hits and steps (no knife-edge allowance:
one CPU). finemo takes regions.npz itself, so the npz converter is fed finemo's modisco extract.
For bigWig input, peaks whose window starts before position 0 are left out on both sides:
finemo writes such a region all zero, nemo_dask keeps the part inside the chromosome (issue 15;
tested against the genome itself in tests/regions/test_convert.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from nemo_dask.calling.api import call_hits
from nemo_dask.compare import compare_hits
from nemo_dask.regions.convert import (
    convert_bigwig,
    convert_bpnet_h5,
    convert_chrombpnet_h5,
    convert_modisco,
    convert_npz,
)

from .conftest import DATA, FINEMO_BATCH, require_finemo

C = DATA / "convert"

#: format -> (finemo extractor, its keyword arguments); "npz" reuses the modisco extract.
EXTRACT = {
    "modisco": ("extract_regions_modisco_fmt",
                dict(peaks_path=C / "peaks.narrowPeak", chrom_order_path=None,
                     shaps_paths=[C / "shap.npz"], ohe_path=C / "ohe.npz")),
    "chrombpnet-h5": ("extract_regions_chrombpnet_h5",
                      dict(peaks_path=C / "peaks.narrowPeak", chrom_order_path=None,
                           h5_paths=[C / "chrombpnet.h5"])),
    "bpnet-h5": ("extract_regions_bpnet_h5",
                 dict(peaks_path=C / "peaks.narrowPeak", chrom_order_path=None,
                      h5_paths=[C / "bpnet.h5"])),
    "bigwig": ("extract_regions_bw",
               dict(peaks_path=None, chrom_order_path=None,  # peaks: _peaks_inside_chroms
                    fa_path=C / "genome.fa", bw_paths=[C / "contribs.bw"])),
}

WIDTH = 1000

CONVERT = {
    "modisco": lambda out, npz: convert_modisco(C / "ohe.npz", C / "shap.npz", out,
                                                peaks=C / "peaks.narrowPeak"),
    "chrombpnet-h5": lambda out, npz: convert_chrombpnet_h5([C / "chrombpnet.h5"], out,
                                                            peaks=C / "peaks.narrowPeak"),
    "bpnet-h5": lambda out, npz: convert_bpnet_h5(C / "bpnet.h5", out,
                                                  peaks=C / "peaks.narrowPeak"),
    "bigwig": lambda out, npz: convert_bigwig(npz.parent / "peaks_bw_inside.narrowPeak",
                                              C / "genome.fa", [C / "contribs.bw"], out),
    "npz": lambda out, npz: convert_npz(npz, out),
}

_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
from finemo import main
jobs = json.loads(sys.argv[1])
for fmt, (extractor, kwargs, npz, out) in jobs.items():
    getattr(main, extractor)(out_path=npz, region_width=1000, **kwargs)
    main.call_hits(regions_path=npz, peaks_path=None, modisco_h5_path=sys.argv[2],
                   chrom_order_path=None, motifs_include_path=None, motif_names_path=None,
                   motif_lambdas_path=None, out_dir=out, batch_size=int(sys.argv[3]))
"""


@pytest.fixture(scope="module")
def finemo_formats(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """format -> (finemo's regions.npz, finemo's call-hits output directory)."""
    require_finemo()
    root = tmp_path_factory.mktemp("finemo_formats")
    EXTRACT["bigwig"][1]["peaks_path"] = _peaks_inside_chroms(root)
    jobs = {fmt: (name, {k: [str(x) for x in v] if isinstance(v, list) else
                         (None if v is None else str(v)) for k, v in kw.items()},
                  str(root / f"{fmt}.npz"), str(root / fmt))
            for fmt, (name, kw) in EXTRACT.items()}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(jobs),
                           str(DATA / "modisco.h5"), str(FINEMO_BATCH)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {fmt: (Path(job[2]), Path(job[3])) for fmt, job in jobs.items()}
    out["npz"] = out["modisco"]
    return out


def _peaks_inside_chroms(root: Path) -> Path:
    """The bigWig peaks whose finemo window (summit ± WIDTH/2) starts at or after position 0."""
    rows = (C / "peaks_bw.narrowPeak").read_text().splitlines(keepends=True)
    kept = [r for r in rows
            if int(r.split("\t")[1]) + int(r.split("\t")[9]) - WIDTH // 2 >= 0]
    assert 0 < len(kept) < len(rows)  # the fixture has one region reaching before position 0
    path = root / "peaks_bw_inside.narrowPeak"
    path.write_text("".join(kept))
    return path


@pytest.mark.parametrize("fmt", list(CONVERT))
def test_converted_and_called_equals_finemo(tmp_path, finemo_formats, client2, fmt):
    npz, reference = finemo_formats[fmt]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # finemo-compatible warnings about odd regions
        store = CONVERT[fmt](tmp_path / "regions.zarr", npz)
    n_regions = 29 if fmt == "bigwig" else 30
    assert store.n_regions == n_regions
    res = call_hits(tmp_path / "regions.zarr", DATA / "modisco.h5", tmp_path / "out",
                    client=client2, block_size=8, progress=False)
    cmp = compare_hits(res.out, reference, max_knife_edge_share=0.0)
    assert cmp.agrees, cmp.format()
    assert cmp.n_regions == n_regions and cmp.steps_differ == [] and cmp.jaccard == 1.0
    assert cmp.n_shared > 50
