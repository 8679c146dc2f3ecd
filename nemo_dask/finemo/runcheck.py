"""Is a run ready to export, and did it change while export read it.

A run is exported only when it is complete (or ``allow_incomplete``), when every partition is
the one its manifest records (:func:`nemo_dask.manifest.check_dataset`), and when its manifest
is the same after the export has read it: a run rewritten meanwhile (``call-hits --overwrite``
into it) is refused in one line and nothing is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dataset import CWMS_FILE, HITS_DIR, MANIFEST_FILE, PARAMS_FILE, QC_DIR, read_json
from ..errors import CorruptDataError, InputError
from ..manifest import check_dataset, read_manifest
from ..storage.lock import describe, lock_holder
from ..storage.urls import location


def check_run(out: Path, dest: Path | None, allow_incomplete: bool,
              shown: Any = None) -> dict[str, Any] | None:
    """Refuse, in one line, a (local) run ``out`` that is not a complete call-hits output
    whose partitions are its manifest's, or the export destination ``dest`` being the run;
    returns its manifest. ``shown`` is how messages name the run (its URL)."""
    shown = out if shown is None else shown
    missing = [name for name in (HITS_DIR, QC_DIR, "motifs.parquet", CWMS_FILE, PARAMS_FILE)
               if not (out / name).exists()]
    if missing:
        raise InputError(f"{shown} is not a call-hits output directory: it lacks "
                         f"{', '.join(missing)}; pass the -o directory of `nemo-dask call-hits` "
                         "or of `finemo call-hits`")
    if dest is not None and dest.resolve() == out.resolve():
        raise InputError(f"export destination {dest} is the run directory itself; its "
                         "parameters.json would lose the nemo_dask settings: choose another "
                         "directory")
    manifest = out / MANIFEST_FILE
    if manifest.exists() and not allow_incomplete:
        info = read_json(manifest)
        if not info.get("complete", True):
            done = len(info.get("blocks", {}))
            holder = lock_holder(shown)
            advice = (f"it is being written now ({describe(holder)}): export it when that run "
                      "has finished" if holder else "resume it with call-hits, or export what "
                      "exists with --allow-incomplete")
            what = f"{done} of {info.get('n_blocks', '?')} blocks finished"
            if done == info.get("n_blocks") and "qvalues" not in info:
                # (a run's manifest is complete once its blocks are, unless q-values are due)
                what += ", their q-values not computed yet"
            raise InputError(f"{location(shown) / MANIFEST_FILE}: the run is incomplete ({what}); "
                             f"{advice}")
    try:
        # Every partition must be the one the manifest records (one line naming any other).
        check_dataset(out)
    except CorruptDataError as err:
        raise CorruptDataError(str(err).replace(str(out), str(shown))) from None
    return read_manifest(out)


def still_same(out: Path, before: dict[str, Any] | None) -> bool:
    """Whether the run still has the manifest ``before`` and matches it."""
    try:
        check_dataset(out)
    except (OSError, ValueError):
        return False
    return read_manifest(out) == before


def changed(shown: Any, what: str) -> str:
    text = " ".join(what.split())
    return (f"{shown} changed while export read it ({text[:120]}): another call-hits wrote "
            "into it (--overwrite, or a resume); nothing was exported: export again once that "
            "run has finished")


__all__ = ("changed", "check_run", "still_same")
