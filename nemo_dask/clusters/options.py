"""Cluster options: one dataclass, defaults in ``nemo_dask.yaml`` (dask config ``nemo_dask.cluster``).

Every field left ``None`` is filled by :func:`resolve` from dask's configuration, so users set
defaults once in ``~/.config/dask/*.yaml`` or ``DASK_NEMO_DASK__CLUSTER__...`` variables, and
batch-system settings in dask-jobqueue's standard ``jobqueue.<system>.*`` keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import dask.config

from .. import config
from ..errors import InputError
from .systems import SYSTEMS, import_dask_jobqueue

LOCAL_KINDS = ("local", "cuda", "in-process")
JOBQUEUE_KINDS = tuple(SYSTEMS)
KINDS = LOCAL_KINDS + JOBQUEUE_KINDS

class GpuUnavailableError(InputError):
    """``--cluster cuda`` was asked for but no GPU (or no dask-cuda) is usable here."""


@dataclass
class ClusterOptions:
    """Where call-hits runs. ``None`` means: take the value from dask config (``nemo_dask.yaml``).

    Attributes
    ----------
    cluster
        ``local`` (CPU worker processes), ``cuda`` (one worker per visible GPU), or a batch
        system through dask-jobqueue: ``slurm``, ``pbs``, ``lsf``, ``sge``.
    scheduler
        Address (``tcp://`` or ``tls://``) or scheduler-file of an existing cluster; when set,
        no cluster is started and ``cluster`` is ignored.
    n_workers, threads_per_worker, memory_limit
        local/cuda workers.
    dashboard_address
        Where the dashboard of a cluster we start listens (loopback by default).
    tls, tls_ca_file, tls_cert, tls_key
        TLS on/off (default on for batch systems) and the user's certificate files; without
        files, temporary credentials are made.
    jobs, min_jobs, max_jobs
        A fixed number of batch jobs, or adaptive scaling between min and max.
    queue, account, walltime, memory, cores, job_cpu, gpus_per_job, job_prologue, python
        Per-job resources; ``cores`` is worker threads, ``job_cpu`` the CPUs requested.
    cuda_worker
        Run batch workers as ``dask cuda worker``.
    interface, shared_temp_directory
        Network interface (e.g. ``ib0``); directory visible to the jobs for temporary TLS files.
    dry_run
        Print the batch job script instead of running.
    """

    cluster: str | None = None
    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    dashboard_address: str | None = None
    tls: bool | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    jobs: int | None = None
    min_jobs: int | None = None
    max_jobs: int | None = None
    queue: str | None = None
    account: str | None = None
    walltime: str | None = None
    memory: str | None = None
    cores: int | None = None
    job_cpu: int | None = None
    gpus_per_job: int | None = None
    job_prologue: list[str] = field(default_factory=list)
    python: str | None = None
    cuda_worker: bool | None = None
    interface: str | None = None
    shared_temp_directory: str | None = None
    dry_run: bool = False


def cfg(key: str, default: Any = None) -> Any:
    """``nemo_dask.cluster.<key>`` from dask config."""
    return config.get(f"cluster.{key}", default)


def jq_cfg(system: str, key: str) -> Any:
    """``jobqueue.<system>.<key>`` from dask config (dask-jobqueue's own settings)."""
    try:  # importing dask_jobqueue registers its defaults (jobqueue.yaml) in dask config
        import_dask_jobqueue()
    except ImportError:
        pass
    return dask.config.get(f"jobqueue.{system}.{key}", default=None)


def resolve(options: ClusterOptions) -> ClusterOptions:
    """A copy of ``options`` with every ``None`` filled from dask config, checked."""
    o = dataclasses.replace(options, job_prologue=list(options.job_prologue or []))
    o.cluster = (o.cluster or cfg("kind") or "local").lower()
    if o.scheduler is None:
        o.scheduler = cfg("scheduler")
    if o.cluster not in KINDS:
        raise InputError(f"--cluster: expected one of {', '.join(KINDS)}; got {o.cluster!r}")
    for name in ("dashboard_address", "tls_ca_file", "tls_cert", "tls_key"):
        if getattr(o, name) is None:
            setattr(o, name, cfg(name.replace("_", "-")))
    if o.tls is None:
        o.tls = cfg("tls")
    if o.tls is None:
        o.tls = o.cluster in JOBQUEUE_KINDS
    if o.cluster == "in-process":
        # Worker threads in this process (clusters.local.start_in_process): no config section.
        o.n_workers = o.n_workers or 1
        o.threads_per_worker = o.threads_per_worker or 1
    elif o.cluster in LOCAL_KINDS:
        section = o.cluster
        if o.n_workers is None:
            o.n_workers = cfg(f"{section}.n-workers")
        if o.threads_per_worker is None:
            o.threads_per_worker = cfg(f"{section}.threads-per-worker") or 1
        if o.memory_limit is None and section == "local":
            o.memory_limit = cfg("local.memory-limit", "auto")
    else:
        _resolve_jobqueue(o)
    _check(o)
    return o


def _resolve_jobqueue(o: ClusterOptions) -> None:
    sys_ = o.cluster
    jq = "jobqueue."

    def pick(attr: str, key: str, jq_key: str | None = None, default_key: str | None = None) -> None:
        if getattr(o, attr) is not None:
            return
        value = cfg(jq + key)
        if value is None and jq_key:
            value = jq_cfg(sys_, jq_key)
        if value is None and default_key:
            value = cfg(jq + default_key)
        setattr(o, attr, value)

    pick("jobs", "jobs")
    pick("min_jobs", "min-jobs")
    pick("max_jobs", "max-jobs")
    pick("gpus_per_job", "gpus-per-job")
    pick("cores", "cores")
    # Not jobqueue.<system>.cores: for GPU jobs that is the worker-thread count (1).
    record = SYSTEMS[sys_]
    pick("job_cpu", "job-cpu", record.job_cpu_key, "default-job-cpu")
    pick("memory", "memory", "memory", "default-memory")
    pick("queue", "queue", "queue")
    pick("account", "account", record.account_key)
    pick("walltime", "walltime", "walltime")
    pick("python", "python", "python")
    pick("cuda_worker", "cuda-worker")
    pick("interface", "interface", "interface")
    pick("shared_temp_directory", "shared-temp-directory", "shared-temp-directory",
         "default-shared-temp-directory")
    o.job_prologue = list(cfg(jq + "job-prologue") or []) + o.job_prologue
    o.cores = int(o.cores or 1)
    o.gpus_per_job = int(o.gpus_per_job if o.gpus_per_job is not None else 1)
    o.cuda_worker = bool(o.cuda_worker)
    if o.walltime is not None:
        o.walltime = str(o.walltime)


def _check(o: ClusterOptions) -> None:
    positive = ("n_workers", "threads_per_worker", "jobs", "max_jobs", "cores", "job_cpu")
    for name in positive:
        value = getattr(o, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            flag = "--" + name.replace("_", "-").replace("n-workers", "workers")
            raise InputError(f"{flag}: expected a positive integer; got {value!r}")
    if o.min_jobs is not None and o.min_jobs < 0:
        raise InputError(f"--min-jobs: expected 0 or more; got {o.min_jobs}")
    if o.gpus_per_job is not None and o.gpus_per_job < 0:
        raise InputError(f"--gpus-per-job: expected 0 or more; got {o.gpus_per_job}")
    if o.min_jobs is not None and o.max_jobs is not None and o.min_jobs > o.max_jobs:
        raise InputError(f"--min-jobs {o.min_jobs} is larger than --max-jobs {o.max_jobs}; "
                         "lower --min-jobs or raise --max-jobs")
    if o.cluster in JOBQUEUE_KINDS and (o.gpus_per_job or 0) > 1 and not o.cuda_worker:
        raise InputError(f"--gpus-per-job {o.gpus_per_job} needs --cuda-worker: a plain dask "
                         "worker would run every task on the job's first GPU; add --cuda-worker "
                         "(one worker per GPU) or use --gpus-per-job 1 with more --jobs")
    files = [o.tls_cert, o.tls_key]
    if any(files) and not all(files):
        raise InputError("--tls-cert and --tls-key go together: give both (PEM files), or "
                         "neither for temporary credentials")
    if (o.tls_cert or o.tls_key) and not o.tls_ca_file:
        raise InputError("--tls-cert/--tls-key need --tls-ca-file: the CA that signed the "
                         "certificates of the scheduler and workers")
    for name in ("tls_ca_file", "tls_cert", "tls_key"):
        path = getattr(o, name)
        if path and not os.path.isfile(os.path.expanduser(path)):
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag}: file not found: {path}")
