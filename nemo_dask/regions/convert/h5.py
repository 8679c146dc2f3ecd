"""ChromBPNet and BPNet / tf-atlas contribution H5 files -> regions store (finemo's
``extract-regions-chrombpnet-h5`` and ``extract-regions-bpnet-h5``), read in region slices
with h5py.

finemo reads sequences from the first file only and averages the contributions of all files,
so a fold computed on other or re-ordered regions is averaged in silently. This reader stores the
first file's sequences too, but checks every other file's sequences (inside the kept window)
against them and refuses a mismatch, naming the file and the region. Blosc-compressed files
(ENCODE's, HDF5 filter 32001) need ``hdf5plugin``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ...errors import InputError
from ...storage.urls import recorded_path
from ..store import Regions
from ._peaks import NarrowPeaks
from ._pipeline import Source, crop_bounds, run_conversion

PathLike = str | os.PathLike[str]


def convert_chrombpnet_h5(
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
    """Convert ChromBPNet H5 files (``raw/seq`` (N, 4, W) one-hot and ``shap/seq`` (N, 4, W))
    into a regions store.

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
    return _convert_h5("chrombpnet-h5", h5s, out, peaks=peaks, chrom_order=chrom_order,
                       region_width=region_width, chunk_size=chunk_size,
                       contrib_dtype=contrib_dtype, overwrite=overwrite, progress=progress)


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
    """Convert BPNet / tf-atlas H5 files (``input_seqs`` (N, W, 4) one-hot and ``hyp_scores``
    (N, W, 4)) into a regions store.

    The parameters, the averaging of several files and the checks are those of
    :func:`convert_chrombpnet_h5`; only the datasets read and their layout (bases last) differ.
    """
    return _convert_h5("bpnet-h5", h5s, out, peaks=peaks, chrom_order=chrom_order,
                       region_width=region_width, chunk_size=chunk_size,
                       contrib_dtype=contrib_dtype, overwrite=overwrite, progress=progress)


def _open_h5(path: Path, stack: ExitStack) -> Any:
    import h5py
    import hdf5plugin  # noqa: F401  (registers the blosc/zstd filters ENCODE files use)

    if not path.is_file():
        raise InputError(f"{path}: contributions file (-c) not found")
    try:
        return stack.enter_context(h5py.File(path, "r"))
    except OSError as err:
        raise InputError(f"{path}: cannot open as HDF5 ({err}); the file is damaged, truncated "
                         "or not an H5 file") from None


def _dataset(h5: Any, path: Path, name: str, fmt: str) -> Any:
    import h5py

    obj = h5.get(name)
    if not isinstance(obj, h5py.Dataset):
        found = []
        h5.visititems(lambda key, o: found.append(key) if isinstance(o, h5py.Dataset) else None)
        raise InputError(f"{path}: dataset {name!r} missing (datasets found: {found[:8]}); "
                         f"is this a {fmt} contributions file? (chrombpnet-h5 reads raw/seq and "
                         "shap/seq, bpnet-h5 reads input_seqs and hyp_scores)")
    return obj


def _convert_h5(fmt: str, h5s: PathLike | Sequence[PathLike], out: PathLike, *,
                peaks: PathLike | None, chrom_order: PathLike | None, region_width: int,
                chunk_size: int | None, contrib_dtype: str, overwrite: bool,
                progress: bool | None) -> Regions:
    """Convert ChromBPNet (``fmt="chrombpnet-h5"``) or BPNet (``"bpnet-h5"``) H5 files."""
    seq_name, contrib_name, channels_last = {
        "chrombpnet-h5": ("raw/seq", "shap/seq", False),
        "bpnet-h5": ("input_seqs", "hyp_scores", True),
    }[fmt]
    paths = [Path(p) for p in ([h5s] if isinstance(h5s, (str, os.PathLike)) else h5s)]
    if not paths:
        raise InputError(f"{fmt}: give at least one contributions file with -c")
    stack = ExitStack()
    try:
        files = [_open_h5(p, stack) for p in paths]
        seq_ds = _dataset(files[0], paths[0], seq_name, fmt)
        contrib_ds = [_dataset(f, p, contrib_name, fmt) for f, p in zip(files, paths, strict=True)]
        other_seqs = [_dataset(f, p, seq_name, fmt) for f, p in zip(files[1:], paths[1:],
                                                                    strict=True)]
        seq_label = f"{paths[0]} field {seq_name!r}"
        shape = tuple(seq_ds.shape)
        layout = "(N, L, 4)" if channels_last else "(N, 4, L)"
        if len(shape) != 3 or shape[2 if channels_last else 1] != 4:
            raise InputError(f"{seq_label}: shape {shape}, expected {layout} one-hot sequences")
        for ds, p in zip(contrib_ds, paths, strict=True):
            if tuple(ds.shape) != shape:
                raise InputError(f"{p} field {contrib_name!r}: shape {tuple(ds.shape)} differs "
                                 f"from the sequences' {shape} ({seq_label}); every file must "
                                 "hold the same regions at the same width")
        for ds, p in zip(other_seqs, paths[1:], strict=True):
            if tuple(ds.shape) != shape:
                raise InputError(f"{p} field {seq_name!r}: shape {tuple(ds.shape)} differs "
                                 f"from {shape} in {paths[0]}; every contributions file (-c) "
                                 "must hold the same regions in the same order")
        input_width = shape[1] if channels_last else shape[2]
        a, b = crop_bounds(input_width, region_width, seq_label)
        table = (NarrowPeaks(peaks, chrom_order, region_width // 2)
                 if peaks is not None else None)

        def read(start: int, stop: int, _: pl.DataFrame | None) -> tuple[Any, list[Any]]:
            try:
                if channels_last:
                    seqs = seq_ds[start:stop, a:b, :].swapaxes(1, 2)
                    contribs = [ds[start:stop, a:b, :].swapaxes(1, 2) for ds in contrib_ds]
                else:
                    seqs = seq_ds[start:stop, :, a:b]
                    contribs = [ds[start:stop, :, a:b] for ds in contrib_ds]
                others = [ds[start:stop, a:b, :].swapaxes(1, 2) if channels_last
                          else ds[start:stop, :, a:b] for ds in other_seqs]
            except (OSError, ValueError, RuntimeError) as err:
                raise InputError(f"{fmt}: reading regions {start}:{stop} failed ({err}); a file "
                                 "is damaged or truncated, re-create it") from None
            for other, p in zip(others, paths[1:], strict=True):
                _check_same_sequences(seqs, other, start, p, seq_name, paths[0])
            return seqs, [np.ascontiguousarray(c) for c in contribs]

        source = Source(
            n_regions=shape[0], width=region_width, contrib_kind="hypothetical", read=read,
            seq_label=seq_label,
            contrib_labels=[f"{p} field {contrib_name!r}" for p in paths],
            attrs={"source": {"format": fmt, "h5s": [recorded_path(p) for p in paths],
                              "peaks": recorded_path(peaks),
                              "chrom_order": recorded_path(chrom_order),
                              "input_width": input_width},
                   "parameters": {"region_width": region_width, "contrib_dtype": contrib_dtype,
                                  "chunk_size": chunk_size}},
            close=stack.close, crop_start=a,
        )
    except BaseException:
        stack.close()
        raise
    return run_conversion(source, out, peaks=table, chunk_size=chunk_size,
                          contrib_dtype=contrib_dtype, overwrite=overwrite, progress=progress,
                          desc=f"convert {fmt}")


def _check_same_sequences(first: np.ndarray, other: np.ndarray, offset: int, path: Path,
                          field: str, first_path: Path) -> None:
    """Refuse a contributions file whose sequences differ from the first file's."""
    differs = (np.asarray(first) != np.asarray(other)).reshape(len(first), -1).any(axis=1)
    if differs.any():
        region = offset + int(np.argmax(differs))
        raise InputError(f"{path} field {field!r}: region {region} holds another sequence than "
                         f"in {first_path}; every contributions file (-c) must hold the same "
                         f"regions in the same order ({int(differs.sum())} regions differ in "
                         f"{offset}-{offset + len(first) - 1}); averaging would mix regions")
