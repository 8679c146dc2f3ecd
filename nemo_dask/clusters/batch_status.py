"""What the batch system says about a run's worker jobs: states, reasons, and hopeless cases.

While no worker is connected, call-hits asks the batch system about its jobs (SLURM ``squeue``,
PBS ``qstat``, LSF ``bjobs``, SGE ``qstat``), shows a one-line summary ("2 jobs pending
(Resources)") and stops the run when a job can never start (SLURM reasons such as
``PartitionConfig``, PBS comments saying "never run", SGE's error state), quoting the reason.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

#: SLURM pending reasons that no amount of waiting resolves (the request exceeds what the
#: partition, its nodes, the account or the QOS can ever give). Transient ones (Resources,
#: Priority, QOS*PerUser*, ReqNodeNotAvail during maintenance, ...) are absent on purpose.
SLURM_NEVER = frozenset({
    "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
    "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed",
    "DependencyNeverSatisfied", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob",
    "QOSMaxMemoryPerJob", "QOSMaxNodePerJobLimit", "QOSMaxWallDurationPerJobLimit",
    "QOSMinCpuNotSatisfied", "QOSMinGRES", "QOSMinMemory", "PartitionDown",
    "PartitionInactive", "ReqNodeNotAvail, UnavailableNodes", "InactiveLimit",
})
#: SLURM states of a job that has ended.
SLURM_ENDED = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL",
                         "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED",
                         "SPECIAL_EXIT"})
_TIMEOUT_S = 20


@dataclass(frozen=True)
class JobState:
    """One batch job as the batch system reports it.

    Attributes
    ----------
    job_id
        The batch system's job id.
    state
        ``pending``, ``running`` or ``ended`` (normalised), see ``raw`` for the system's word.
    reason
        Why a pending job waits (SLURM ``%r``, PBS comment, LSF pending reason), or "".
    raw
        The state as the batch system wrote it (e.g. ``PENDING``, ``Q``, ``PEND``, ``qw``).
    never
        True when the batch system says the job can never start.
    """

    job_id: str
    state: str
    reason: str = ""
    raw: str = ""
    never: bool = False


def query(system: Any, job_ids: list[str]) -> dict[str, JobState] | None:
    """States of ``job_ids`` as ``system`` (a :class:`~nemo_dask.clusters.systems.BatchSystem`)
    reports them; jobs the system no longer lists are absent from the result.

    Returns None when the status command is missing or fails (then nothing can be said).
    """
    ids = [j for j in job_ids if j]
    if not ids:
        return {}
    cmd = system.status_command(ids)
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        # squeue/qstat/bjobs fail when every id is unknown (all jobs ended and forgotten).
        if re.search(r"invalid job id|unknown job id|is not found|not found",
                     proc.stderr + proc.stdout, re.IGNORECASE):
            return {}
        return None
    states = system.parse_status(proc.stdout)
    return {j: s for j, s in states.items() if j in set(ids)}


def parse_squeue(text: str) -> dict[str, JobState]:
    """``squeue -h -o "%i|%T|%r"`` output."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) != 3:
            continue
        job, raw, reason = parts
        reason = "" if reason in ("None", "(null)") else reason
        state = ("pending" if raw in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED")
                 else "ended" if raw in SLURM_ENDED else "running")
        out[job] = JobState(job, state, reason, raw,
                            never=state == "pending" and reason in SLURM_NEVER)
    return out


def parse_qstat_pbs(text: str) -> dict[str, JobState]:
    """``qstat -f`` output (PBS Pro / OpenPBS / Torque): ``job_state`` and ``comment``."""
    out = {}
    for block in re.split(r"(?m)^Job Id:\s*", text)[1:]:
        job = block.split(None, 1)[0]
        fields = dict(re.findall(r"(?m)^\s+(\w+) = (.*)$", block))
        raw = fields.get("job_state", "")
        comment = fields.get("comment", "")
        state = {"Q": "pending", "H": "pending", "W": "pending", "T": "pending",
                 "F": "ended", "C": "ended", "X": "ended"}.get(raw, "running")
        never = state == "pending" and bool(re.search(r"never\s+run", comment, re.IGNORECASE))
        out[job] = JobState(job, state, comment, raw, never)
        short = job.split(".", 1)[0]
        out.setdefault(short, out[job])
    return out


def parse_bjobs(text: str) -> dict[str, JobState]:
    """``bjobs -noheader -o "jobid stat pend_reason delimiter='|'"`` output (LSF)."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) < 2:
            continue
        job, raw = parts[0], parts[1]
        reason = parts[2].strip() if len(parts) > 2 and parts[2].strip() != "-" else ""
        state = ("pending" if raw in ("PEND", "PSUSP") else
                 "ended" if raw in ("DONE", "EXIT", "ZOMBI") else "running")
        out[job] = JobState(job, state, reason, raw)
    return out


def parse_qstat_sge(text: str) -> dict[str, JobState]:
    """Plain ``qstat`` table (Grid Engine): column 1 the job id, column 5 the state."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        job, raw = parts[0], parts[4]
        if "E" in raw:
            out[job] = JobState(job, "pending", "error state (qstat -j for why)", raw, True)
        elif "q" in raw or "h" in raw:
            out[job] = JobState(job, "pending", "", raw)
        else:
            out[job] = JobState(job, "running", "", raw)
    return out


def summary(states: list[JobState]) -> str:
    """``"2 jobs pending (Resources)"``, ``"1 job running, 1 pending (Priority)"``,
    ``"3 jobs pending (2 Priority, 1 Resources)"``."""
    if not states:
        return "no job in the queue"
    parts = []
    for state in ("running", "pending", "ended"):
        group = [s for s in states if s.state == state]
        if not group:
            continue
        reasons = collections.Counter(s.reason for s in group if s.reason)
        if len(reasons) == 1 and sum(reasons.values()) == len(group):
            detail = f" ({next(iter(reasons))})"
        elif reasons:
            detail = " (" + ", ".join(f"{n} {r}" for r, n in reasons.most_common()) + ")"
        else:
            detail = ""
        noun = ("job " if len(group) == 1 else "jobs ") if not parts else ""
        parts.append(f"{len(group)} {noun}{state}{detail}")
    return ", ".join(parts)


def submission_error(err: BaseException) -> str:
    """The batch system's own words from a failed submission (dask-jobqueue puts the command's
    stderr after a ``stderr:`` line), else the error's text, on one line."""
    text = str(err)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) or type(err).__name__
