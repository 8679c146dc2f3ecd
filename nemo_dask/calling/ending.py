"""How a run of :func:`.execute.execute` ends: :func:`end_of_run`, the one place a run that
solved its last block ends (alone or in a sheet: its q-value pass, :func:`.qvalues.finish`),
and what a run that stopped early records and says (its manifest, the blocks it kept, the
fix)."""

from __future__ import annotations

from typing import Any

from ..dataset import MANIFEST_FILE
from ..storage.faults import (
    SPACE_FAULTS,
    StorageFaultError,
    fault_error,
    is_fault,
    is_unreachable,
    unreachable_error,
)
from .output import record_batch_sizes
from .plan import Plan
from .qvalues import finish, save_manifest


def end_of_run(client: Any, plan: Plan, computed: bool = True) -> None:
    """The one place a run that solved its last block ends (alone or in a sheet), before its
    OUT's lock is given back: its manifest and the batch sizes its workers used are recorded,
    then the q-value pass over the whole finished run (:func:`.qvalues.finish`: the q-values
    unless current ones are recorded and this call ``computed`` no block; without a null, any
    earlier ones removed) writes the manifest complete. ``client`` is its cluster's.

    Raises
    ------
    StorageFaultError
        OUT met full or unwritable by the q-value pass: one line with the blocks it keeps
        (an ``OSError`` of the manifest's own writes is the caller's to say,
        :func:`.api.driver_failure`).
    """
    record_progress(plan)
    try:
        finish(plan, computed=computed)
    except StorageFaultError as err:
        if err.written is not None:
            raise
        # Met by the driver's own writes (the q-value pass): what the run keeps.
        raise err.with_written(written_so_far(plan), resume_fix(err, plan.out)) from None


def record_progress(plan: Plan, failing: BaseException | None = None) -> None:
    """Write the run's manifest (its finished blocks; complete when all are) and the batch
    sizes its blocks used into parameters.json: what a resume and a reader find.

    A run already failing (``failing``) keeps its own error if the manifest cannot be written
    either (a full disk, an object store gone): the partitions, not the manifest, are what a
    resume trusts. A run whose manifest cannot be written otherwise says so in one line
    (:class:`~nemo_dask.storage.faults.StorageFaultError`)."""
    try:
        save_manifest(plan)  # (with the q-value sections: calling/qvalues.py)
        record_batch_sizes(plan.out, plan.finished)
    except Exception as err:
        if failing is not None:
            return
        if isinstance(err, StorageFaultError):
            raise
        path = plan.out / MANIFEST_FILE
        if is_fault(err):
            fault = fault_error(err, path)  # type: ignore[arg-type]
        elif is_unreachable(err):
            fault = unreachable_error(err, path)
        else:
            raise
        raise fault.with_written(
            f"{len(plan.finished)} of {len(plan.blocks)} blocks are complete in {plan.out}, "
            "only its manifest is not up to date", resume_fix(fault, plan.out)) from None


def written_so_far(plan: Plan) -> str:
    """What a run that stopped has kept: its complete blocks (partitions are written whole)."""
    done = plan.finished.values()
    n_regions = plan.blocks[-1][2] if plan.blocks else 0
    return (f"{len(plan.finished)} of {len(plan.blocks)} blocks "
            f"({sum(b['regions'] for b in done)} of {n_regions} regions, "
            f"{sum(b['hits'] for b in done)} hits) are complete in {plan.out} and kept; the "
            "blocks that failed left no partition")


def resume_fix(fault: StorageFaultError, out: Any) -> str:
    """What to do: free space or make OUT writable (writes), make an input readable (a worker
    that could not read its block), or wait for the object store; then the same command
    resumes."""
    if fault.what is not None:
        first = "once the object store answers again,"
    elif fault.errno in SPACE_FAULTS:
        first = "free space there (or move OUT elsewhere), then"
    elif fault.path.startswith(str(out)):
        first = "make it writable for this user, then"
    else:
        first = "make it readable for the user running the workers, then"
    return f"{first} run the same command again: it resumes with the blocks not yet written"


__all__ = ("end_of_run", "record_progress", "resume_fix", "written_so_far")
