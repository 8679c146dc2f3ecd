"""What q-values add to a call-hits run: its tables, its background blocks, its manifest, and
the end-of-run pass (README "Calibrated hits").

* A decoy or shuffle null makes every block write a third partition, ``null/`` (before its QC,
  so a block is finished only with it); a resume checks it like the other two.
* A background null solves the blocks of another store for null hits only, into
  ``null_background/``, recorded in the manifest's ``background`` section and resumed alike.
* When every block is finished, :func:`finish` computes the q-values from the stored files
  (:mod:`nemo_dask.calibration.assign`) unless the manifest already records current ones,
  and only then marks the run complete.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ..errors import CorruptDataError
from ..manifest import (
    BACKGROUND_DIR,
    HITS_DIR,
    NULL_DIR,
    QC_DIR,
    QVALUES_DIR,
    TABLES,
    check_dataset,
    list_partitions,
    write_manifest,
)
from ..storage.urls import is_url, location

if TYPE_CHECKING:
    from ..calibration.params import CalibrationParams
    from .plan import Checked, Plan


def block_tables(calibration: CalibrationParams | None) -> tuple[str, ...]:
    """The tables every block writes: hits and QC, and ``null`` for a decoy or shuffle null."""
    if calibration is not None and calibration.fitted in ("decoy", "shuffle"):
        return (HITS_DIR, NULL_DIR, QC_DIR)
    return TABLES


def checked_calibration(source: Any, motifs: Any, motif_params: Any, null: str | None,
                        background: Any, score: str
                        ) -> tuple[CalibrationParams | None, Any, dict[str, Any] | None]:
    """The calibration of a run being validated (:func:`.plan.validate`): its parameters
    (:func:`nemo_dask.calibration.params.resolve_calibration`; tiled stores have no summit),
    the background regions store (opened and checked like the regions), and what its null fit
    adds to the run's identity (None without one).

    Raises
    ------
    InputError
        As ``resolve_calibration``; a background store that does not open, does not suit the
        motifs, or is not as wide as the regions.
    """
    from ..calibration.params import fitted_identity, resolve_calibration
    from ..errors import InputError
    from .identity import jsonable, store_identity
    from .plan import _check_compatible
    from .seams import tiling

    calibration = resolve_calibration(null, None if background is None else str(background),
                                      score, tiled=tiling(source) is not None,
                                      where=str(source.url))
    bg_store = None
    if calibration is not None and calibration.background is not None:
        from ..regions.store import open_store

        bg_store = open_store(calibration.background)
        _check_compatible(bg_store, motifs, motif_params, bg_store.url)
        if bg_store.width != source.width:
            raise InputError(f"{bg_store.url}: background regions are {bg_store.width} bp "
                             f"wide, the regions {source.width} bp; convert them with the same "
                             "width")
    fitted = fitted_identity(calibration, store_identity(bg_store) if bg_store else None)
    return calibration, bg_store, None if fitted is None else jsonable(fitted)


def plan_calibration(c: Checked, block_size: int, manifest: dict[str, Any] | None,
                     resuming: bool) -> dict[str, Any]:
    """The q-value fields of a :class:`~.plan.Plan`: the background null's blocks (laid out
    like the run's, in ``block_size`` regions) and those a resume keeps, and the manifest's
    ``qvalues`` section when it still describes this calibration."""
    from .identity import finished_blocks
    from .plan import say_redone

    fields: dict[str, Any] = {"calibration": c.calibration, "tables": block_tables(c.calibration)}
    if c.background is not None:
        n_bg = c.background.n_regions
        blocks = [(b, s, min(s + block_size, n_bg)) for b, s in enumerate(range(0, n_bg,
                                                                                block_size))]
        finished: dict[int, dict[str, Any]] = {}
        if resuming:
            resume = finished_blocks(c.out, blocks, c.fingerprint, manifest,
                                     tables=(BACKGROUND_DIR,))
            finished = resume.finished
            say_redone(resume.redone)
        fields.update(background_url=c.background.url, background_blocks=blocks,
                      background_finished=finished, n_background=n_bg)
    recorded = (manifest or {}).get("qvalues") if resuming else None
    if (c.calibration is not None and isinstance(recorded, dict)
            and recorded.get("calibration") == c.calibration.identity()):
        fields["qvalues"] = recorded
    return fields


def save_manifest(plan: Plan) -> None:
    """Write the manifest of ``plan``: complete when every block (and background block) is
    finished and, for a run with q-values, they are computed."""
    done = (len(plan.finished) == len(plan.blocks)
            and len(plan.background_finished) == len(plan.background_blocks))
    sections: dict[str, Any] = {}
    if plan.tables != TABLES:
        sections["tables"] = list(plan.tables)
    if plan.background_blocks:
        sections["background"] = {
            "n_blocks": len(plan.background_blocks), "n_regions": plan.n_background,
            "blocks": {str(k): plan.background_finished[k]
                       for k in sorted(plan.background_finished)}}
    if plan.qvalues is not None:
        sections["qvalues"] = plan.qvalues
    write_manifest(plan.out, plan.fingerprint, len(plan.blocks), plan.finished,
                   complete=done and (plan.calibration is None or plan.qvalues is not None),
                   block_size=plan.block_size or None, identity=plan.identity,
                   sections=sections)


def finish(plan: Plan, computed: bool) -> None:
    """The end of a run whose blocks are all finished: its q-values and its complete manifest.

    With a calibration, the q-values are computed (and written) unless this call computed no
    block and the manifest records current ones whose files check out; without one, any
    q-values an earlier call computed are removed. The manifest is written last, then
    ``parameters.json``'s calibration record.
    """
    from ..calibration.assign import assign_qvalues, calibration_record, record_calibration

    if plan.calibration is None:
        had = plan.qvalues is not None or bool(list_partitions(plan.out, QVALUES_DIR))
        plan.qvalues = None
        save_manifest(plan)
        if had:
            _remove_qvalues(plan.out)
        record_calibration(plan.out, None)
        return
    if computed:
        plan.qvalues = None
    if plan.qvalues is not None:
        try:
            check_dataset(plan.out, tables=(QVALUES_DIR,))
        except CorruptDataError as err:
            warnings.warn(f"the q-values are computed again: {err}", stacklevel=3)
            plan.qvalues = None
    if plan.qvalues is None:
        plan.qvalues = assign_qvalues(
            plan.out, plan.fingerprint, plan.blocks, plan.finished, plan.calibration,
            motifs=plan.motifs, width=plan.width, background=plan.background_finished,
            n_background=plan.n_background)
    save_manifest(plan)
    record_calibration(plan.out, {**calibration_record(plan.motifs, plan.calibration),
                                  "result": plan.qvalues["result"]})


def _remove_qvalues(out: Any) -> None:
    """Delete ``qvalues/`` partitions of an earlier call (the manifest no longer lists them)."""
    for name in list_partitions(out, QVALUES_DIR).values():
        target = location(out) / QVALUES_DIR / name
        if is_url(target):
            from ..storage.urls import filesystem

            fs, root = filesystem(str(target))
            fs.rm(root)
        else:
            target.unlink()


__all__ = ("block_tables", "checked_calibration", "finish", "plan_calibration", "save_manifest")
