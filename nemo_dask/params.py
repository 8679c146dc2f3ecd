"""Every tunable of hit calling, with finemo 0.41's defaults, in one place.

The CLI's defaults and the Python API's keyword defaults are read from these dataclasses, so
they cannot disagree; the resolved values are written to ``OUT/parameters.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import InputError

#: Modes: first letter picks the motif matrix (p: CWM, h: hypothetical CWM), second the
#: contributions (p: projected onto the sequence, h: hypothetical).
MODES: dict[str, tuple[str, bool]] = {
    "pp": ("cwm", False),
    "ph": ("cwm", True),
    "hp": ("hcwm", False),
    "hh": ("hcwm", True),
}

#: Default solver batch (regions optimised together) per device type; on CPU per torch thread.
#: On CPU small batches win (finemo's 2000 is ~9x slower than 16-64 there; at one thread 16 was
#: 12% faster than 64, its working set staying in cache); on a GPU large ones fill the device.
DEFAULT_BATCH_SIZE: dict[str, int] = {"cpu": 16, "cuda": 2000}


@dataclass(frozen=True)
class SolverParams:
    """Optimiser settings of finemo's ``fit_contribs``, same names and defaults.

    ``batch_size`` None means the per-device default of :data:`DEFAULT_BATCH_SIZE` (on CPU,
    times the torch threads).
    """

    step_size_max: float = 3.0
    step_size_min: float = 0.08
    sqrt_transform: bool = False
    convergence_tol: float = 0.0005
    max_steps: int = 10000
    batch_size: int | None = None
    step_adjust: float = 0.7
    post_filter: bool = True
    eps: float = 1.0
    compile_optimizer: bool = False

    def __post_init__(self) -> None:
        for name in ("step_size_max", "step_size_min", "convergence_tol", "eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a finite number > 0, got {value!r}")
        if self.step_size_min > self.step_size_max:
            raise InputError(
                f"step_size_min ({self.step_size_min}) must not exceed step_size_max "
                f"({self.step_size_max})"
            )
        if not (0 < self.step_adjust < 1):
            raise InputError(f"step_adjust must lie in (0, 1), got {self.step_adjust!r}")
        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise InputError(f"max_steps must be an integer >= 1, got {self.max_steps!r}")
        if self.batch_size is not None and not (
            isinstance(self.batch_size, int) and self.batch_size >= 1
        ):
            raise InputError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")

    def batch_size_for(self, device_type: str, threads: int = 1) -> int:
        """The batch size to use on a device of type ``device_type`` ("cpu", "cuda", ...)
        with ``threads`` torch threads."""
        if self.batch_size is not None:
            return self.batch_size
        if device_type == "cpu":
            return DEFAULT_BATCH_SIZE["cpu"] * max(1, threads)
        return DEFAULT_BATCH_SIZE.get(device_type, DEFAULT_BATCH_SIZE["cuda"])


@dataclass(frozen=True)
class MotifParams:
    """How motifs are read from a tfmodisco-lite H5 (finemo's call-hits motif options)."""

    mode: str = "pp"
    trim_threshold: float = 0.3
    lambda_default: float = 0.7
    motifs_include: tuple[str, ...] | None = None
    motif_names: dict[str, str] | None = field(default=None)
    motif_lambdas: dict[str, float] | None = field(default=None)
    trim_thresholds: dict[str, float] | None = field(default=None)
    trim_coords: dict[str, tuple[int, int]] | None = field(default=None)
    include_rc: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        _check_unit("trim_threshold", self.trim_threshold)
        _check_lambda("lambda_default", self.lambda_default)
        for name, value in (self.motif_lambdas or {}).items():
            _check_lambda(f"lambda of motif {name!r}", value)
        for name, value in (self.trim_thresholds or {}).items():
            _check_unit(f"trim threshold of motif {name!r}", value)

    @property
    def motif_type(self) -> str:
        """``"cwm"`` or ``"hcwm"``: which matrix of each pattern is fitted."""
        return MODES[self.mode][0]

    @property
    def use_hypothetical(self) -> bool:
        """Whether contributions are used as hypothetical (not masked by the sequence)."""
        return MODES[self.mode][1]


def _check_unit(what: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise InputError(f"{what} must lie in [0, 1], got {value!r}")


def _check_lambda(what: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{what} must be a finite number > 0, got {value!r}")


def as_dict(params: SolverParams | MotifParams) -> dict[str, Any]:
    """Plain-JSON dict of a parameters object (tuples become lists)."""
    out = asdict(params)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def field_names(cls: type) -> tuple[str, ...]:
    """Names of the fields of a parameters dataclass."""
    return tuple(f.name for f in fields(cls))
