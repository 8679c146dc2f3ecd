"""call-hits on dask-cuda's LocalCUDACluster against the CPU result (needs a CUDA GPU)."""

from __future__ import annotations

import pytest
import torch

from nemo_dask.compare import compare_hits

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_local_cuda_cluster_matches_cpu(tmp_path, data_dir, modisco_h5):
    dask_cuda = pytest.importorskip("dask_cuda")
    distributed = pytest.importorskip("distributed")
    from nemo_dask.calling.api import call_hits

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cpu_cluster, \
            distributed.Client(cpu_cluster) as cpu_client:
        call_hits(data_dir / "regions.npz", modisco_h5, tmp_path / "cpu",
                  client=cpu_client, device="cpu", progress=False)
    with dask_cuda.LocalCUDACluster(host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        gpu = call_hits(data_dir / "regions.npz", modisco_h5, tmp_path / "gpu", client=client,
                        progress=False)
        assert {s["device"] for s in gpu.summaries} == {"cuda"}
    # The project's one rule for "the same hits" (nemo_dask/compare.py): the same steps in
    # every region but knife-edge ones, the same hits elsewhere, values within tolerance.
    cmp = compare_hits(tmp_path / "cpu", tmp_path / "gpu", min_jaccard=0.999, coef_rtol=1e-3,
                       sim_rtol=1e-4, imp_rtol=1e-4, max_coef_outlier_share=0.005)
    assert cmp.agrees, cmp.format()
