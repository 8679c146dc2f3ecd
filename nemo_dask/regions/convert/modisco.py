"""tfmodisco-lite inputs (one-hot and attribution .npy/.npz) -> regions store.

finemo's ``extract-regions-modisco-fmt``: an ``.npz`` contributes its ``arr_0`` array, an ``.npy``
its only array (decided by content, as ``numpy.load`` does). Files are streamed row by row (see
``_npy``), so memory is bounded by a chunk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import polars as pl

from ...errors import InputError
from ...storage.urls import recorded_path
from ..store import Regions
from ._npy import NpyRows, file_kind
from ._peaks import NarrowPeaks
from ._pipeline import Source, crop_bounds, run_conversion

PathLike = str | os.PathLike[str]


def open_modisco_array(path: PathLike, role: str) -> NpyRows:
    """Rows of a modisco-format array: a ``.npy`` file, or ``arr_0`` of an ``.npz``."""
    if not Path(path).is_file():
        raise InputError(f"{path}: {role} file not found")
    key = "arr_0" if file_kind(path) == "npz" else None
    return NpyRows(path, key=key, field=key or "array")


def convert_modisco(
    sequences: PathLike,
    attributions: PathLike | Sequence[PathLike],
    out: PathLike,
    *,
    peaks: PathLike | None = None,
    chrom_order: PathLike | None = None,
    region_width: int = 1000,
    chunk_size: int | None = None,
    contrib_dtype: str = "float16",
    overwrite: bool = False,
    progress: bool | None = None,
) -> Regions:
    """Convert modisco-format one-hot sequences and attributions into a regions store.

    Parameters
    ----------
    sequences : path
        ``.npy``/``.npz`` one-hot sequences, shape (N, 4, W) (finemo's ``-s``).
    attributions : path or list of paths
        ``.npy``/``.npz`` hypothetical contributions, each (N, 4, W) (``-a``); several are
        averaged as finemo does (float16 accumulation).
    out : path or URL
        The store to create.
    peaks, chrom_order, region_width, chunk_size, contrib_dtype, overwrite, progress
        As :func:`nemo_dask.regions.convert.convert_chrombpnet_h5`.
    """
    attr_paths = [attributions] if isinstance(attributions, (str, os.PathLike)) \
        else list(attributions)
    if not attr_paths:
        raise InputError("modisco: give at least one attribution file with -a")
    stack = ExitStack()
    try:
        seq_rows = stack.enter_context(open_modisco_array(sequences, "sequences (-s)"))
        attr_rows = [stack.enter_context(open_modisco_array(p, "attributions (-a)"))
                     for p in attr_paths]
        seq_label = f"{sequences} ({seq_rows.field})"
        shape = seq_rows.shape
        if len(shape) != 3 or shape[1] != 4:
            hint = "; transpose it to (N, 4, W)" if len(shape) == 3 and shape[2] == 4 else ""
            raise InputError(f"{seq_label}: shape {shape}, expected one-hot sequences of shape "
                             f"(N, 4, W){hint}")
        for rows, p in zip(attr_rows, attr_paths, strict=True):
            if rows.shape != shape:
                raise InputError(f"{p} ({rows.field}): shape {rows.shape} differs from the "
                                 f"sequences' {shape} ({sequences}); attributions must be "
                                 "(N, 4, W) over the same regions")
        a, b = crop_bounds(shape[2], region_width, seq_label)
        table = (NarrowPeaks(peaks, chrom_order, region_width // 2)
                 if peaks is not None else None)

        def read(start: int, stop: int, _: pl.DataFrame | None) -> tuple[np.ndarray,
                                                                         list[np.ndarray]]:
            seqs = seq_rows.read(start, stop)[:, :, a:b]
            return seqs, [np.ascontiguousarray(r.read(start, stop)[:, :, a:b])
                          for r in attr_rows]

        source = Source(
            n_regions=shape[0], width=region_width, contrib_kind="hypothetical", read=read,
            seq_label=seq_label,
            contrib_labels=[f"{p} ({r.field})" for p, r in zip(attr_paths, attr_rows,
                                                                strict=True)],
            attrs={"source": {"format": "modisco", "sequences": recorded_path(sequences),
                              "attributions": [recorded_path(p) for p in attr_paths],
                              "peaks": recorded_path(peaks),
                              "chrom_order": recorded_path(chrom_order),
                              "input_width": shape[2]},
                   "parameters": {"region_width": region_width, "contrib_dtype": contrib_dtype,
                                  "chunk_size": chunk_size}},
            close=stack.close, crop_start=a,
        )
    except BaseException:
        stack.close()
        raise
    return run_conversion(source, out, peaks=table, chunk_size=chunk_size,
                          contrib_dtype=contrib_dtype, overwrite=overwrite, progress=progress,
                          desc="convert modisco")
