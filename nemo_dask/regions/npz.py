"""A finemo ``regions.npz`` read like a regions store (:class:`NpzRegions`).

Sizes come from the arrays' headers without loading them; the arrays are loaded on the first
block read (an npz member cannot be memory-mapped), so a regions store is the input for data
that does not fit in memory. ``call_hits`` converts an npz into ``OUT/regions.zarr`` instead.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InputError
from ..schema import PEAKS_DTYPES
from .store import RegionBlock, placeholder_peaks


def _header_shape(z: zipfile.ZipFile, name: str, path: Path) -> tuple[int, ...]:
    try:
        with z.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            return tuple(reader(f)[0])
    except KeyError:
        raise InputError(f"{path}: field {name!r} missing; expected finemo's regions.npz "
                         "(make one with `finemo extract-regions-*`)") from None


class NpzRegions:
    """A finemo ``regions.npz`` with the interface of :class:`~nemo_dask.regions.store.Regions`
    that readers use: ``n_regions``, ``width``, ``contrib_kind``, ``peaks``, ``read_block``.

    Raises
    ------
    InputError
        The file is not a readable npz, lacks ``sequences`` or ``contributions``, or their
        shapes are not (N, 4, L) and (N, 4, L) or (N, L).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()
        self.url = str(self.path)
        try:
            with zipfile.ZipFile(self.path) as z:
                seq_shape = _header_shape(z, "sequences", self.path)
                contrib_shape = _header_shape(z, "contributions", self.path)
        except (OSError, zipfile.BadZipFile, ValueError) as err:
            raise InputError(f"{self.path} is not a readable .npz file ({err}); is it "
                             "truncated?") from None
        if len(seq_shape) != 3 or seq_shape[1] != 4:
            raise InputError(f"{self.path}: field 'sequences' has shape {seq_shape}, expected "
                             "(N, 4, L)")
        n, _, width = seq_shape
        if contrib_shape not in {seq_shape, (n, width)}:
            raise InputError(f"{self.path}: field 'contributions' has shape {contrib_shape}, "
                             f"expected {seq_shape} or {(n, width)}")
        self.n_regions, self.width = int(n), int(width)
        self.contrib_kind = "hypothetical" if len(contrib_shape) == 3 else "projected"
        self._arrays: dict[str, np.ndarray] | None = None
        self._peaks: pl.DataFrame | None = None

    def __repr__(self) -> str:
        return (f"NpzRegions({self.url!r}, n_regions={self.n_regions}, width={self.width}, "
                f"contrib_kind={self.contrib_kind!r})")

    def __len__(self) -> int:
        return self.n_regions

    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            try:
                with np.load(self.path) as data:
                    self._arrays = {k: data[k] for k in data.files}
            except (OSError, ValueError, zipfile.BadZipFile) as err:
                raise InputError(f"{self.path}: cannot read as a finemo regions.npz ({err})"
                                 ) from err
        return self._arrays

    @property
    def peaks(self) -> pl.DataFrame:
        """The peak table (``schema.PEAKS_DTYPES``), row i = region i; finemo's placeholders
        when the file has no coordinates."""
        if self._peaks is None:
            arrays = self._load()
            if "chr" in arrays:
                self._peaks = pl.DataFrame({
                    "chr": arrays["chr"], "peak_region_start": arrays["start"],
                    "peak_name": arrays["peak_name"], "peak_id": arrays["peak_id"],
                    "chr_id": arrays["chr_id"],
                }).cast(PEAKS_DTYPES)  # type: ignore[arg-type]
            else:
                self._peaks = placeholder_peaks(0, self.n_regions)
        return self._peaks

    def read_block(self, start: int, stop: int) -> RegionBlock:
        """Regions ``start:stop`` (the whole file is loaded on the first call)."""
        if not (0 <= start <= stop <= self.n_regions):
            raise InputError(f"{self.url}: block {start}:{stop} is outside the file's "
                             f"{self.n_regions} regions")
        arrays = self._load()
        return RegionBlock(arrays["sequences"][start:stop],
                           arrays["contributions"][start:stop], self.peaks[start:stop])
