"""The regions a report reads contributions from: a Zarr regions store or a finemo regions.npz.

The report needs the peak table (for coordinates) and, block by block, contribution x one-hot
windows under hits and seqlets. Both inputs are read through one small protocol so that the
hit-averaged CWMs accumulate over blocks whatever the input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import polars as pl

from ..errors import InputError
from ..schema import PEAKS_DTYPES


class RegionBlock(NamedTuple):
    """Regions ``start:stop`` of a regions source.

    Attributes
    ----------
    sequences : ndarray, shape=(n, 4, L), int8
        One-hot sequences.
    contributions : ndarray, shape=(n, 4, L) or (n, L)
        Hypothetical or projected contributions.
    peaks : polars.DataFrame
        The rows of the peak table for these regions.
    """

    sequences: np.ndarray
    contributions: np.ndarray
    peaks: pl.DataFrame


class RegionSource(Protocol):
    """What the report needs of ``nemo_dask.regions.store.Regions`` (and of a regions.npz)."""

    @property
    def n_regions(self) -> int: ...

    @property
    def width(self) -> int: ...

    @property
    def peaks(self) -> pl.DataFrame: ...

    def read_block(self, start: int, stop: int) -> RegionBlock: ...


class NpzRegions:
    """A finemo ``regions.npz`` behind the :class:`RegionSource` protocol.

    The arrays are loaded once (an npz member cannot be memory-mapped); use a regions store for
    inputs that do not fit in memory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise InputError(f"{self.path}: cannot read as a finemo regions.npz ({err})") from err
        for key in ("sequences", "contributions"):
            if key not in arrays:
                raise InputError(
                    f"{self.path}: field {key!r} missing; expected finemo's regions.npz "
                    "(make one with `finemo extract-regions-*`)"
                )
        self._sequences = arrays["sequences"]
        self._contributions = arrays["contributions"]
        n = self._sequences.shape[0]
        if self._sequences.ndim != 3 or self._sequences.shape[1] != 4:
            raise InputError(
                f"{self.path}: field 'sequences' has shape {self._sequences.shape}, expected (N, 4, L)"
            )
        if self._contributions.shape not in {self._sequences.shape, (n, self._sequences.shape[2])}:
            raise InputError(
                f"{self.path}: field 'contributions' has shape {self._contributions.shape}, "
                f"expected {self._sequences.shape} or {(n, self._sequences.shape[2])}"
            )
        if "chr" in arrays:
            peaks = {
                "chr": arrays["chr"],
                "peak_region_start": arrays["start"],
                "peak_name": arrays["peak_name"],
                "peak_id": arrays["peak_id"],
                "chr_id": arrays["chr_id"],
            }
        else:  # finemo's placeholders for a regions file without coordinates
            peaks = {
                "chr": np.full(n, "NA"),
                "peak_region_start": np.zeros(n, dtype=np.int32),
                "peak_name": np.full(n, "NA"),
                "peak_id": np.arange(n, dtype=np.uint32),
                "chr_id": np.arange(n, dtype=np.uint32),
            }
        self._peaks = pl.DataFrame(peaks).cast(PEAKS_DTYPES)  # type: ignore[arg-type]

    @property
    def n_regions(self) -> int:
        """N, the number of regions."""
        return int(self._sequences.shape[0])

    @property
    def width(self) -> int:
        """L, the region width."""
        return int(self._sequences.shape[2])

    @property
    def peaks(self) -> pl.DataFrame:
        """The peak table (schema.PEAKS_DTYPES)."""
        return self._peaks

    def read_block(self, start: int, stop: int) -> RegionBlock:
        """Regions ``start:stop``."""
        return RegionBlock(
            self._sequences[start:stop], self._contributions[start:stop], self._peaks[start:stop]
        )


def open_report_regions(path: str | os.PathLike[str]) -> RegionSource:
    """Open a regions store (path or URL) or a finemo ``regions.npz`` for reading by blocks."""
    p = Path(path)
    if p.suffix == ".npz":
        if not p.is_file():
            raise InputError(f"{p}: regions file not found (-r)")
        return NpzRegions(p)
    from ..regions.store import open_regions

    return open_regions(path)


def iter_blocks(regions: RegionSource, block_size: int) -> Iterator[tuple[int, int, RegionBlock]]:
    """Yield ``(start, stop, block)`` over all regions, ``block_size`` regions at a time."""
    for start in range(0, regions.n_regions, block_size):
        stop = min(start + block_size, regions.n_regions)
        yield start, stop, regions.read_block(start, stop)
