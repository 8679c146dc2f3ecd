"""Live oracle at low lambda: finemo 0.41 against itself and against nemo_dask at lambda 0.05.

At lambda 0.05 (hh: ~1,600 non-zero coefficients per region, hundreds of steps) rounding alone
moves a region's final duality gap by up to a tenth of the tolerance or more, so finemo at
batch 1 and at batch 16, a change of rounding and nothing else, stop some regions at other
steps with their gaps several 1e-2 x tol from it, and move tiny coefficients by more than
1e-3 of themselves. The parity rule measures that spread from the pair itself (the regions both
stop together) and judges small coefficients against their region's largest
(:mod:`nemo_dask.compare`). This test checks the rule on both pairs: it must accept finemo
against itself, and nemo_dask against finemo, by the same measure, and the fixed 1e-3 band
must not (else the test shows nothing about the measured one).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nemo_dask.calling.api import call_hits
from nemo_dask.clusters.connect import ClusterOptions
from nemo_dask.compare import compare_hits

from .conftest import DATA, FINEMO_BATCH, require_finemo, run_finemo

LAMBDA = 0.05
N_REGIONS = 24  # of the fixture's 350: ~15 s per finemo run at this lambda


def test_low_lambda_parity_is_finemos_own_rounding_spread(tmp_path):
    require_finemo()
    z = np.load(DATA / "regions.npz")
    regions = tmp_path / "regions.npz"
    np.savez(regions, **{k: z[k][:N_REGIONS] for k in z.files})
    runs = {batch: tmp_path / f"finemo_b{batch}" for batch in (FINEMO_BATCH, 1)}
    # finemo's two runs (subprocesses) and ours at once: each is mostly one busy thread.
    with ThreadPoolExecutor(len(runs)) as pool:
        done = [pool.submit(run_finemo, ["call-hits", "-r", str(regions), "-m",
                                         str(DATA / "modisco.h5"), "-o", str(out), "-M", "hh",
                                         "-l", str(LAMBDA), "-b", str(batch)], None, 1)
                for batch, out in runs.items()]
        ours = call_hits(regions, DATA / "modisco.h5", tmp_path / "ours", mode="hh",
                         lambda_default=LAMBDA, progress=False,
                         cluster=ClusterOptions(cluster="in-process")).out
        for d in done:
            d.result()

    itself = compare_hits(runs[1], runs[FINEMO_BATCH])
    assert itself.agrees, itself.format()
    for reference in runs.values():
        cmp = compare_hits(ours, reference)
        assert cmp.agrees, cmp.format()
        assert cmp.n_regions == N_REGIONS and cmp.jaccard >= 0.999, cmp.format()
        # The spread is measured, well above the fixed floor, at the scale finemo's own shows.
        assert 1e-3 < cmp.edge.spread < 2 * itself.edge.spread + 0.05, cmp.format()
    strict = [compare_hits(a, b, measured_edge=False, coef_floor=0)
              for a, b in ((runs[1], runs[FINEMO_BATCH]), (ours, runs[FINEMO_BATCH]))]
    assert not any(c.agrees for c in strict), "\n".join(c.format() for c in strict)
