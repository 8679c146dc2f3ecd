"""Live oracle: finemo 0.41 run in this session on this CPU, against nemo_dask on a cluster.

On the same machine both must take the same number of steps in every region and call the same
hits; coefficients agree within 1e-3 relative (finemo's own result depends on its batch size at
~2e-5). All through compare_hits, with no knife-edge allowance: on one CPU there is no coin toss.
"""

from __future__ import annotations

import pytest

from nemo_dask.calling.api import call_hits
from nemo_dask.compare import compare_hits

from .conftest import DATA

# (mode, workers, block size): several block sizes, 1 and 2 workers, for both modes.
RUNS = [("pp", 2, 50), ("pp", 1, 128), ("hh", 2, 100), ("hh", 1, 40)]


@pytest.mark.parametrize("mode,workers,block_size", RUNS,
                         ids=[f"{m}-w{w}-b{b}" for m, w, b in RUNS])
def test_nemo_dask_equals_live_finemo(request, tmp_path, finemo_live, mode, workers, block_size):
    reference = finemo_live(mode)
    client = request.getfixturevalue("client1" if workers == 1 else "client2")
    res = call_hits(DATA / "regions.npz", DATA / "modisco.h5", tmp_path / "out", client=client,
                    mode=mode, block_size=block_size, progress=False)
    assert len({s["worker"] for s in res.summaries}) == workers
    cmp = compare_hits(res.out, reference, max_knife_edge_share=0.0)
    assert cmp.agrees, cmp.format()
    assert cmp.n_regions == 350 and cmp.steps_differ == []
    assert cmp.n_a == cmp.n_b == cmp.n_shared > 1000 and cmp.jaccard == 1.0
    assert cmp.value("hit_coefficient").max_all < 1e-3
