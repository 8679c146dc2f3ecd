"""Clusters on this machine: CPU worker processes, or one dask-cuda worker per visible GPU.

Both bind the loopback interface only (scheduler, workers and dashboard), so nothing is
reachable from the network.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterator
from typing import Any

from .options import ClusterOptions, GpuUnavailableError, cfg
from .security import for_new_cluster

_HOST = "127.0.0.1"

_CUDA_INSTALL = ("install dask-cuda for your CUDA version (see deploy/README.md: "
                 "`pip install --extra-index-url=https://pypi.nvidia.com 'dask-cuda[cu12]'`), "
                 "or run on CPU with --cluster local")


def usable_cores() -> int:
    """CPU cores this process may run on (affinity / cgroup aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def dashboard_address(options: ClusterOptions) -> str:
    """``host:port`` for the dashboard; a bare port or ``:port`` stays on loopback."""
    addr = str(options.dashboard_address or f"{_HOST}:0")
    if addr.isdigit():
        return f"{_HOST}:{addr}"
    if addr.startswith(":"):
        return f"{_HOST}{addr}"
    return addr


#: Modules the fork server imports once, so that every worker forked from it starts with the
#: task's whole import chain (torch above all) already loaded, and the compiled CPU solver's
#: kernels too (``solver.warm``: about 0.7 s a worker would spend on its first block).
WORKER_MODULES = ["distributed", "nemo_dask.calling.task", "nemo_dask.solver.stream",
                  "nemo_dask.solver.service", "nemo_dask.regions.store", "nemo_dask.solver.warm"]


def start_method() -> str:
    """How local worker processes start: ``nemo_dask.cluster.local.start-method`` or, unset,
    ``forkserver`` on Linux and ``spawn`` elsewhere (fork is unsafe on macOS)."""
    method = cfg("local.start-method")
    if method is None:
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        if method == "forkserver" and sys.version_info < (3, 11) and _cwd_shadows_package():
            method = "spawn"  # no PYTHONSAFEPATH before 3.11: see _pre_spawn_environ
    if method not in multiprocessing.get_all_start_methods():
        from ..errors import InputError

        raise InputError(f"nemo_dask.cluster.local.start-method {method!r} is not available "
                         f"here; use one of {multiprocessing.get_all_start_methods()}")
    return method


@contextlib.contextmanager
def worker_start_method(method: str) -> Iterator[None]:
    """Make dask's nannies start (and restart) workers with ``method`` while the context lasts.

    With forkserver, the server is told to import :data:`WORKER_MODULES`: dask would otherwise
    have it import (and first import in this process) a fixed list of its own, pandas included.
    """
    import dask

    from .quiet import quiet_resource_tracker

    quiet_resource_tracker()  # before the fork server starts the tracker (quiet.py)
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        if method == "forkserver":
            # If the server already runs (an earlier cluster), the list no longer matters.
            claim_forkserver_preload()
            multiprocessing.get_context("forkserver").set_forkserver_preload(WORKER_MODULES)
            # Started here, not by the first nanny, so that it runs in _pre_spawn_environ.
            with _pre_spawn_environ():
                from multiprocessing import forkserver

                ensure_running = getattr(forkserver, "ensure_running", None)
                if ensure_running is not None:
                    ensure_running()
        yield


#: distributed's private flag (``distributed.utils``) behind which it sets its own fork-server
#: preload list, once per process. tests/clusters/test_cluster.py fails when it disappears.
_DASK_PRELOAD_FLAG = "_forkserver_preload_set"


def claim_forkserver_preload() -> bool:
    """Keep dask from replacing our fork-server preload list; False when this distributed no
    longer has the flag. Then dask sets its own list when it starts workers: they still work,
    only they import torch on their first task instead of finding it loaded."""
    from distributed import utils as dist_utils

    if not hasattr(dist_utils, _DASK_PRELOAD_FLAG):
        return False
    setattr(dist_utils, _DASK_PRELOAD_FLAG, True)
    return True


def prestart_workers() -> None:
    """Start the fork server now if local workers will fork from it, so that it imports torch
    and the solver while this process is still validating input (a small run's wall time is
    mostly start-up). Does nothing for other start methods; no worker is started."""
    if start_method() != "forkserver":
        return
    with worker_start_method("forkserver"):
        pass


def _cwd_shadows_package() -> bool:
    """Whether the current directory holds a ``nemo_dask`` that is not this package."""
    here = os.path.join(os.getcwd(), "nemo_dask")
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.isdir(here) and os.path.realpath(here) != os.path.realpath(package)


@contextlib.contextmanager
def _pre_spawn_environ() -> Iterator[None]:
    """The environment dask's nanny gives a worker before it starts (one BLAS/OpenMP thread,
    a fixed hash seed, ...: ``distributed.nanny.pre-spawn-environ``), set while the fork
    server starts so that it and every worker forked from it run with it, as spawned ones do.

    Also ``PYTHONSAFEPATH=1`` (Python >= 3.11): the server starts as ``python -c``, the current
    directory first on its sys.path, and Python 3.11's forkserver never applies this process's
    sys.path (CPython gh-117378, fixed in 3.12 and 3.13 point releases). A directory named
    ``nemo_dask`` here -- a clone, seen from its parent -- would otherwise be imported instead
    of an editable install, as an empty namespace package, and every worker fail to start.
    """
    import dask

    wanted = {k: os.environ.get(k, str(v)) for k, v in
              (dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}).items()
              if v is not None}
    if wanted.get("PYTHONHASHSEED") in (None, "0"):
        wanted["PYTHONHASHSEED"] = "6640"  # dask's choice, for consistent hashing on workers
    wanted["PYTHONSAFEPATH"] = "1"
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_local(options: ClusterOptions) -> Any:
    """``distributed.LocalCluster`` with worker processes on 127.0.0.1.

    Processes, not threads: the GIL and torch's own thread pool make one process per core the
    fastest CPU layout, and a crashed worker cannot take the driver down. Start it inside
    :func:`worker_start_method` to have workers forked ready to solve.
    """
    from distributed import LocalCluster

    threads = options.threads_per_worker or 1
    n = options.n_workers or max(1, usable_cores() // threads)
    return LocalCluster(processes=True, host=_HOST, dashboard_address=dashboard_address(options),
                        n_workers=n, threads_per_worker=threads,
                        memory_limit=options.memory_limit or "auto",
                        security=for_new_cluster(options), config=worker_config(),
                        env=storage_environ())


def start_in_process(options: ClusterOptions) -> Any:
    """``distributed.LocalCluster(processes=False)``: the workers are threads of this process.

    call-hits then runs its blocks through the same plan, tasks and ending as on any cluster,
    in the caller's process: a debugger, a profiler and ``fit_block``'s results apply as they
    are (the parity tests' in-process path). No memory limit (the worker's would be the
    caller's process), so no worker is paused or restarted; one worker of one thread unless
    ``--workers``/``--threads-per-worker`` say otherwise.
    """
    from distributed import LocalCluster

    return LocalCluster(processes=False, n_workers=options.n_workers or 1,
                        threads_per_worker=options.threads_per_worker or 1, memory_limit=0,
                        dashboard_address=dashboard_address(options))


#: Environment variables object-store clients read (credentials, endpoints, fsspec config).
_STORAGE_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_", "GCE_", "AZURE_STORAGE_")


def storage_environ() -> dict[str, str]:
    """The driver's object-store settings (``AWS_*``, ``FSSPEC_*``, ...), for the workers.

    Workers are forked from a fork server started with the first cluster of the process, so
    they see the environment of that moment, not the driver's current one; the nanny sets
    these in each worker before it starts, so a store on ``s3://`` reads with the credentials
    and endpoint the driver has now.
    """
    return {k: v for k, v in os.environ.items() if k.startswith(_STORAGE_ENV_PREFIXES)}


def worker_config() -> dict[str, Any]:
    """dask settings the embedded cluster's nannies give their workers (kept across restarts).

    dask's statistical profiler is off unless ``nemo_dask.cluster.local.worker-profiler`` is
    true: it samples the stacks of task threads every 10 ms, and a nemo_dask task has left the
    thread pool while its block is solved on the solver thread, which the profiler never
    samples. On a machine with as many workers as cores its cost comes out of the solves: two
    workers on 2 cores took 10.7-11.1 s without it against 11.2-11.7 s with it (1400 regions).
    """
    import dask

    profile = {"worker": {"profile": {"enabled": bool(cfg("local.worker-profiler"))}}}
    # The nanny merges this over dask's config one level deep: hand it the whole subtree.
    return {"distributed": dask.config.merge(dask.config.config.get("distributed", {}), profile)}


def visible_gpu_count() -> int:
    """GPUs this process could use, asked of NVML (never of torch: a CUDA context made in the
    driver before the workers start pins them all to GPU 0)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return 0
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return 0
    if visible is not None:
        return min(count, len([d for d in visible.split(",") if d.strip()]))
    return count


def start_cuda(options: ClusterOptions) -> Any:
    """``dask_cuda.LocalCUDACluster``: one single-threaded worker per visible GPU.

    Each worker gets its own rotated ``CUDA_VISIBLE_DEVICES`` (so tasks use device ``cuda``).
    No RMM pool and no device-memory limit: torch's caching allocator manages GPU memory and
    dask-cuda's spilling cannot see it.
    """
    try:
        import dask_cuda
    except ImportError as err:
        raise GpuUnavailableError(f"--cluster cuda: dask-cuda is not installed; {_CUDA_INSTALL}"
                                  ) from err
    n_gpus = visible_gpu_count()
    if n_gpus == 0:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = (f"CUDA_VISIBLE_DEVICES={shown!r} hides every GPU" if shown is not None
                 else "NVML finds no NVIDIA GPU or driver on this machine")
        raise GpuUnavailableError(f"--cluster cuda: no usable GPU ({where}); run on a GPU node "
                                  "(check `nvidia-smi`), or use --cluster local for CPU workers, "
                                  "or --cluster slurm|pbs|lsf|sge to get GPU jobs")
    n = options.n_workers or n_gpus
    if n > n_gpus:
        raise GpuUnavailableError(f"--workers {n}: only {n_gpus} GPU(s) visible; use at most "
                                  f"{n_gpus} workers (one per GPU)")
    try:
        return dask_cuda.LocalCUDACluster(
            n_workers=n, threads_per_worker=options.threads_per_worker or 1, host=_HOST,
            dashboard_address=dashboard_address(options), device_memory_limit=None,
            rmm_pool_size=None, security=for_new_cluster(options))
    except Exception as err:
        # NVML/driver failures surface as assorted exception types; the user needs one line.
        if type(err).__module__.startswith(("pynvml", "cuda")) or "NVML" in type(err).__name__:
            raise GpuUnavailableError(f"--cluster cuda: the GPU driver failed ({err}); check "
                                      "`nvidia-smi`, or use --cluster local") from err
        raise
