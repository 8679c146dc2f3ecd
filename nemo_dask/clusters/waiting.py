"""Waiting for workers without a fixed timeout, and ending a run that can never get any.

Batch jobs wait in the queue for minutes or hours, so call-hits has no timeout before the first
worker (unless the user sets ``worker_wait``). While no worker is connected, :class:`WorkerWait`
asks the batch system about the run's jobs and reports a one-line status; it raises
:class:`~nemo_dask.errors.WorkersUnavailableError` (one line, the batch system's reason) when a
job was refused at submission, can never start, or ended before its worker connected.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

from ..errors import WorkersUnavailableError
from . import batch_status
from .systems import system_of


class WorkerWait:
    """Watches a client's workers and, while there are none, its batch jobs.

    Parameters
    ----------
    client
        The run's ``distributed.Client``; ``client.cluster`` is inspected when it is a
        dask-jobqueue cluster.
    worker_wait
        Seconds without any connected worker after which the run stops (None: no bound).
    status
        Called with a one-line status when it changes ("" once workers are connected).
    poll_s
        Seconds between questions to the batch system while no worker is connected.
    """

    def __init__(self, client: Any, worker_wait: float | None = None,
                 status: Callable[[str], None] | None = None, poll_s: float = 5.0) -> None:
        self.client = client
        self.cluster = getattr(client, "cluster", None)
        self.system = system_of(self.cluster) if self.cluster is not None else None
        self.job_cls = getattr(self.cluster, "job_cls", None)
        self.worker_wait = worker_wait
        self.status = status or (lambda text: None)
        self.poll_s = poll_s
        self._last_status: str | None = None
        self._workers_at = time.monotonic()  # last time workers were seen (or the start)
        self._have_workers = False
        self._ever_connected = False
        self._checked = 0.0
        self._polled = 0.0
        self._ended_seen: dict[str, int] = {}

    # -- called from the driver's loop --------------------------------------------------

    def check(self) -> None:
        """Look at the workers (about once a second) and, with none, at the batch jobs.

        Raises
        ------
        WorkersUnavailableError
            A job was refused or can never run, or ``worker_wait`` has passed with no worker.
        """
        self._raise_submission_errors()
        now = time.monotonic()
        if now - self._checked < (1.0 if not self._have_workers else 5.0):
            return
        self._checked = now
        self._replace_lost_jobs()
        n = self._n_workers()
        if n:
            self._have_workers = self._ever_connected = True
            self._workers_at = now
            self._say("")
            return
        self._have_workers = False
        waited = now - self._workers_at
        jobs = self._job_status(now)
        if self.worker_wait is not None and waited > self.worker_wait:
            where = f" ({jobs})" if jobs else ""
            raise WorkersUnavailableError(
                f"no Dask worker connected within --worker-wait {self.worker_wait:g} s{where}; "
                "raise --worker-wait, or check the jobs with your batch system")
        self._say(f"waiting for workers: {jobs}" if jobs else "waiting for workers")

    def cancel_jobs(self) -> None:
        """Cancel every job this run submitted that the batch system may still hold (the
        cluster's own close cancels those it still tracks; this also covers replaced ones)."""
        ids = sorted(set(getattr(self.job_cls, "nemo_submitted", []) or []))
        if not ids or self.system is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([self.system.cancel_command, *ids], capture_output=True, timeout=30,
                           check=False)

    # -- internals ----------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.status(text)

    def _n_workers(self) -> int:
        try:
            return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except Exception:  # a client being closed; the caller's loop ends soon
            return 0

    def _replace_lost_jobs(self) -> None:
        """With a fixed number of jobs (no adaptive), submit a new job for each one whose worker
        left (walltime, scancel, preemption): dask forgets a lost worker's job after
        ``distributed.deploy.lost-worker-timeout`` but only adaptive scaling replaces it."""
        cluster = self.cluster
        if self.system is None or getattr(cluster, "_adaptive", None) is not None:
            return
        spec = getattr(cluster, "worker_spec", None)
        if spec and len(cluster.workers) < len(spec):
            with contextlib.suppress(Exception):
                cluster.scale(len(spec))

    def _raise_submission_errors(self) -> None:
        errors = getattr(self.job_cls, "nemo_errors", None)
        if errors:
            raise WorkersUnavailableError(
                f"the batch system refused the worker job: {errors[0]}; fix the job request "
                "(--gpus-per-job, --job-cpu, --memory, --queue, --walltime, --account) or "
                "jobqueue config, and rerun (finished blocks are kept)")

    def _job_status(self, now: float) -> str:
        if self.system is None or self.cluster is None:
            return ""
        if now - self._polled < self.poll_s and self._last_status is not None:
            return self._last_status.removeprefix("waiting for workers: ")
        self._polled = now
        jobs = {name: str(job.job_id) for name, job in list(self.cluster.workers.items())
                if getattr(job, "job_id", None)}
        if not jobs:
            return "submitting jobs"
        states = batch_status.query(self.system, list(jobs.values()))
        if states is None:
            return f"{len(jobs)} job(s) submitted"
        for state in states.values():
            if state.never:
                raise WorkersUnavailableError(
                    f"worker job {state.job_id} can never start: the batch system keeps it "
                    f"{state.state} ({state.reason}); ask for fewer resources "
                    "(--job-cpu, --memory, --gpus-per-job, --walltime) or another --queue")
        if not self._ever_connected:
            self._check_ended(jobs, states)
        return batch_status.summary([states[j] for j in jobs.values() if j in states])

    def _check_ended(self, jobs: dict[str, str], states: dict[str, batch_status.JobState]
                     ) -> None:
        """A job that has left the queue (or ended) before any worker ever connected: its
        worker failed to start (wrong --python, missing packages, unreachable scheduler)."""
        for job_id in jobs.values():
            state = states.get(job_id)
            if state is None or state.state == "ended":
                self._ended_seen[job_id] = self._ended_seen.get(job_id, 0) + 1
                if self._ended_seen[job_id] >= 2:
                    how = f" ({state.raw})" if state is not None and state.raw else ""
                    raise WorkersUnavailableError(
                        f"worker job {job_id} ended{how} before its Dask worker connected; "
                        "read the job's output file (SLURM: slurm-<id>.out where you ran "
                        "from, or jobqueue log-directory) for why: often --python, "
                        "--job-prologue or --interface")
