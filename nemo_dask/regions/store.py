"""The regions store: a chunked Zarr v3 group that every worker reads its own block from.

Layout (all arrays chunked along regions only, ``chunk_size`` regions per chunk)::

    STORE/zarr.json                attrs["nemo_dask_regions"]: format version, width, contribution
                                   kind, source files, creation parameters, "complete" (set last)
    STORE/sequences                (N, 4, L) int8 one-hot, A C G T; an all-zero column is an N base
    STORE/contributions            (N, 4, L) hypothetical or (N, L) projected, float16 by default
    STORE/peaks/chr, peak_name     (N,) UTF-8 strings, with ``*_isnull`` (N,) bool masks so that a
                                   null and the string "None" both round-trip exactly
    STORE/peaks/peak_region_start  (N,) int32
    STORE/peaks/peak_id, chr_id    (N,) uint32

Stores written without peak coordinates have no ``peaks`` group; their peak table follows
finemo's ``load_regions_npz`` placeholders (chr and peak_name "NA", chr_id = peak_id = row,
peak_region_start 0). Converters (``nemo_dask.regions.convert``) write a store once, chunk-aligned, and
mark it complete last; :func:`open_store` refuses a store without that mark. Every array is read
through :meth:`Regions.read_array`, which checks each chunk against the CRC-32 the conversion
recorded (:mod:`nemo_dask.regions.checksums`): a missing or damaged chunk is an error naming it,
never zeros.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from ..errors import InputError
from ..schema import PEAKS_DTYPES
from ..storage.urls import is_url, localize

#: Key of the store's attributes in the group's ``zarr.json``.
ATTRS_KEY = "nemo_dask_regions"
#: Layout version written by this module; readers accept versions up to it.
FORMAT_VERSION = 1
#: Contribution kinds and the contribution array's number of dimensions.
CONTRIB_KINDS = {"hypothetical": 3, "projected": 2}
#: Columns of the peak table stored as strings (each with a ``<name>_isnull`` mask).
STRING_COLUMNS = ("chr", "peak_name")
#: Target uncompressed bytes of one chunk (sequences + contributions) for the default chunk size.
CHUNK_TARGET_BYTES = 4 << 20


class RegionBlock(NamedTuple):
    """Regions ``start:stop`` of a store, as numpy and polars.

    Attributes
    ----------
    sequences : ndarray, shape=(n, 4, L), int8
        One-hot sequences (an all-zero column is an N base).
    contributions : ndarray, shape=(n, 4, L) or (n, L)
        Hypothetical or projected contributions, in the stored dtype (float16 by default).
    peaks : polars.DataFrame
        Rows ``start:stop`` of the peak table (columns of ``schema.PEAKS_DTYPES``).
    """

    sequences: np.ndarray
    contributions: np.ndarray
    peaks: pl.DataFrame


def default_chunk_size(width: int, contrib_kind: str, itemsize: int = 2) -> int:
    """Regions per chunk: the largest power of two whose chunk stays under ~4 MiB uncompressed.

    Chunks of a few MB read efficiently from disks and object stores while keeping many chunks
    (hence tasks) for a few thousand regions; 256 for hypothetical float16 at L = 1000.
    """
    per_region = 4 * width + (4 * width if contrib_kind == "hypothetical" else width) * itemsize
    n = max(1, CHUNK_TARGET_BYTES // max(per_region, 1))
    return int(min(1 << 16, 1 << (int(n).bit_length() - 1)))


def local_path(path_or_url: str | os.PathLike[str]) -> Path | None:
    """The local filesystem path of a path or ``file://`` URL; None for other URLs."""
    if is_url(path_or_url):
        return None
    return Path(os.path.expanduser(os.fspath(localize(path_or_url)))).absolute()


def store_location(path_or_url: str | os.PathLike[str]) -> str:
    """The string zarr opens: an absolute local path, or the URL unchanged."""
    path = local_path(path_or_url)
    return str(path) if path is not None else os.fspath(path_or_url)


def placeholder_peaks(start: int, stop: int) -> pl.DataFrame:
    """finemo's peak table for regions without coordinates (``load_regions_npz``), rows start:stop."""
    ids = np.arange(start, stop, dtype=np.uint32)
    return pl.DataFrame(
        {
            "chr": pl.Series(["NA"] * (stop - start), dtype=pl.String),
            "peak_region_start": pl.Series(np.zeros(stop - start, dtype=np.int32)),
            "peak_name": pl.Series(["NA"] * (stop - start), dtype=pl.String),
            "peak_id": pl.Series(ids),
            "chr_id": pl.Series(ids.copy()),
        }
    )


class Regions:
    """An open regions store: sizes, peak table, lazy dask arrays, and block reads.

    Pickles as its location only (the zarr handles are reopened lazily), so it can be shipped
    to Dask workers; a ``memory://`` store is only visible inside the process that wrote it.

    Attributes
    ----------
    url : str
        Absolute local path or fsspec URL of the store.
    n_regions, width, chunk_size : int
        N, L and regions per chunk along axis 0.
    contrib_kind : str
        ``"hypothetical"`` (contributions (N, 4, L)) or ``"projected"`` (compact (N, L)).
    has_peaks : bool
        Whether the store holds genomic coordinates (else finemo's placeholders).
    attrs : dict
        The store's attributes (format version, sources, creation parameters).
    """

    def __init__(self, url: str, attrs: dict[str, Any]) -> None:
        self.url = url
        self.attrs = attrs
        self.n_regions = int(attrs["n_regions"])
        self.width = int(attrs["width"])
        self.contrib_kind = str(attrs["contrib_kind"])
        self.chunk_size = int(attrs["chunk_size"])
        self.has_peaks = bool(attrs["has_peaks"])
        self._group: Any = None
        self._peaks: pl.DataFrame | None = None
        # Per process, never pickled: open arrays, recorded chunk checksums, the CRC-32 of a
        # chunk of fill values, and the last verified rows of each array (regions/checksums.py).
        self._arrays: dict[str, Any] = {}
        self._checksums: dict[str, np.ndarray] = {}
        self._fill_crc32: dict[tuple[str, tuple[int, ...]], int] = {}
        self._kept: dict[str, tuple[int, int, np.ndarray] | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "attrs": self.attrs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["attrs"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return (f"Regions({self.url!r}, n_regions={self.n_regions}, width={self.width}, "
                f"contrib_kind={self.contrib_kind!r}, chunk_size={self.chunk_size})")

    def __len__(self) -> int:
        return self.n_regions

    @property
    def group(self) -> Any:
        """The zarr group (opened read-only on first use)."""
        if self._group is None:
            import zarr

            self._group = zarr.open_group(self.url, mode="r", zarr_format=3)
        return self._group

    @property
    def contrib_dtype(self) -> np.dtype:
        """dtype of the stored contributions (float16 unless converted with float32)."""
        return np.dtype(self.attrs["contrib_dtype"])

    @property
    def verified(self) -> bool:
        """Whether reads are checked against chunk checksums (stores converted before they
        were recorded are read unverified)."""
        from .checksums import verified

        return verified(self.attrs)

    @property
    def sequences(self) -> Any:
        """dask array, shape=(N, 4, L), int8, one chunk per stored chunk (reads verified)."""
        return self._dask("sequences")

    @property
    def contributions(self) -> Any:
        """dask array, shape=(N, 4, L) or (N, L), stored dtype (reads verified)."""
        return self._dask("contributions")

    def _dask(self, path: str) -> Any:
        import dask.array as da

        array = self.zarr_array(path)
        return da.from_array(_RowReader(self, path, array), chunks=array.chunks,
                             asarray=False, name=f"{path}-{self.url}-{self.attrs.get('created_at')}")

    def zarr_array(self, path: str) -> Any:
        """The zarr array at ``path`` (opened once: each open reads its metadata)."""
        if path not in self._arrays:
            self._arrays[path] = self.group[path]
        return self._arrays[path]

    def read_array(self, path: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the array at ``path`` (``"sequences"``, ``"peaks/chr"``,
        ``"tiling/own_start"``, ...), each chunk checked against its recorded CRC-32.

        Raises
        ------
        CorruptDataError
            A chunk is missing or damaged (see :func:`nemo_dask.regions.checksums.read_rows`).
        """
        from .checksums import read_rows

        return read_rows(self, path, start, stop)

    @property
    def peaks(self) -> pl.DataFrame:
        """The peak table (``schema.PEAKS_DTYPES``), row i = region i; read once and cached."""
        if self._peaks is None:
            self._peaks = self._read_peaks(0, self.n_regions)
        return self._peaks

    def read_block(self, start: int, stop: int) -> RegionBlock:
        """Regions ``start:stop`` as numpy; reads only the chunks that hold them.

        Parameters
        ----------
        start, stop : int
            Row range, ``0 <= start <= stop <= n_regions``.
        """
        if not (0 <= start <= stop <= self.n_regions):
            raise InputError(f"{self.url}: block {start}:{stop} is outside the store's "
                             f"{self.n_regions} regions")
        sequences = self.read_array("sequences", start, stop)
        contributions = self.read_array("contributions", start, stop)
        peaks = self._peaks[start:stop] if self._peaks is not None else self._read_peaks(start, stop)
        return RegionBlock(sequences, contributions, peaks)

    def _read_peaks(self, start: int, stop: int) -> pl.DataFrame:
        if not self.has_peaks:
            return placeholder_peaks(start, stop)
        columns: dict[str, pl.Series] = {}
        for name, dtype in PEAKS_DTYPES.items():
            values = self.read_array(f"peaks/{name}", start, stop)
            if name in STRING_COLUMNS:
                values = np.asarray(values).astype(object)
                values[np.asarray(self.read_array(f"peaks/{name}_isnull", start, stop),
                                  dtype=bool)] = None
                columns[name] = pl.Series(name, values.tolist(), dtype=dtype)
            else:
                columns[name] = pl.Series(name, np.asarray(values)).cast(dtype)
        return pl.DataFrame(columns)


class _RowReader:
    """An array of a store as dask's ``from_array`` wants it: every slice read verified."""

    def __init__(self, regions: Regions, path: str, array: Any) -> None:
        self.regions, self.path = regions, path
        self.shape, self.dtype, self.ndim = tuple(array.shape), array.dtype, len(array.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if key else slice(None)
        start, stop, step = rows.indices(self.shape[0]) if isinstance(rows, slice) \
            else (int(rows), int(rows) + 1, 1)
        data = self.regions.read_array(self.path, start, max(start, stop))[::step]
        if not isinstance(rows, slice):
            data = data[0]
        return data[(slice(None), *key[1:])] if isinstance(rows, slice) else data[key[1:]]


def open_store(path_or_url: str | os.PathLike[str]) -> Regions:
    """Open a regions store made by ``nemo-dask convert`` (:func:`nemo_dask.open_regions`
    also takes finemo's regions.npz).

    Parameters
    ----------
    path_or_url : str or PathLike
        Local path, ``file://`` URL or any fsspec URL zarr can open (``memory://``, ``s3://``).

    Raises
    ------
    InputError
        The location holds no store, an incomplete (interrupted) one, or one of a newer layout.
    """
    import zarr

    url = store_location(path_or_url)
    text = os.fspath(path_or_url)
    path = local_path(path_or_url)
    if path is None:
        from ..storage.urls import filesystem

        filesystem(url)  # a missing s3fs (gcsfs, ...) is one line, not zarr's traceback
    if path is not None and path.is_file():
        raise InputError(f"{text}: is a file, not a regions store (for finemo's regions.npz "
                         "use open_regions, or convert it: `nemo-dask convert npz -r FILE -o "
                         "STORE`)")
    try:
        group = zarr.open_group(url, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as err:
        raise InputError(f"{text}: no regions store there ({type(err).__name__}); make one with "
                         "`nemo-dask convert <format> ... -o STORE`") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{text}: cannot open as a Zarr v3 regions store ({err})") from None
    attrs = group.attrs.asdict().get(ATTRS_KEY)
    if not isinstance(attrs, dict):
        raise InputError(f"{text}: a Zarr group but not a nemo_dask regions store (no "
                         f"'{ATTRS_KEY}' attribute); make one with `nemo-dask convert`")
    if not attrs.get("complete"):
        raise InputError(f"{text}: incomplete regions store (its conversion was interrupted or "
                         "failed); convert again with --overwrite")
    version = int(attrs.get("format_version", -1))
    if not 1 <= version <= FORMAT_VERSION:
        raise InputError(f"{text}: regions store format version {version} is not supported by "
                         f"this nemo_dask (reads 1..{FORMAT_VERSION}); upgrade nemo_dask")
    regions = Regions(url, attrs)
    regions._group = group
    _check_layout(regions, text)
    return regions


def _check_layout(regions: Regions, text: str) -> None:
    """The arrays must agree with the attributes (a hand-edited or damaged store fails here)."""
    group = regions.group
    n, width = regions.n_regions, regions.width
    expected = {"sequences": (n, 4, width),
                "contributions": (n, 4, width) if regions.contrib_kind == "hypothetical"
                else (n, width)}
    if regions.contrib_kind not in CONTRIB_KINDS:
        raise InputError(f"{text}: attribute contrib_kind is {regions.contrib_kind!r}, expected "
                         f"one of {sorted(CONTRIB_KINDS)}")
    for name, shape in expected.items():
        try:
            found = tuple(group[name].shape)
        except KeyError:
            raise InputError(f"{text}: array {name!r} is missing; convert the inputs again "
                             "with --overwrite") from None
        if found != shape:
            raise InputError(f"{text}: array {name!r} has shape {found}, the store's attributes "
                             f"say {shape}; convert the inputs again with --overwrite")
