"""finemo's call-hits output directories: the one place that finds and reads their files.

finemo 0.41 writes ``hits.tsv``, ``hits_unique.tsv``, ``hits.bed``, ``peaks_qc.tsv``,
``motif_data.tsv``, ``motif_cwms.npy`` and ``parameters.json``. Users compress them
(``gzip -r finemo_out``), so each may also be there as ``<name>.gz`` (``.bgz``, ``.bz2``,
``.xz``), read by content exactly as the plain file (:mod:`nemo_dask.storage.compressed`).
Every verb that takes a finemo directory -- ``export``, ``report``, ``collapse-hits``,
``intersect-hits``, ``compare-hits`` and :func:`~nemo_dask.finemo.importing.import_finemo` --
recognises and reads it here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import HITS_DIR, MOTIFS_FILE
from ..errors import InputError
from ..storage.compressed import READ_ERRORS, SUFFIXES, read_decompressed
from ..storage.urls import location
from .formats import HITS_FILE


def finemo_file(directory: Any, name: str) -> Any | None:
    """``directory/name``, or its compressed copy ``name.gz`` (``.bgz``, ``.bz2``, ``.xz``);
    None when neither is a file. ``directory`` may be a path or a URL."""
    d = location(directory)
    for candidate in (name, *(name + s for s in SUFFIXES)):
        if (d / candidate).is_file():
            return d / candidate
    return None


def is_finemo_dir(path: Any) -> bool:
    """Whether ``path`` is a finemo call-hits output directory (its ``hits.tsv``, plain or
    compressed) rather than a nemo_dask one (``hits/`` partitions and ``motifs.parquet``)."""
    d = location(path)
    return (d.is_dir() and not (d / HITS_DIR).is_dir() and not (d / MOTIFS_FILE).is_file()
            and finemo_file(d, HITS_FILE) is not None)


def finemo_files(directory: Any, names: Sequence[str]) -> dict[str, Any]:
    """Each of ``names`` in ``directory`` (plain or compressed).

    Raises
    ------
    InputError
        Some are missing: one line listing them.
    """
    found = {n: finemo_file(directory, n) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise InputError(f"{directory} is not a finemo call-hits output directory: it lacks "
                         f"{', '.join(missing)} (plain or compressed .gz/.bz2/.xz)")
    return found


def read_json_file(path: Any) -> Any:
    """A JSON file (finemo's ``parameters.json``), plain or compressed."""
    try:
        return json.loads(read_decompressed(path))
    except READ_ERRORS as err:
        raise InputError(f"{path}: cannot read it ({err})") from None


def read_npy_file(path: Any) -> np.ndarray:
    """A ``.npy`` array (finemo's ``motif_cwms.npy``), plain or compressed."""
    try:
        return np.load(io.BytesIO(read_decompressed(path)), allow_pickle=False)
    except READ_ERRORS as err:
        raise InputError(f"{path}: cannot read it as a .npy array ({err})") from None


@contextlib.contextmanager
def as_dataset(source: str | os.PathLike[str], what: str = "-H") -> Iterator[Path]:
    """``source`` as a nemo_dask output directory: itself, or -- for a finemo directory -- a
    temporary import of it (:func:`~nemo_dask.finemo.importing.import_finemo`), removed
    afterwards. Lets a verb built on the Parquet dataset take finemo's outputs too."""
    if not is_finemo_dir(source):
        yield source  # type: ignore[misc]
        return
    from .importing import import_finemo

    with tempfile.TemporaryDirectory(prefix="nemo-dask-finemo-") as tmp:
        dataset = Path(tmp) / "dataset"
        try:
            import_finemo(source, dataset)
        except InputError as err:
            raise InputError(f"{what} {source}: {err}") from None
        yield dataset
        shutil.rmtree(dataset, ignore_errors=True)


__all__ = ("as_dataset", "finemo_file", "finemo_files", "is_finemo_dir", "read_json_file",
           "read_npy_file")
