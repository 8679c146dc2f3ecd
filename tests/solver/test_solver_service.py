"""The per-process solver thread: blocks stream through it with unchanged results."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nemo_dask.motifs import load_motifs
from nemo_dask.params import SolverParams
from nemo_dask.solver.service import SolverService
from nemo_dask.solver.stream import fit_block


def test_blocks_stream_through_with_unchanged_results_and_errors_reach_their_task(
        regions_npz, modisco_h5):
    motifs = load_motifs(modisco_h5)
    seqs, contribs = regions_npz["sequences"][:70], regions_npz["contributions"][:70]
    cpu, params = torch.device("cpu"), SolverParams(batch_size=8)
    service = SolverService()
    bounds = [(0, 20), (20, 45), (45, 70)]

    def submit(key, a, b, **kw):
        opts = dict(motifs=motifs, device=cpu, params=params, threads=1)
        return service.submit(key, seqs[a:b], contribs[a:b], a, **(opts | kw))

    # Two runs interleaved: each block must be solved with its own run's parameters.
    other = SolverParams(batch_size=8, convergence_tol=0.01)
    submitted = [submit("run-a", a, b) for a, b in bounds] + [submit("run-b", 0, 10, params=other)]
    hyp, hyp_started = submit("run-c", 0, 3, params=replace(params, use_hypothetical=True))  # a third run
    after = submit("run-a", 0, 20)[0]

    for (a, b), (future, started) in zip(bounds, submitted, strict=False):
        result, seconds = future.result(timeout=300)
        alone = fit_block(seqs[a:b], contribs[a:b], motifs,
                          params=params, region_offset=a)
        assert started.is_set() and seconds > 0
        assert result.hits.equals(alone.hits) and result.qc.equals(alone.qc)
    loose = submitted[-1][0].result(timeout=300)[0]
    assert loose.qc.equals(fit_block(seqs[:10], contribs[:10], motifs,
                                     params=other).qc)
    # Hypothetical mode on compact contributions: that block's task gets the error, and the
    # solver thread goes on with the next block.
    contribs_compact = regions_npz["contributions"][:3].sum(axis=1)
    bad2, _ = service.submit("run-d", seqs[:3], contribs_compact, 0, motifs=motifs, device=cpu,
                             params=replace(params, use_hypothetical=True), threads=1)
    with pytest.raises(ValueError, match="hypothetical modes need"):
        bad2.result(timeout=60)
    assert hyp.result(timeout=60)[0].qc.height == 3 and hyp_started.is_set()
    assert after.result(timeout=300)[0].qc.height == 20
