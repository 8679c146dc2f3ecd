"""call-hits on dask-cuda's LocalCUDACluster against the CPU result (needs a CUDA GPU)."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from conftest import max_rel

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
        cpu = call_hits(data_dir / "regions.npz", modisco_h5, tmp_path / "cpu",
                        client=cpu_client, device="cpu", progress=False)
        cpu_hits = cpu.hits.collect()
    with dask_cuda.LocalCUDACluster(host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        gpu = call_hits(data_dir / "regions.npz", modisco_h5, tmp_path / "gpu", client=client,
                        progress=False)
        assert {s["device"] for s in gpu.summaries} == {"cuda"}
        gpu_hits = gpu.hits.collect()
    key = ["peak_id", "motif_id", "hit_start"]
    joined = cpu_hits.join(gpu_hits, on=key, how="full", coalesce=True, suffix="_gpu")
    n_union = joined.height
    n_both = joined.filter(pl.col("hit_coefficient").is_not_null()
                           & pl.col("hit_coefficient_gpu").is_not_null()).height
    assert n_both / n_union >= 0.999
    both = joined.drop_nulls(["hit_coefficient", "hit_coefficient_gpu"])
    assert max_rel(both["hit_coefficient_gpu"], both["hit_coefficient"]) < 1e-3
    assert max_rel(both["hit_similarity_gpu"], both["hit_similarity"]) < 1e-4
