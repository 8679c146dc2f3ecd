"""BPNet / tf-atlas contribution H5 files -> regions store (finemo's ``extract-regions-bpnet-h5``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..store import Regions
from ._h5 import convert_h5

PathLike = str | os.PathLike[str]


def convert_bpnet_h5(
    h5s: PathLike | Sequence[PathLike],
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
    """Convert BPNet / tf-atlas H5 files (``input_seqs`` (N, W, 4) one-hot and ``hyp_scores`` (N, W, 4)) into a regions store.

    The centre ``region_width`` bp of each stored window are kept; several files are averaged
    as finemo does (float16 accumulation); sequences come from the first file.

    Parameters
    ----------
    h5s : path or list of paths
        One or more H5 files over the same regions (finemo's ``-c``).
    out : path or URL
        The store to create.
    peaks : path, optional
        narrowPeak file, one row per region in the same order (``-p``); without it the store
        has no coordinates (finemo's placeholders).
    chrom_order : path, optional
        Chromosome order file (``-C``).
    region_width : int
        Even width L (``-w``), at most the stored width W.
    chunk_size : int, optional
        Regions per chunk (default: ~4 MiB chunks).
    contrib_dtype : {"float16", "float32"}
        Stored contribution dtype.
    overwrite : bool
        Replace an existing store at ``out``.
    progress : bool, optional
        Progress bar; default on when stderr is a terminal.
    """
    return convert_h5("bpnet-h5", h5s, out, peaks=peaks, chrom_order=chrom_order,
                      region_width=region_width, chunk_size=chunk_size,
                      contrib_dtype=contrib_dtype, overwrite=overwrite, progress=progress)
