"""One record per batch system: everything nemo_dask must know about SLURM, PBS, LSF and SGE.

dask-jobqueue keeps a system's submission on one Job class (its ``submit_command``,
``cancel_command`` and job-script header); this module adds, in one :class:`BatchSystem` record
per system, what call-hits needs beyond it: how to ask the system about jobs and read its answer,
how it writes a walltime, which of dask-jobqueue's config keys hold CPUs per job and the
account, and how a job asks for GPUs, CPUs and memory. A new scheduler is one record in
:data:`SYSTEMS` (and its dask-jobqueue class); ``--cluster``'s choices, the status poll, the
cancellation of leftover jobs and the job script all follow from it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from . import batch_status
from .batch_status import JobState


def import_dask_jobqueue() -> Any:
    """``import dask_jobqueue``, keeping Ctrl-C a KeyboardInterrupt.

    dask-jobqueue's ``runner`` module, imported with the package, replaces the SIGINT handler
    by ``sys.exit()``: Ctrl-C would then end call-hits with status 0 and no message. The
    handler that was there before the import is put back (main thread only, where Python
    allows it).

    Raises
    ------
    ImportError
        dask-jobqueue is not installed.
    """
    import signal
    import sys
    import threading

    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    previous = signal.getsignal(signal.SIGINT)
    import dask_jobqueue

    if (threading.current_thread() is threading.main_thread() and previous is not None
            and signal.getsignal(signal.SIGINT) is not previous):
        signal.signal(signal.SIGINT, previous)
    return dask_jobqueue


@dataclass(frozen=True)
class JobRequest:
    """What one worker job asks its batch system for.

    Attributes
    ----------
    gpus
        GPUs per job (0: a CPU job).
    job_cpu
        CPUs per job.
    memory
        Bytes of memory per job.
    account
        The account (SLURM, PBS) or project (LSF, SGE) charged, or None.
    resource_spec
        The user's ``jobqueue.<system>.resource-spec`` (PBS, SGE), used as given when set.
    parallel_environment
        SGE's parallel environment for jobs of several CPUs (site-specific name).
    """

    gpus: int
    job_cpu: int
    memory: int
    account: str | None = None
    resource_spec: str | None = None
    parallel_environment: str = "smp"


@dataclass(frozen=True)
class BatchSystem:
    """What call-hits needs to know about one batch system.

    Attributes
    ----------
    name
        ``--cluster`` value and dask-jobqueue config section (``jobqueue.<name>``).
    cluster_class
        The dask-jobqueue cluster class's name.
    status_command
        The command that reports the given job ids' states.
    parse_status
        Reads that command's output into :class:`~nemo_dask.clusters.batch_status.JobState`
        by job id.
    walltime_seconds
        Seconds in a walltime as this system writes it; raises ``ValueError`` when the text
        is not in its grammar.
    walltime_forms
        The grammar, for messages.
    job_cpu_key
        dask-jobqueue's key for CPUs per job, or None where it has none.
    account_key
        dask-jobqueue's key (and Job argument) for the account charged.
    request
        dask-jobqueue Job keyword arguments and extra directives for a :class:`JobRequest`.
    """

    name: str
    cluster_class: str
    status_command: Callable[[list[str]], list[str]]
    parse_status: Callable[[str], dict[str, JobState]]
    walltime_seconds: Callable[[str], float]
    walltime_forms: str
    job_cpu_key: str | None
    account_key: str
    request: Callable[[JobRequest], tuple[dict[str, Any], list[str]]]

    def cluster_cls(self) -> Any:
        """The dask-jobqueue cluster class.

        Raises
        ------
        InputError
            dask-jobqueue is not installed.
        """
        try:
            dask_jobqueue = import_dask_jobqueue()
        except ImportError as err:
            raise InputError(f"--cluster {'|'.join(SYSTEMS)} needs dask-jobqueue: "
                             "`pip install dask-jobqueue cryptography` (or nemo_dask[hpc])"
                             ) from err
        return getattr(dask_jobqueue, self.cluster_class)

    @property
    def cancel_command(self) -> str:
        """The command that cancels jobs, as dask-jobqueue's Job class has it."""
        return str(self.cluster_cls().job_cls.cancel_command)


# -- walltime grammars --------------------------------------------------------------------

def _clock(text: str, weights: dict[int, list[int]]) -> float:
    """``A[:B[:C]]`` with the given weights per number of fields."""
    if not re.fullmatch(r"\d+(:\d+){0,2}", text):
        raise ValueError(text)
    parts = [int(p) for p in text.split(":")]
    if len(parts) not in weights:
        raise ValueError(text)
    return float(sum(p * w for p, w in zip(parts, weights[len(parts)], strict=True)))


def _slurm_walltime(text: str) -> float:
    # sbatch --time: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S".
    if "-" in text:
        days, rest = text.split("-", 1)
        if not days.isdigit():
            raise ValueError(text)
        return int(days) * 86400 + _clock(rest, {1: [3600], 2: [3600, 60], 3: [3600, 60, 1]})
    return _clock(text, {1: [60], 2: [60, 1], 3: [3600, 60, 1]})


def _lsf_walltime(text: str) -> float:
    return _clock(text, {1: [60], 2: [3600, 60]})  # bsub -W: "M" or "H:M"


def _seconds_walltime(text: str) -> float:
    return _clock(text, {1: [1], 2: [60, 1], 3: [3600, 60, 1]})  # PBS walltime, SGE h_rt


# -- job requests -------------------------------------------------------------------------

def _slurm_request(r: JobRequest) -> tuple[dict[str, Any], list[str]]:
    return {"account": r.account, "job_cpu": r.job_cpu}, ([f"--gres=gpu:{r.gpus}"] if r.gpus
                                                           else [])


def _pbs_request(r: JobRequest) -> tuple[dict[str, Any], list[str]]:
    spec = r.resource_spec
    if spec is None:
        spec = (f"select=1:ncpus={r.job_cpu}" + (f":ngpus={r.gpus}" if r.gpus else "")
                + f":mem={_pbs_bytes(r.memory)}")
    return {"account": r.account, "resource_spec": spec}, []


def _pbs_bytes(n: int) -> str:
    # PBS reads KB/MB/GB as powers of 1024; round up so the job never gets less than asked.
    if n >= 10 * 2**30:
        return f"{math.ceil(n / 2**30)}gb"
    return f"{math.ceil(n / 2**20)}mb"


def _lsf_request(r: JobRequest) -> tuple[dict[str, Any], list[str]]:
    return {"project": r.account, "ncpus": r.job_cpu}, ([f'-gpu "num={r.gpus}"'] if r.gpus
                                                         else [])


def _sge_request(r: JobRequest) -> tuple[dict[str, Any], list[str]]:
    spec = r.resource_spec
    if spec is None:
        # h_vmem is per slot in Grid Engine: the job's memory divided by its slots.
        parts = [f"gpu={r.gpus}"] if r.gpus else []
        spec = ",".join(parts + [f"h_vmem={math.ceil(r.memory / r.job_cpu / 2**20)}M"])
    directives = [f"-pe {r.parallel_environment} {r.job_cpu}"] if r.job_cpu > 1 else []
    return {"project": r.account, "resource_spec": spec}, directives


SYSTEMS: dict[str, BatchSystem] = {s.name: s for s in (
    BatchSystem(
        name="slurm", cluster_class="SLURMCluster",
        status_command=lambda ids: ["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r"],
        parse_status=batch_status.parse_squeue,
        walltime_seconds=_slurm_walltime, walltime_forms="M, M:S, H:M:S or D-H[:M[:S]]",
        job_cpu_key="job-cpu", account_key="account", request=_slurm_request),
    BatchSystem(
        name="pbs", cluster_class="PBSCluster",
        status_command=lambda ids: ["qstat", "-f", *ids],
        parse_status=batch_status.parse_qstat_pbs,
        walltime_seconds=_seconds_walltime, walltime_forms="S, M:S or H:M:S",
        job_cpu_key=None, account_key="account", request=_pbs_request),
    BatchSystem(
        name="lsf", cluster_class="LSFCluster",
        status_command=lambda ids: ["bjobs", "-noheader", "-o",
                                    "jobid stat pend_reason delimiter='|'", *ids],
        parse_status=batch_status.parse_bjobs,
        walltime_seconds=_lsf_walltime, walltime_forms="M or H:M",
        job_cpu_key="ncpus", account_key="project", request=_lsf_request),
    BatchSystem(
        name="sge", cluster_class="SGECluster",
        # Plain qstat lists every job of the user; the ids are picked from its table.
        status_command=lambda ids: ["qstat"],
        parse_status=batch_status.parse_qstat_sge,
        walltime_seconds=_seconds_walltime, walltime_forms="S, M:S or H:M:S",
        job_cpu_key=None, account_key="project", request=_sge_request),
)}


def system(name: str) -> BatchSystem:
    """The record of ``--cluster name``.

    Raises
    ------
    InputError
        ``name`` is not a batch system nemo_dask knows.
    """
    try:
        return SYSTEMS[name]
    except KeyError:
        raise InputError(f"--cluster {name}: not a batch system; expected "
                         f"{'|'.join(SYSTEMS)}") from None


def system_of(cluster: Any) -> BatchSystem | None:
    """The record of a dask-jobqueue cluster object (by its class or a base), else None."""
    by_class = {s.cluster_class: s for s in SYSTEMS.values()}
    for klass in type(cluster).__mro__:
        if klass.__name__ in by_class:
            return by_class[klass.__name__]
    return None


def walltime_seconds(walltime: str, name: str) -> float:
    """Seconds in ``walltime`` written the way batch system ``name`` reads it.

    Raises
    ------
    InputError
        ``walltime`` is not in that system's grammar.
    """
    record = system(name)
    try:
        return record.walltime_seconds(str(walltime).strip())
    except ValueError:
        raise InputError(f"--walltime {walltime!r}: {name} reads {record.walltime_forms} "
                         "(e.g. 02:00:00)") from None
