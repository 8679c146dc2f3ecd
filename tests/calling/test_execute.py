"""Where the driver meets the cluster: GPUs asked of the workers, placement resolved on them."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from nemo_dask.calling.execute import cluster_has_gpus, workers_gpu_batch
from nemo_dask.calling.plan import default_block_size
from nemo_dask.calling.task import resolve_placement


class _FakeClient:
    """Answers as a cluster whose workers do (or do not) see a GPU."""

    def __init__(self, answers: dict[str, bool]):
        self.answers, self.runs = answers, 0

    def scheduler_info(self):
        return {"workers": dict.fromkeys(self.answers, {})}

    def run(self, func, *args):
        self.runs += 1
        return dict(self.answers)


def test_gpus_are_asked_of_the_workers_not_guessed_from_options():
    gpu_client = _FakeClient({"tcp://a": True, "tcp://b": True})
    # A caller's own client on GPUs, with no cluster options at all: GPU-sized blocks.
    assert cluster_has_gpus(gpu_client, "auto", None) is True and gpu_client.runs == 1
    # Options saying "cuda" do not override what the workers say.
    cpu_client = _FakeClient({"tcp://a": False})
    assert cluster_has_gpus(cpu_client, "auto", SimpleNamespace(cluster="cuda")) is False
    # An explicit device needs no question.
    assert cluster_has_gpus(gpu_client, "cpu") is False and gpu_client.runs == 1
    assert cluster_has_gpus(cpu_client, "cuda:1") is True


def test_a_cluster_without_workers_yet_answers_with_what_it_was_asked_for():
    empty = _FakeClient({})
    jobs = SimpleNamespace(cluster="slurm", gpus_per_job=1)
    assert cluster_has_gpus(empty, "auto", jobs) is True and empty.runs == 0
    assert cluster_has_gpus(empty, "auto", SimpleNamespace(cluster="slurm", gpus_per_job=0)) \
        is False


def test_block_sizes_for_cpu_and_gpu_workers():
    assert default_block_size(350, 64, gpu=False) == 22  # about 16 blocks, under a chunk
    assert default_block_size(100_000, 256, gpu=True) == 8192
    assert default_block_size(100_000, 256, gpu=False) == 1024
    # On GPUs: 4 batches of what the workers' free memory holds, in whole chunks.
    assert default_block_size(100_000, 256, gpu=True, gpu_batch=3000) == 12032
    assert default_block_size(5_000, 256, gpu=True, gpu_batch=3000) == 5000
    # A run of a --runs sheet is blocked for the sheet's one queue: 20 runs of 350 regions as
    # one run of 7000 (16 blocks of 448), so each is one block, not 16 of 22.
    assert default_block_size(350, 64, gpu=False, queue_regions=7000) == 350
    assert default_block_size(7000, 64, gpu=False) == 448
    assert default_block_size(350, 64, gpu=False, queue_regions=350) == 22


def test_gpu_batch_is_asked_of_the_workers_and_the_smallest_wins():
    # Workers answer with stream.cuda_batch_size of their own free memory.
    client = _FakeClient({"tcp://a": 4000, "tcp://b": 2500})
    assert workers_gpu_batch(client, 20, 1000, 30) == 2500 and client.runs == 1
    assert workers_gpu_batch(_FakeClient({}), 20, 1000, 30) is None  # no worker up yet


def test_placement_is_resolved_once_from_the_worker():
    worker = SimpleNamespace(state=SimpleNamespace(nthreads=3))
    place = resolve_placement("cpu", worker)
    assert place.device == torch.device("cpu") and place.threads == 3
    auto = resolve_placement("auto", None)
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert auto.threads == torch.get_num_threads()
