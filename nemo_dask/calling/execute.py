"""Run a planned call-hits on a Dask client: one task per block, progress, the manifest.

Also where the driver meets the cluster: :func:`connected` (the caller's client, or an
embedded cluster's) and :func:`cluster_has_gpus` (asked of the workers themselves).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import dask

from .. import config
from ..dataset import write_manifest
from .plan import Plan
from .task import BlockSpec, process_block


def prepare_cluster(options: Any) -> Any:
    """Resolve and check the embedded cluster's options before any work (a bad flag fails
    before the regions are converted), and start the local fork server early so that it
    imports torch while the driver validates input. Returns the resolved ClusterOptions."""
    from ..clusters.options import ClusterOptions, resolve

    opts = resolve(options or ClusterOptions())
    if opts.cluster == "local" and not opts.scheduler:
        from ..clusters.local import prestart_workers

        prestart_workers()
    return opts


@contextlib.contextmanager
def connected(client: Any, cluster_opts: Any) -> Iterator[Any]:
    """The caller's client, or one of an embedded cluster that is closed afterwards."""
    if client is not None:
        yield client
        return
    from ..clusters.connect import ClusterOptions, connect

    # A killed worker must not fail the run: its blocks are simply recomputed elsewhere.
    failures = config.get("call-hits.allowed-failures")
    with dask.config.set({"distributed.scheduler.allowed-failures": failures}):
        with connect(cluster_opts or ClusterOptions()) as cl:
            yield cl


def _worker_has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cluster_has_gpus(client: Any, device: str, cluster_opts: Any = None) -> bool:
    """Whether tasks will solve on GPUs, for the block size.

    ``device`` ``cpu``/``cuda...`` says so; ``auto`` asks the workers (``client.run``: does
    torch see a GPU there). A cluster with no worker up yet (a batch system's jobs still
    queued) cannot answer: then the GPUs it was asked to start say it (``--cluster cuda``, or
    batch jobs with ``gpus_per_job`` > 0).
    """
    device = str(device)
    if device != "auto":
        return device.startswith("cuda")
    answers = client.run(_worker_has_cuda) if client.scheduler_info().get("workers") else {}
    if answers:
        return any(answers.values())
    kind = getattr(cluster_opts, "cluster", None)
    return kind == "cuda" or (kind in ("slurm", "pbs", "lsf", "sge")
                              and bool(getattr(cluster_opts, "gpus_per_job", 1)))


def execute(client: Any, plan: Plan) -> list[dict[str, Any]]:
    """Submit the blocks not yet finished; returns their summaries as they complete.

    The manifest is rewritten at most every 2 s while blocks finish, and once at the end.
    """
    from distributed import as_completed

    todo = [b for b in plan.blocks if b[0] not in plan.finished]
    if not todo:
        return []
    specs = [BlockSpec(block=b, start=s, stop=e, regions_url=plan.regions_url, out=str(plan.out),
                       solver=plan.solver, device=str(plan.run.device), run_id=plan.fingerprint)
             for b, s, e in todo]
    motifs_future = client.scatter(plan.motifs, broadcast=True, hash=False)
    futures = client.map(process_block, specs, motifs=motifs_future, retries=plan.run.retries,
                         key=[f"nemo-dask-{plan.fingerprint[:12]}-block-{s.block}" for s in specs])
    summaries: list[dict[str, Any]] = []
    n_regions = sum(e - s for _, s, e in todo)
    last_write = time.monotonic()
    with _progress_bar(n_regions, plan.run.progress) as bar:
        try:
            for fut in as_completed(futures):
                summary = fut.result()
                fut.release()
                summaries.append(summary)
                plan.finished[summary["block"]] = {k: summary[k] for k in
                                                   ("start", "stop", "hits", "regions")}
                bar.update(summary["regions"])
                if time.monotonic() - last_write > 2.0:
                    write_manifest(plan.out, plan.fingerprint, len(plan.blocks), plan.finished,
                                   complete=False)
                    last_write = time.monotonic()
        finally:
            write_manifest(plan.out, plan.fingerprint, len(plan.blocks), plan.finished,
                           complete=len(plan.finished) == len(plan.blocks))
    return summaries


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool | None) -> Iterator[Any]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="regions", desc="call-hits", dynamic_ncols=True) as bar:
        yield bar


__all__ = ("cluster_has_gpus", "connected", "execute", "prepare_cluster")
