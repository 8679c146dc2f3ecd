"""The solver's CUDA work runs in IEEE float32 (``nemo_dask.solver.precision``): TF32
convolutions moved the duality-gap stop in 37 of 350 regions on an H200 (issue 24)."""

from __future__ import annotations

import threading

import pytest
import torch

from nemo_dask.motifs import load_motifs
from nemo_dask.params import SolverParams
from nemo_dask.solver import stream
from nemo_dask.solver.kernels import prepare_motifs
from nemo_dask.solver.precision import ieee_float32

NEW_API = hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


def conv_in_tf32() -> bool:
    """Whether cuDNN may run float32 convolutions in TF32 now."""
    if NEW_API:
        return torch.backends.cudnn.conv.fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


def test_tf32_is_off_inside_and_the_callers_setting_comes_back():
    assert conv_in_tf32()  # torch's default
    with ieee_float32("cuda"):
        assert not conv_in_tf32()
        if NEW_API:
            assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        else:
            assert not torch.backends.cuda.matmul.allow_tf32
    assert conv_in_tf32()
    with pytest.raises(RuntimeError, match="boom"), ieee_float32(torch.device("cuda", 0)):
        raise RuntimeError("boom")
    assert conv_in_tf32()


def test_cpu_solves_leave_the_switches_alone():
    with ieee_float32("cpu"):
        assert conv_in_tf32()


def test_overlapping_solves_keep_tf32_off_until_the_last_ends():
    """Two solver threads in one worker: the first to finish must not turn TF32 back on
    under the other."""
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with ieee_float32("cuda"):
            inside.set()
            release.wait(10)
            seen.append(conv_in_tf32())

    t = threading.Thread(target=other)
    with ieee_float32("cuda"):
        t.start()
        assert inside.wait(10)
    assert not conv_in_tf32()  # the other solve is still running
    release.set()
    t.join(10)
    assert seen == [False] and conv_in_tf32()


def test_the_cuda_stream_runs_inside_ieee_float32(monkeypatch, regions_npz, modisco_h5):
    """fit_stream's batched loop (the only place CUDA work runs) sees TF32 off."""
    seen: list[bool] = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            pass

        def run(self) -> None:
            seen.append(conv_in_tf32())

    monkeypatch.setattr(stream, "_Fit", Recorder)
    prepared = prepare_motifs(load_motifs(modisco_h5), "cpu", True)
    job = stream.Job(regions_npz["sequences"][:2], regions_npz["contributions"][:2], 0,
                     lambda res: None)
    stream.fit_stream(job, lambda: None, prepared, params=SolverParams(batch_size=2),
                      device="cuda")
    stream.fit_stream(job, lambda: None, prepared, params=SolverParams(batch_size=2),
                      device="cpu")
    assert seen == [False, True]
    assert conv_in_tf32()
