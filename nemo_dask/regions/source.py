"""One entry point for regions: :func:`open_regions` takes a store (path or URL) or a finemo
``regions.npz`` and returns something that reads blocks of them (:class:`RegionSource`)."""

from __future__ import annotations

import os
from typing import Protocol

import polars as pl

from ..errors import InputError
from .npz import NpzRegions
from .store import RegionBlock, Regions, local_path, open_store


class RegionSource(Protocol):
    """What readers need of regions: :class:`~.store.Regions` and :class:`~.npz.NpzRegions`."""

    @property
    def n_regions(self) -> int: ...

    @property
    def width(self) -> int: ...

    @property
    def contrib_kind(self) -> str: ...

    @property
    def peaks(self) -> pl.DataFrame: ...

    def read_block(self, start: int, stop: int) -> RegionBlock: ...


def open_regions(source: str | os.PathLike[str]) -> Regions | NpzRegions:
    """Open regions for reading by blocks.

    Parameters
    ----------
    source : str or PathLike
        A regions store made by ``nemo-dask convert`` (local path, ``file://`` or any fsspec
        URL zarr opens: ``memory://``, ``s3://``), or finemo's ``regions.npz`` (a local file).

    Returns
    -------
    Regions or NpzRegions
        The store, or the npz read lazily (sizes from its headers, arrays on first read).

    Raises
    ------
    InputError
        Nothing is there, the file is not a readable npz, or the store is foreign, incomplete
        or of a newer layout.
    """
    text = os.fspath(source)
    path = local_path(source)
    if path is not None and path.is_file():
        # A store is a directory (or an object-store prefix); the only file input is an npz.
        return NpzRegions(path)
    if path is not None and not path.exists():
        raise InputError(f"{text}: does not exist (no regions store there, no file); pass a "
                         "regions store (`nemo-dask convert <format> ... -o STORE`) or "
                         "finemo's regions.npz")
    return open_store(source)


__all__ = ("RegionSource", "open_regions")
