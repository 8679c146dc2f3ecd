"""Get a Dask client for call-hits: a local CPU or GPU cluster, a batch system, or yours.

- ``--cluster local`` (default): worker processes on this machine, loopback only.
- ``--cluster cuda``: one dask-cuda worker per visible GPU, loopback only.
- ``--cluster slurm|pbs|lsf|sge``: dask-jobqueue, one worker with one GPU per batch job, TLS on.
- ``--scheduler ADDRESS``: join an existing cluster (``tcp://``, ``tls://`` or a scheduler file).

Defaults live in ``nemo_dask/nemo_dask.yaml`` (dask config ``nemo_dask.cluster``); batch
settings also come from dask-jobqueue's ``jobqueue.<system>`` config, as in any deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from dask.utils import parse_timedelta

from ..errors import InputError
from . import jobqueue as _jobqueue
from . import local as _local
from .options import (
    JOBQUEUE_KINDS,
    KINDS,
    LOCAL_KINDS,
    ClusterOptions,
    GpuUnavailableError,
    cfg,
    resolve,
)
from .quiet import closing_quietly, quiet_memory_warnings
from .security import NO_TLS_RISK, for_client

__all__ = ["ClusterOptions", "GpuUnavailableError", "add_cluster_arguments",
           "cluster_options_from_args", "connect", "job_script"]


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the cluster flags (defined once, shared by every verb that runs on a cluster)."""
    g = parser.add_argument_group(
        "cluster", "where the work runs (defaults: dask config `nemo_dask.cluster`, and "
        "`jobqueue.<system>` for batch systems; see deploy/README.md)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="use an existing Dask scheduler (tcp://HOST:PORT, tls://HOST:PORT or a "
                   "scheduler file) instead of starting a cluster")
    g.add_argument("--cluster", choices=list(KINDS),
                   help="cluster to start: local CPU workers, cuda (one worker per visible GPU), "
                   "in-process (worker threads in this process: for a debugger or profiler) "
                   "or a batch system (one GPU job per worker); default local")
    g.add_argument("--workers", dest="n_workers", type=int, metavar="N",
                   help="local: worker processes (default: CPU cores // threads); cuda: GPUs "
                   "to use (default: all visible)")
    g.add_argument("--threads-per-worker", type=int, metavar="N", help="threads per local worker (default 1)")
    g.add_argument("--dashboard-address", metavar="HOST:PORT",
                   help="dashboard of a started cluster (default 127.0.0.1:0, loopback only)")
    j = parser.add_argument_group(f"batch jobs (--cluster {'|'.join(JOBQUEUE_KINDS)})")
    j.add_argument("--jobs", type=int, metavar="N", help="submit exactly N jobs (default: adaptive)")
    j.add_argument("--min-jobs", type=int, metavar="N", help="adaptive: fewest jobs kept (default 1)")
    j.add_argument("--max-jobs", type=int, metavar="N", help="adaptive: most jobs at once (default 4)")
    j.add_argument("--queue", metavar="NAME", help="queue or SLURM partition")
    j.add_argument("--account", metavar="NAME", help="account/project charged for the jobs")
    j.add_argument("--walltime", metavar="TIME", help="job walltime, in the batch system's format (HH:MM:SS; "
                   "LSF HH:MM)")
    j.add_argument("--memory", metavar="SIZE", help="host memory per job, e.g. 32GB")
    j.add_argument("--cores", type=int, metavar="N", help="worker threads per GPU (default 1)")
    j.add_argument("--job-cpu", type=int, metavar="N", help="CPUs requested per job (default 4)")
    j.add_argument("--gpus-per-job", type=int, metavar="N",
                   help="GPUs per job (default 1; 0 for CPU-only jobs; >1 needs --cuda-worker)")
    j.add_argument("--job-prologue", action="append", default=[], metavar="LINE",
                   help="shell line run in each job before the worker, e.g. 'module load "
                   "cuda/12.4' or 'source ~/venvs/nemo/bin/activate' (repeatable)")
    j.add_argument("--python", metavar="PATH", help="Python of the workers (default: this interpreter)")
    j.add_argument("--cuda-worker", action="store_true", default=None,
                   help="run workers as `dask cuda worker` (needs dask-cuda on the nodes)")
    j.add_argument("--interface", metavar="NAME", help="network interface of scheduler and workers, e.g. ib0")
    j.add_argument("--shared-temp-directory", metavar="DIR",
                   help="directory the jobs can read, for temporary TLS files "
                   "(default ~/.nemo_dask/tls)")
    j.add_argument("--dry-run", action="store_true",
                   help="print the job script that would be submitted, and exit")
    s = parser.add_argument_group("security (TLS)")
    s.add_argument("--tls", dest="tls", action="store_true", default=None,
                   help="TLS for a local/cuda cluster too (default: on for batch systems only)")
    s.add_argument("--no-tls", dest="tls", action="store_false",
                   help="batch systems without TLS. RISK: anyone who can reach the scheduler's "
                   "port (every user of a shared login node) can run code as you")
    s.add_argument("--tls-ca-file", metavar="PEM", help="CA certificate (with --tls-cert/key)")
    s.add_argument("--tls-cert", metavar="PEM", help="certificate for scheduler/workers/client")
    s.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")


def cluster_options_from_args(args: argparse.Namespace) -> ClusterOptions:
    """:class:`ClusterOptions` from the flags of :func:`add_cluster_arguments`."""
    from dataclasses import fields

    values = {f.name: getattr(args, f.name) for f in fields(ClusterOptions) if hasattr(args, f.name)}
    values["job_prologue"] = list(values.get("job_prologue") or [])
    values["dry_run"] = bool(values.get("dry_run"))
    return ClusterOptions(**values)


def job_script(options: ClusterOptions) -> str:
    """The batch job script a ``--cluster slurm|pbs|lsf|sge`` run would submit (``--dry-run``)."""
    o = resolve(options)
    if o.cluster not in JOBQUEUE_KINDS:
        raise InputError(f"--dry-run prints a batch job script: use it with --cluster "
                         f"{'|'.join(JOBQUEUE_KINDS)} (got --cluster {o.cluster})")
    return _jobqueue.dry_run_script(o)


@contextlib.contextmanager
def connect(options: ClusterOptions | None = None, *, announce: bool = True) -> Iterator[Any]:
    """A ``distributed.Client`` for ``options``; a cluster started here is closed on exit.

    With ``options.scheduler`` it joins that scheduler (and leaves it running); else it starts
    the cluster ``options.cluster`` names and, if ``announce``, prints where its dashboard is
    (else call :func:`announce_cluster` when ready).
    """
    o = resolve(options or ClusterOptions())
    from distributed import Client

    if o.scheduler:
        with _join(o) as client:
            yield client
        return
    with contextlib.ExitStack() as stack:
        if o.cluster == "local":
            # For the cluster's whole life: the nanny of a lost worker starts it again this way.
            stack.enter_context(_local.worker_start_method(_local.start_method()))
            cluster = _local.start_local(o)
        elif o.cluster == "cuda":
            cluster = _local.start_cuda(o)
        elif o.cluster == "in-process":
            cluster = _local.start_in_process(o)
        else:
            cluster = _jobqueue.start(o)
        # Closing prints nothing but our lines (clusters/quiet.py): unwound last to first,
        # the loggers are silenced, the client and the cluster closed, the levels restored.
        quiet = contextlib.ExitStack()
        stack.callback(quiet.close)
        stack.callback(cluster.close)
        client = Client(cluster)
        stack.callback(client.close)
        stack.callback(quiet.enter_context, closing_quietly(client))
        if o.cluster in LOCAL_KINDS:
            quiet_memory_warnings(client)  # dask's "unmanaged memory" lines: see quiet.py
        if announce:
            announce_cluster(o, cluster)
        yield client


@contextlib.contextmanager
def _join(o: ClusterOptions) -> Iterator[Any]:
    from distributed import Client

    target = str(o.scheduler)
    timeout = parse_timedelta(cfg("connect-timeout", "30s"))
    is_file = "://" not in target and os.path.isfile(os.path.expanduser(target))
    if is_file:
        import json

        with open(os.path.expanduser(target)) as f:
            address = json.load(f).get("address", "")
    else:
        address = target
    security = for_client(address, o)
    try:
        client = Client(address, security=security, timeout=timeout)
    except (OSError, TimeoutError) as err:
        hint = (" (a tls:// scheduler refuses clients without its CA's certificate: check "
                "--tls-ca-file/--tls-cert/--tls-key)" if address.startswith("tls://") else
                " (is it tls://? then give that scheme and the certificate flags)")
        raise InputError(f"--scheduler {target}: could not connect within {timeout:g} s: "
                         f"{err}{hint}") from err
    try:
        yield client
    finally:
        client.close()


def announce_cluster(o: ClusterOptions, cluster: Any) -> None:
    """Print (on stderr: stdout stays for results) what was started and its dashboard."""
    try:
        link = cluster.dashboard_link
    except Exception:  # no bokeh: no dashboard
        link = None
    if link and o.cluster == "in-process":
        # dask names the machine's address for an in-process scheduler; it listens where
        # --dashboard-address says (loopback by default)
        host = str(o.dashboard_address or "127.0.0.1:0").rsplit(":", 1)[0] or "127.0.0.1"
        link = f"http://{host}:{cluster.scheduler.http_server.port}/status"
    dash = f"dashboard {link}" if link else "no dashboard (pip install bokeh)"
    if o.cluster in JOBQUEUE_KINDS:
        jobs = (f"{o.jobs} job(s)" if o.jobs is not None else
                f"adaptive {o.min_jobs}-{o.max_jobs} jobs")
        tls = "TLS on" if o.tls else f"TLS OFF ({NO_TLS_RISK})"
        print(f"nemo-dask: {o.cluster} cluster at {cluster.scheduler_address}, {jobs}, {tls}; "
              f"{dash} (from your machine: ssh -L 8787:{_hostport(link)} <login-node>); "
              "tasks start when the batch system runs the jobs", file=sys.stderr)
    elif o.cluster == "in-process":  # (dask's inproc:// address names no reachable port)
        n = len(cluster.workers)
        print(f"nemo-dask: in-process cluster, {n} worker thread(s) in this process; {dash}",
              file=sys.stderr)
    else:
        n = len(cluster.workers)
        print(f"nemo-dask: {o.cluster} cluster, {n} worker(s) at {cluster.scheduler_address}; "
              f"{dash}", file=sys.stderr)


def _hostport(link: str | None) -> str:
    if not link:
        return "localhost:8787"
    return link.split("://", 1)[-1].split("/", 1)[0]
