"""Batch-system clusters through dask-jobqueue: one worker with one GPU per job.

Each job runs one single-threaded worker (``cores=1``) that owns the job's GPU; the CPUs the
job asks for (``job_cpu``) feed data loading and torch's host-side work. The scheduler runs in
the driver process (usually on the login node), with TLS unless the user opts out.
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from typing import Any

from dask.utils import parse_bytes, parse_timedelta

from ..errors import InputError
from .local import dashboard_address
from .options import ClusterOptions, cfg, import_dask_jobqueue, jq_cfg
from .security import NO_TLS_RISK, Security, for_new_cluster, from_files, shared_temp_directory

_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster",
            "sge": "SGECluster"}


def _dask_jobqueue() -> Any:
    try:
        dask_jobqueue = import_dask_jobqueue()
    except ImportError as err:
        raise InputError("--cluster slurm|pbs|lsf|sge needs dask-jobqueue: "
                         "`pip install dask-jobqueue cryptography` (or nemo_dask[hpc])") from err
    return dask_jobqueue


def cluster_class(system: str) -> Any:
    """The dask-jobqueue cluster class of ``system``."""
    return getattr(_dask_jobqueue(), _CLASSES[system])


def walltime_seconds(walltime: str, system: str) -> float:
    """Seconds in a walltime written the way ``system`` reads it.

    SLURM: ``M``, ``M:S``, ``H:M:S``, ``D-H[:M[:S]]``; LSF: ``M`` or ``H:M``;
    PBS and SGE: ``S``, ``M:S``, ``H:M:S``.
    """
    text = str(walltime).strip()
    days = 0
    if system == "slurm" and "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")] + [0] * (3 - len(text.split(":")))
        return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    if not re.fullmatch(r"\d+(:\d+){0,2}", text):
        raise InputError(f"--walltime {walltime!r}: expected H:M:S (or your batch system's "
                         "format, e.g. SLURM D-HH:MM:SS, LSF HH:MM)")
    parts = [int(p) for p in text.split(":")]
    if system == "lsf":
        weights = [60] if len(parts) == 1 else [3600, 60, 1][: len(parts)]
    elif system == "slurm":
        weights = {1: [60], 2: [60, 1], 3: [3600, 60, 1]}[len(parts)]
    else:
        weights = [3600, 60, 1][3 - len(parts):]
    return float(sum(p * w for p, w in zip(parts, weights, strict=True)))


def lifetime(options: ClusterOptions) -> tuple[str, str] | None:
    """Worker ``--lifetime`` and ``--lifetime-stagger`` so workers retire before the walltime."""
    if not options.walltime:
        return None
    wall = walltime_seconds(options.walltime, options.cluster or "")
    margin = parse_timedelta(cfg("jobqueue.lifetime-margin", "5 minutes"))
    stagger = parse_timedelta(cfg("jobqueue.lifetime-stagger", "2 minutes"))
    life = max(wall - margin, wall * 0.5)
    # The stagger randomises +-stagger: keep the latest retirement inside the walltime.
    stagger = min(stagger, (wall - life) / 2)
    return f"{int(life)}s", f"{int(stagger)}s"


def job_kwargs(options: ClusterOptions) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue Job (and Cluster) for ``options``.

    List-valued settings extend (never replace) the user's ``jobqueue.<system>`` config.
    """
    o, system = options, options.cluster or ""
    gpus = o.gpus_per_job or 0
    processes = gpus if (o.cuda_worker and gpus > 1) else 1
    directives = list(jq_cfg(system, "job-extra-directives") or [])
    # `python -m` puts the job's directory (where it was submitted) first on sys.path: a
    # directory named nemo_dask there (a clone, seen from its parent) would be imported instead
    # of the installed package. PYTHONSAFEPATH (Python >= 3.11) keeps it off.
    prologue = (["export PYTHONSAFEPATH=1"] + list(jq_cfg(system, "job-script-prologue") or [])
                + list(o.job_prologue))
    worker_args = list(jq_cfg(system, "worker-extra-args") or [])
    if o.jobs is None:  # adaptive: retire before the walltime so a new job takes over
        life = lifetime(o)
        if life and o.cuda_worker:  # `dask cuda worker` has no --lifetime flag
            prologue += [f"export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION={life[0]}",
                         f"export DASK_DISTRIBUTED__WORKER__LIFETIME__STAGGER={life[1]}"]
        elif life:
            worker_args += ["--lifetime", life[0], "--lifetime-stagger", life[1]]
    kw: dict[str, Any] = dict(
        cores=o.cores * processes, processes=processes, memory=o.memory,
        python=o.python or sys.executable, job_script_prologue=prologue,
        worker_extra_args=worker_args, queue=o.queue, walltime=o.walltime,
    )
    if jq_cfg(system, "name") in (None, "dask-worker"):  # recognisable in squeue/qstat/bjobs
        kw["job_name"] = "nemo-dask"
    if o.cuda_worker:
        kw["worker_command"] = "dask_cuda.cli"
    job_cpu = int(o.job_cpu or 1)
    mem = parse_bytes(str(o.memory))
    if system == "slurm":
        kw.update(account=o.account, job_cpu=job_cpu)
        if gpus:
            directives.append(f"--gres=gpu:{gpus}")
    elif system == "pbs":
        kw["account"] = o.account
        spec = jq_cfg(system, "resource-spec")
        if spec is None:
            spec = f"select=1:ncpus={job_cpu}" + (f":ngpus={gpus}" if gpus else "")
            spec += f":mem={_pbs_bytes(mem)}"
        kw["resource_spec"] = spec
    elif system == "lsf":
        kw.update(project=o.account, ncpus=job_cpu)
        if gpus:
            directives.append(f'-gpu "num={gpus}"')
    elif system == "sge":
        kw["project"] = o.account
        spec = jq_cfg(system, "resource-spec")
        if spec is None:
            # h_vmem is per slot in Grid Engine: the job's memory divided by its slots.
            parts = [f"gpu={gpus}"] if gpus else []
            spec = ",".join(parts + [f"h_vmem={math.ceil(mem / job_cpu / 2**20)}M"])
        kw["resource_spec"] = spec
        if job_cpu > 1:
            directives.append(f"-pe {cfg('jobqueue.sge-parallel-environment', 'smp')} {job_cpu}")
    kw["job_extra_directives"] = directives
    return kw


def _pbs_bytes(n: int) -> str:
    # PBS reads KB/MB/GB as powers of 1024; round up so the job never gets less than asked.
    if n >= 10 * 2**30:
        return f"{math.ceil(n / 2**30)}gb"
    return f"{math.ceil(n / 2**20)}mb"


def dry_run_script(options: ClusterOptions) -> str:
    """The job script ``options`` would submit, made without starting a scheduler.

    The scheduler address and temporary TLS file names are only known at run time; they show as
    ``<...>`` placeholders.
    """
    cls = cluster_class(options.cluster or "")
    security = _dry_run_security(options)
    proto = "tls" if security is not None else "tcp"
    job = cls.job_cls(f"{proto}://<scheduler-address>:<port>", name="dummy-name",
                      interface=options.interface,
                      protocol=f"{proto}://" if security is not None else None,
                      security=security, **job_kwargs(options))
    return job.job_script()


def _dry_run_security(options: ClusterOptions) -> Security | None:
    if not options.tls:
        return None
    user = from_files(options)
    if user is not None:
        return user
    where = shared_temp_directory(options, create=False)
    names = {k: f"{where}/.dask-jobqueue.worker.{k}.<random>" for k in ("ca_file", "cert", "key")}
    return Security(require_encryption=True, tls_ca_file=names["ca_file"],
                    tls_worker_cert=names["cert"], tls_worker_key=names["key"])


def start(options: ClusterOptions) -> Any:
    """Start the scheduler of a batch cluster here and submit (or adapt) its worker jobs."""
    cluster = make(options)
    try:
        if options.jobs is not None:
            cluster.scale(jobs=options.jobs)
        else:
            cluster.adapt(minimum_jobs=options.min_jobs or 0,
                          maximum_jobs=options.max_jobs or max(1, options.min_jobs or 1))
    except BaseException:
        cluster.close()
        raise
    return cluster


def recording_job_class(base: type) -> type:
    """A subclass of the dask-jobqueue Job ``base`` that records, on a fresh class per cluster,
    the id of every job it submits (``nemo_submitted``) and the batch system's words when a
    submission is refused (``nemo_errors``), instead of raising them inside dask's event loop
    (where they only show as a traceback in the log and the run waits forever).
    :class:`nemo_dask.clusters.waiting.WorkerWait` reads both."""
    from distributed.core import Status

    from .batch_status import submission_error

    async def start(self: Any) -> None:
        try:
            await base.start(self)
        except Exception as err:  # sbatch/qsub/bsub refused the job
            type(self).nemo_errors.append(submission_error(err))
            self.job_id = None
            self.status = Status.running  # nothing to wait for; close() is then a no-op
            return
        type(self).nemo_submitted.append(str(self.job_id))

    return type(base.__name__, (base,), {"start": start, "nemo_errors": [],
                                         "nemo_submitted": [], "__module__": __name__})


def make(options: ClusterOptions) -> Any:
    """The dask-jobqueue cluster of ``options``, its scheduler started, no job submitted yet."""
    cls = cluster_class(options.cluster or "")
    if not options.tls:
        warnings.warn(f"--no-tls: {NO_TLS_RISK}", stacklevel=2)
    security = for_new_cluster(options)
    sched_opts = dict(jq_cfg(options.cluster or "", "scheduler-options") or {})
    # dask-jobqueue's default dashboard listens on every interface: keep it on loopback.
    sched_opts.setdefault("dashboard_address", dashboard_address(options))
    kwargs: dict[str, Any] = dict(job_kwargs(options), scheduler_options=sched_opts,
                                  security=security, job_cls=recording_job_class(cls.job_cls))
    if options.interface:
        kwargs["interface"] = options.interface
    if security is not None and from_files(options) is None:
        kwargs["shared_temp_directory"] = shared_temp_directory(options)
    return cls(**kwargs)
