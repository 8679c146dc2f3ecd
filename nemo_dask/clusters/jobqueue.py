"""Batch-system clusters through dask-jobqueue: one worker with one GPU per job.

Each job runs one single-threaded worker (``cores=1``) that owns the job's GPU; the CPUs the
job asks for (``job_cpu``) feed data loading and torch's host-side work. The scheduler runs in
the driver process (usually on the login node), with TLS unless the user opts out.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from dask.utils import parse_bytes, parse_timedelta

from .local import dashboard_address
from .options import ClusterOptions, cfg, jq_cfg
from .security import NO_TLS_RISK, Security, for_new_cluster, from_files, shared_temp_directory
from .systems import JobRequest, system, walltime_seconds


def cluster_class(name: str) -> Any:
    """The dask-jobqueue cluster class of batch system ``name``."""
    return system(name).cluster_cls()


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
    o, system_ = options, options.cluster or ""
    gpus = o.gpus_per_job or 0
    processes = gpus if (o.cuda_worker and gpus > 1) else 1
    directives = list(jq_cfg(system_, "job-extra-directives") or [])
    # `python -m` puts the job's directory (where it was submitted) first on sys.path: a
    # directory named nemo_dask there (a clone, seen from its parent) would be imported instead
    # of the installed package. PYTHONSAFEPATH (Python >= 3.11) keeps it off.
    prologue = (["export PYTHONSAFEPATH=1"] + list(jq_cfg(system_, "job-script-prologue") or [])
                + list(o.job_prologue))
    worker_args = list(jq_cfg(system_, "worker-extra-args") or [])
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
    if jq_cfg(system_, "name") in (None, "dask-worker"):  # recognisable in squeue/qstat/bjobs
        kw["job_name"] = "nemo-dask"
    if o.cuda_worker:
        kw["worker_command"] = "dask_cuda.cli"
    request = JobRequest(
        gpus=gpus, job_cpu=int(o.job_cpu or 1), memory=parse_bytes(str(o.memory)),
        account=o.account, resource_spec=jq_cfg(system_, "resource-spec"),
        parallel_environment=cfg("jobqueue.sge-parallel-environment", "smp"))
    extra, more = system(system_).request(request)
    kw.update(extra)
    directives += more
    kw["job_extra_directives"] = directives
    return kw


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
