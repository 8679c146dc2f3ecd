"""IEEE float32 arithmetic for the solver's convolutions on CUDA.

PyTorch lets cuDNN run float32 convolutions in TF32 on Ampere and later GPUs unless told
otherwise (``torch.backends.cudnn.conv.fp32_precision`` is ``"tf32"`` by default; before torch
2.9 ``torch.backends.cudnn.allow_tf32`` is True). TF32 keeps 10 bits of mantissa, so every
prediction, gradient and scoring convolution is off by up to ~5e-4 relative. Measured on an
H200 (issue 24) against the CPU run of the same input: hit_similarity off by up to 2.9e-4 and
the duality-gap stop moved in 37 of 350 regions (coefficients off by up to 43 %) — a GPU run
that silently disagreed with the CPU run and with finemo's CPU results. The solver therefore
runs its CUDA work in IEEE float32, as it does on the CPU, and gives the caller's setting back
afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[object, str, object]] = []


def _switches() -> list[tuple[object, str, object]]:
    """(object, attribute, IEEE value) of each switch that can put float32 work in TF32.

    torch >= 2.9 has per-operator ``fp32_precision`` settings; reading the legacy
    ``allow_tf32`` after setting those raises when they disagree, so only one API is used.
    """
    cudnn = torch.backends.cudnn
    matmul = torch.backends.cuda.matmul
    if hasattr(getattr(cudnn, "conv", None), "fp32_precision"):
        out: list[tuple[object, str, object]] = [(cudnn.conv, "fp32_precision", "ieee")]
        if hasattr(getattr(cudnn, "rnn", None), "fp32_precision"):
            # conv and rnn must agree, or torch's own legacy reads raise
            out.append((cudnn.rnn, "fp32_precision", "ieee"))
        if hasattr(matmul, "fp32_precision"):
            out.append((matmul, "fp32_precision", "ieee"))
        return out
    return [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]


@contextmanager
def ieee_float32(device: torch.device | str) -> Iterator[None]:
    """Run the body with TF32 off for cuDNN convolutions and cuBLAS matrix products when
    ``device`` is a CUDA device; a no-op elsewhere.

    The switches are process-wide, so concurrent solves in one process share one count: the
    first to enter saves the caller's settings and the last to leave restores them.
    """
    global _depth
    if torch.device(device).type != "cuda":
        yield
        return
    with _lock:
        if _depth == 0:
            for obj, name, value in _switches():
                _saved.append((obj, name, getattr(obj, name)))
                setattr(obj, name, value)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for obj, name, value in _saved:
                    setattr(obj, name, value)
                _saved.clear()
