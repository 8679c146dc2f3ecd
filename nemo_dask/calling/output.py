"""Run identity, the output directory's state and the manifest of finished blocks.

A run is identified by a fingerprint of everything that changes its hits: the regions, the
motifs, the parameters and the block layout. Rerunning into the same directory with the same
fingerprint resumes (finished blocks are skipped); a different fingerprint is refused unless the
caller asks to overwrite, so results of two different runs can never be mixed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import (
    CWMS_FILE,
    HITS_DIR,
    MANIFEST_FILE,
    MOTIFS_FILE,
    PARAMS_FILE,
    QC_DIR,
    part_name,
    partition_rows,
    read_json,
)
from ..errors import OutputExistsError
from ..motifs import Motifs

#: Everything a run may put in its output directory (removed by ``overwrite``).
_OWNED = (HITS_DIR, QC_DIR, MOTIFS_FILE, CWMS_FILE, PARAMS_FILE, MANIFEST_FILE, "regions.zarr")


def fingerprint(identity: dict[str, Any], motifs: Motifs) -> str:
    """SHA-256 over the run's identity (JSON) and the exact motif matrices and table."""
    h = hashlib.sha256()
    h.update(json.dumps(identity, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(motifs.cwms).tobytes())
    h.update(np.ascontiguousarray(motifs.trim_masks).tobytes())
    h.update(motifs.table.write_csv().encode())
    return h.hexdigest()


def prepare_out(out: Path, run_fingerprint: str, identity: dict[str, Any], overwrite: bool) -> bool:
    """Check ``out`` against this run; returns True when resuming a run with the same identity.

    Raises OutputExistsError when ``out`` holds another run (or foreign files) and ``overwrite``
    is False. With ``overwrite`` only nemo_dask's own files are removed.
    """
    params_path = out / PARAMS_FILE
    if not out.exists():
        return False
    if params_path.exists():
        try:
            previous = read_json(params_path).get("nemo_dask", {})
        except (OSError, ValueError):
            previous = {}
        if previous.get("fingerprint") == run_fingerprint:
            return True
        if not overwrite:
            changed = sorted(k for k in set(identity) | set(previous.get("identity", {}))
                             if identity.get(k) != previous.get("identity", {}).get(k))
            raise OutputExistsError(
                f"{out} holds the results of a different run (differences in: "
                f"{', '.join(changed) or 'motifs'}); rerun with --overwrite (overwrite=True) to "
                "replace them, or choose another output directory")
    elif any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{out} exists, is not empty and is not a nemo-dask output directory; choose another "
            "output directory, or pass --overwrite (overwrite=True) to write into it anyway")
    if overwrite:
        for name in _OWNED:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return False


def finished_blocks(out: Path, blocks: list[tuple[int, int, int]]) -> dict[int, dict[str, int]]:
    """Blocks whose hits and QC partitions are both complete, with their row counts.

    The files themselves are the truth (each is written to a temporary name and renamed): a
    driver killed before it recorded a finished block in the manifest loses nothing.
    """
    done: dict[int, dict[str, int]] = {}
    for block, start, stop in blocks:
        n_qc = partition_rows(out / QC_DIR / part_name(block))
        n_hits = partition_rows(out / HITS_DIR / part_name(block))
        if n_qc == stop - start and n_hits is not None:
            done[block] = {"start": start, "stop": stop, "hits": n_hits, "regions": n_qc}
    return done
