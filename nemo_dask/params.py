"""The parameters of hit calling: finemo's options (with finemo 0.41's defaults) and run options.

:class:`SolverParams` (the optimiser, and the contribution kind the mode picks),
:class:`MotifParams` (how motifs are read, and the mode: stated here only) and
:class:`RunOptions` (how call-hits runs: blocks, device, retries; its defaults are in
``nemo_dask.yaml``, key ``nemo_dask.call-hits``). The CLI's defaults and the Python API's
keyword defaults are read from these classes, so they cannot disagree; the resolved values are
written to ``OUT/parameters.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
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
#: On CPU small batches win (finemo's 2000 is ~9x slower than 16-64 there). With the sparse
#: step a lone process at one thread runs 4-7% faster at 32 than at 16, but call-hits runs one
#: worker per core, and two solver processes side by side (sharing caches and memory bandwidth)
#: ran 6-10% faster at 16 than at 24 or 32 (M = 20, 750 regions each); on a GPU large batches
#: fill the device. The CUDA figure is the fallback only: the solver sizes a GPU batch from the
#: device's free memory when none is given (:func:`nemo_dask.solver.stream.cuda_batch_size`).
DEFAULT_BATCH_SIZE: dict[str, int] = {"cpu": 16, "cuda": 2000}

#: The GPU's default batch (:func:`nemo_dask.solver.stream.cuda_batch_size`): the share of its
#: free memory the solver's slots may fill, and the most slots taken (a larger batch no longer
#: speeds up a step once the device is busy).
CUDA_MEMORY_SHARE = 0.5
CUDA_MAX_BATCH = 16384

#: The default block (regions per task, :func:`nemo_dask.calling.plan.default_block_size`). On
#: CPU workers about CPU_BLOCKS blocks of CPU_BLOCK_SIZE_RANGE regions, so that every worker gets
#: several and the last ones finish together; on GPU workers GPU_BATCHES_PER_BLOCK solver
#: batches (the next block's regions fill the slots a block's slow tail leaves free, and a few
#: batches per task keep reads off the GPU's path), or GPU_BLOCK_SIZE_UNKNOWN regions when no
#: worker could say what its memory holds (jobs still queued).
CPU_BLOCKS = 16
CPU_BLOCK_SIZE_RANGE = (16, 1024)
GPU_BATCHES_PER_BLOCK = 4
GPU_BLOCK_SIZE_UNKNOWN = 8192

#: Default number of steps between convergence checks per device type. Each check reads the
#: duality gaps back to the host; on a GPU that synchronisation stalls the queue of kernels, on
#: a CPU it costs nothing. Results do not depend on it (finished regions are frozen).
DEFAULT_CHECK_EVERY: dict[str, int] = {"cpu": 1, "cuda": 10}


@dataclass(frozen=True)
class SolverParams:
    """Optimiser settings of finemo's ``fit_contribs``, same names and defaults.

    ``batch_size`` None means the per-device default of :data:`DEFAULT_BATCH_SIZE` (on CPU,
    times the torch threads; on a GPU, sized from its free memory).

    Two fields are nemo_dask's own (the solver's speed, issue 16): ``exact`` keeps finemo's
    dense transposed convolution on CPU, so iterates match finemo's bit for bit on the same
    machine; the default computes it from the few non-zeros of the extrapolated point, which
    reorders the terms of its sums (last bits; the rounding-robust parity holds). On a GPU the
    dense step is always used. ``check_every`` is how many steps pass between convergence
    checks (None: :data:`DEFAULT_CHECK_EVERY`); it changes no result. ``use_hypothetical`` is
    ``fit_contribs``' own: whether contributions are fitted as hypothetical (modes ph, hh) or
    projected onto the sequence. The mode itself is :attr:`MotifParams.mode`, the one place it
    is stated; a run takes ``use_hypothetical`` from it (:func:`nemo_dask.calling.api.call_hits`).
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
    use_hypothetical: bool = False
    #: A fixed divisor of every region's contributions instead of finemo's per-region RMS
    #: (None: finemo's ``global_scale``); see "Calling over intervals and whole genomes".
    global_scale: float | None = None
    # nemo_dask's own (issue 16, speed): see the class docstring.
    exact: bool = False
    check_every: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.use_hypothetical, bool):
            raise InputError(f"use_hypothetical must be True or False, got "
                             f"{self.use_hypothetical!r} (the mode is MotifParams.mode)")
        if self.global_scale is not None and not (
            isinstance(self.global_scale, (int, float)) and not isinstance(self.global_scale, bool)
            and math.isfinite(self.global_scale) and self.global_scale > 0
        ):
            raise InputError(f"global_scale must be a finite number > 0 (or None for finemo's "
                             f"per-region scale), got {self.global_scale!r}")
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
        if self.check_every is not None and not (
            isinstance(self.check_every, int) and self.check_every >= 1
        ):
            raise InputError(f"check_every must be an integer >= 1, got {self.check_every!r}")

    def check_every_for(self, device_type: str) -> int:
        """Steps between convergence checks on a device of type ``device_type``."""
        if self.check_every is not None:
            return self.check_every
        return DEFAULT_CHECK_EVERY.get(device_type, DEFAULT_CHECK_EVERY["cuda"])

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
        _check_mode(self.mode)
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


@dataclass(frozen=True)
class RunOptions:
    """How call-hits runs; none of these changes a hit. ``None``: the default in
    ``nemo_dask.yaml`` (dask config ``nemo_dask.call-hits``), filled in by :meth:`resolved`.

    Attributes
    ----------
    block_size : int or None
        Regions per task (one block, one partition of each table). None: computed from the
        number of regions, the store's chunks and whether the cluster has GPUs.
    device : str or None
        ``auto`` (each worker's GPU if it has one, else its CPU), ``cpu``, ``cuda``,
        ``cuda:N``; resolved to a torch device on each worker.
    retries : int or None
        Retries of a failed task.
    overwrite : bool
        Replace the results of a different run in the output directory.
    progress : bool or None
        A progress bar; None: when stderr is a terminal.
    worker_wait : float, str or None
        Longest time without any connected worker before the run stops
        (:class:`~nemo_dask.errors.WorkersUnavailableError`): seconds, or a dask time string
        such as ``"2 hours"`` (resolved to seconds). None: wait as long as the batch system
        keeps the jobs queued (jobs it refuses or can never run stop the run at once).
    """

    block_size: int | None = None
    device: str | None = None
    retries: int | None = None
    overwrite: bool = False
    progress: bool | None = None
    worker_wait: float | str | None = None

    def __post_init__(self) -> None:
        if self.block_size is not None and not (
            isinstance(self.block_size, int) and self.block_size >= 1
        ):
            raise InputError(f"block_size must be an integer >= 1, got {self.block_size!r}")
        if self.retries is not None and not (isinstance(self.retries, int) and self.retries >= 0):
            raise InputError(f"retries must be an integer >= 0, got {self.retries!r}")
        if self.device is not None and not (isinstance(self.device, str) and self.device):
            raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        # Frozen: the one normalisation (a time string to seconds) goes through object.__setattr__.
        object.__setattr__(self, "worker_wait", _seconds(self.worker_wait))

    def resolved(self) -> RunOptions:
        """A copy with every ``None`` the configuration sets filled in from it (``block_size``
        stays None when the configuration leaves it to be computed)."""
        from . import config

        values = {name: getattr(self, name) for name in ("block_size", "device", "retries",
                                                          "progress", "worker_wait")}
        for name, value in values.items():
            if value is None:
                values[name] = config.get(f"call-hits.{name.replace('_', '-')}")
        return replace(self, **values)


def _check_mode(mode: Any) -> None:
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")


def _check_unit(what: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise InputError(f"{what} must lie in [0, 1], got {value!r}")


def _check_lambda(what: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{what} must be a finite number > 0, got {value!r}")


def as_dict(params: SolverParams | MotifParams | RunOptions) -> dict[str, Any]:
    """Plain-JSON dict of a parameters object (tuples become lists)."""
    out = asdict(params)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def _seconds(value: float | str | None) -> float | None:
    """``worker_wait`` as seconds: a number, a dask time string ("10 minutes"), or None."""
    if value is None:
        return None
    from dask.utils import parse_timedelta

    try:
        seconds = float(parse_timedelta(value, default="seconds"))
    except (ValueError, TypeError, KeyError):
        raise InputError(f"worker_wait (--worker-wait) {value!r}: expected seconds or a time "
                         "such as '30 minutes'") from None
    if seconds <= 0:
        raise InputError(f"worker_wait (--worker-wait) must be positive, got {value!r}")
    return seconds
