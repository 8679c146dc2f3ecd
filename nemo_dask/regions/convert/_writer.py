"""Writing a regions store chunk by chunk, so that a conversion never holds more than one chunk.

A local store is written under a hidden temporary name beside the target (beside a symlink's
target, so the link stays a link) and renamed into place once complete
(:mod:`nemo_dask.storage.outputs` names the temporary and checks what is at ``-o``). Object
stores have no rename: a new store at an empty URL prefix is written in place; one that
replaces an existing store (``--overwrite``) is written completely under a hidden sibling
prefix (``.<name>.tmp-<hex>``), and only then is the old store deleted and the new one copied to the
final prefix (server-side copies), its root ``zarr.json`` -- which carries the complete mark --
last, and the temporary prefix removed. So the old store is never destroyed before a complete
new one exists; if the swap itself is interrupted, the final prefix reads as incomplete (refused
by ``open_store``) and the complete new store is still under the temporary prefix. Any store
(local or fsspec URL) gets its ``complete`` attribute last, and
:func:`nemo_dask.regions.store.open_store` refuses stores without it. So an interrupted conversion never
leaves a store that looks complete.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ... import version
from ...errors import InputError, OutputExistsError
from ...schema import PEAKS_DTYPES
from ...storage.outputs import output_dir, replace_directory
from ...storage.temporary import temporary_name
from ...storage.urls import location
from ..checksums import CHECKSUM_ATTR, CHECKSUM_RECORD, ChecksumRecorder
from ..store import (
    ATTRS_KEY,
    CONTRIB_KINDS,
    FORMAT_VERSION,
    STRING_COLUMNS,
    Regions,
    default_chunk_size,
    local_path,
    open_store,
    store_location,
)

#: Contribution dtypes a store may hold.
CONTRIB_DTYPES = ("float16", "float32")
#: Zarr dtypes of the peak-table arrays (``str``: variable-length UTF-8).
_PEAK_ARRAY_DTYPES: dict[str, Any] = {"chr": str, "peak_region_start": "int32",
                                      "peak_name": str, "peak_id": "uint32", "chr_id": "uint32"}


def resolve_chunk_size(chunk_size: int | None, n_regions: int, width: int, kind: str,
                       dtype: str) -> int:
    """The chunk size to write: the user's, else the default, never more than N."""
    if chunk_size is None:
        chunk_size = default_chunk_size(width, kind, np.dtype(dtype).itemsize)
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) \
            or chunk_size < 1:
        raise InputError(f"chunk size must be an integer >= 1, got {chunk_size!r}")
    return int(max(1, min(int(chunk_size), n_regions)))


def check_contrib_dtype(dtype: str) -> str:
    """Validate the ``contrib_dtype`` option."""
    name = np.dtype(dtype).name if isinstance(dtype, (type, np.dtype)) else str(dtype)
    if name not in CONTRIB_DTYPES:
        raise InputError(f"contribution dtype must be one of {CONTRIB_DTYPES}, got {dtype!r}")
    return name


def check_target(out: str | os.PathLike[str], overwrite: bool) -> None:
    """Refuse to write over an existing store unless ``overwrite``; never delete a non-store.

    A local ``out`` that is (or links to) a file, device or FIFO is refused whatever
    ``overwrite`` says; a symlink to a store (or to nothing) is followed.
    """
    if os.fspath(out) == "-":
        output_dir(out, "regions store")  # raises: a store is a directory
    path = local_path(out)
    if path is not None:
        path = output_dir(path, "regions store")
        if not path.exists():
            return
        if _replaceable(path):
            if overwrite:
                return
            raise OutputExistsError(f"{out}: already exists; pass --overwrite (overwrite=True) "
                                    "to replace it, or choose another -o")
        raise OutputExistsError(f"{out}: exists and is not a nemo_dask regions store (nor an "
                                "empty directory), so --overwrite would not replace it either; "
                                "choose another -o")
    fs, root = _fsspec(store_location(out))
    if not fs.exists(root):
        return
    if fs.find(root) and not _is_store_dir(location(store_location(out))):
        raise OutputExistsError(f"{out}: exists and is not a nemo_dask regions store, so "
                                "--overwrite would not replace it either; choose another -o")
    if not overwrite:
        raise OutputExistsError(f"{out}: already exists; pass --overwrite (overwrite=True) to "
                                "replace it, or choose another -o")


def _replaceable(path: Path) -> bool:
    """An empty directory or a regions store: what ``--overwrite`` may replace."""
    return path.is_dir() and not path.is_symlink() and (
        not any(path.iterdir()) or _is_store_dir(path))


def _is_store_dir(path: Path) -> bool:
    import json

    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and ATTRS_KEY in meta.get("attributes", {})


def _fsspec(url: str) -> tuple[Any, str]:
    from ...storage.urls import filesystem

    return filesystem(url)


class StoreWriter:
    """Creates the arrays of a store and writes chunk-aligned slices of them, once each.

    Parameters
    ----------
    out : str or PathLike
        Target path or fsspec URL.
    n_regions, width : int
        N and L.
    contrib_kind : str
        ``"hypothetical"`` or ``"projected"``.
    chunk_size : int
        Regions per chunk (already resolved).
    contrib_dtype : str
        ``"float16"`` or ``"float32"``.
    has_peaks : bool
        Whether a peak table is written.
    attrs : dict
        Extra attributes (source, parameters), merged into the store's attributes.
    extra_arrays : dict, optional
        Extra (N,) arrays, name -> dtype, created under the group ``tiling/``.
    """

    def __init__(self, out: str | os.PathLike[str], *, n_regions: int, width: int,
                 contrib_kind: str, chunk_size: int, contrib_dtype: str, has_peaks: bool,
                 attrs: dict[str, Any], extra_arrays: dict[str, str] | None = None) -> None:
        assert contrib_kind in CONTRIB_KINDS
        self.out = out
        self.final = store_location(out)
        self.local = local_path(out)
        if self.local is not None:
            # A symlink's target is replaced, beside it (one file system for the rename).
            self.local = output_dir(self.local, "regions store")
            self.local.parent.mkdir(parents=True, exist_ok=True)
            self.target = str(self.local.parent / temporary_name(self.local.name))
        else:
            fs, root = _fsspec(self.final)
            self.fs, self.root = fs, root.rstrip("/")
            self.staging: str | None = None
            if fs.exists(self.root):  # check_target allowed it: a store, with overwrite
                parent, _, name = self.root.rpartition("/")
                self.staging = f"{parent}/{temporary_name(name)}" if parent \
                    else temporary_name(name)
                self.target = fs.unstrip_protocol(self.staging)
            else:
                self.target = self.final
        self.n_regions, self.width, self.chunk_size = n_regions, width, chunk_size
        self.n_written = 0  #: regions written so far (chunks are written in order)
        self.attrs = {
            "format_version": FORMAT_VERSION, "n_regions": n_regions, "width": width,
            "contrib_kind": contrib_kind, "contrib_dtype": contrib_dtype,
            "chunk_size": chunk_size, "has_peaks": has_peaks, **attrs,
            "created_by": f"nemo_dask {version()}",
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            CHECKSUM_ATTR: CHECKSUM_RECORD,
            "complete": False,
        }
        self.checksums = ChecksumRecorder()
        try:
            self._create(extra_arrays)
        except BaseException:
            self.abort()  # a store cut short by a full disk is not left behind
            raise

    def _create(self, extra_arrays: dict[str, str] | None) -> None:
        """The store's group, attributes and empty arrays, under ``self.target``."""
        import zarr
        from zarr.codecs import BloscCodec

        n_regions, width, chunk_size = self.n_regions, self.width, self.chunk_size
        contrib_kind, contrib_dtype = self.attrs["contrib_kind"], self.attrs["contrib_dtype"]
        has_peaks = self.attrs["has_peaks"]
        # Every chunk is written, all-zero ones too: zarr reads an absent chunk as the fill
        # value, so an absent chunk must always mean a lost one (regions/checksums.py).
        every = {"write_empty_chunks": True}
        self.group = zarr.open_group(self.target, mode="w", zarr_format=3)
        self.group.attrs[ATTRS_KEY] = self.attrs
        # bitshuffle + zstd: one-hot int8 and float16 both compress well and round-trip exactly.
        codec = [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")]
        c = chunk_size
        self.sequences = self.group.create_array(
            "sequences", shape=(n_regions, 4, width), chunks=(c, 4, width), dtype="int8",
            compressors=codec, fill_value=0, dimension_names=("region", "base", "position"),
            config=every)
        cshape = (n_regions, 4, width) if contrib_kind == "hypothetical" else (n_regions, width)
        cchunks = (c, 4, width) if contrib_kind == "hypothetical" else (c, width)
        cdims = ("region", "base", "position") if contrib_kind == "hypothetical" \
            else ("region", "position")
        self.contributions = self.group.create_array(
            "contributions", shape=cshape, chunks=cchunks, dtype=contrib_dtype,
            compressors=codec, fill_value=0, dimension_names=cdims, config=every)
        self.peaks: dict[str, Any] = {}
        if has_peaks:
            pg = self.group.create_group("peaks")
            for name, dtype in _PEAK_ARRAY_DTYPES.items():
                self.peaks[name] = pg.create_array(name, shape=(n_regions,), chunks=(c,),
                                                   dtype=dtype, dimension_names=("region",),
                                                   config=every)
                if name in STRING_COLUMNS:
                    self.peaks[f"{name}_isnull"] = pg.create_array(
                        f"{name}_isnull", shape=(n_regions,), chunks=(c,), dtype="bool",
                        fill_value=False, dimension_names=("region",), config=every)

        self.extra: dict[str, Any] = {}
        if extra_arrays:
            tg = self.group.create_group("tiling")
            for name, dtype in extra_arrays.items():
                self.extra[name] = tg.create_array(name, shape=(n_regions,), chunks=(c,),
                                                   dtype=dtype, dimension_names=("region",),
                                                   config=every)

    def write_extra(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Write the extra arrays of regions ``start:start + n`` (a chunk, as :meth:`write`)."""
        assert set(arrays) == set(self.extra)
        for name, values in arrays.items():
            self._put(self.extra[name], f"tiling/{name}", start, values)

    def write(self, start: int, sequences: np.ndarray, contributions: np.ndarray,
              peaks: pl.DataFrame | None) -> None:
        """Write regions ``start:start + n``; ``start`` must be a chunk boundary."""
        n = sequences.shape[0]
        assert start % self.chunk_size == 0 and (n == self.chunk_size
                                                 or start + n == self.n_regions)
        self._put(self.sequences, "sequences", start, sequences)
        self._put(self.contributions, "contributions", start, contributions)
        if self.peaks:
            assert peaks is not None and peaks.height == n
            for name, dtype in PEAKS_DTYPES.items():
                col = peaks.get_column(name)
                if name in STRING_COLUMNS:
                    isnull = col.is_null().to_numpy()
                    self._put(self.peaks[f"{name}_isnull"], f"peaks/{name}_isnull", start, isnull)
                    values = np.array(col.fill_null("").to_list(), dtype=object)
                    self._put(self.peaks[name], f"peaks/{name}", start, values)
                else:
                    self._put(self.peaks[name], f"peaks/{name}", start,
                              col.cast(dtype).to_numpy())
        self.n_written = start + n

    def _put(self, array: Any, path: str, start: int, values: np.ndarray) -> None:
        """Write one chunk and record the CRC-32 of its values as the array holds them."""
        if array.dtype.kind not in "OUST":  # numbers: as stored (strings are checked as str)
            values = np.asarray(values).astype(array.dtype, copy=False)
        array[start:start + len(values)] = values
        self.checksums.add(path, start // self.chunk_size, values)

    def finish(self, extra_attrs: dict[str, Any]) -> Regions:
        """Mark the store complete (last write), move it into place, and open it."""
        self.checksums.write(self.group, -(-self.n_regions // self.chunk_size))
        self.attrs.update(extra_attrs)
        del self.attrs["complete"]
        self.attrs["complete"] = True  # listed last, written last
        self.group.attrs[ATTRS_KEY] = self.attrs
        if self.local is not None:
            # The old store (checked: an empty directory or a store) goes once the new one is in.
            replace_directory(self.target, self.local, _replaceable, "regions store")
        elif self.staging is not None:
            self._swap_remote()
        return open_store(self.final)

    def _swap_remote(self) -> None:
        """Replace the old object-store store by the complete one under ``self.staging``."""
        fs, src, dst = self.fs, self.staging, self.root
        assert src is not None
        files = sorted(fs.find(src))
        head = f"{src}/zarr.json"
        fs.rm(dst, recursive=True)
        for f in [f for f in files if f != head] + [head]:  # the complete mark last
            fs.copy(f, dst + f[len(src):])
        fs.rm(src, recursive=True)

    def abort(self) -> None:
        """Remove what was written (best effort); the target is left as it was."""
        if self.local is not None:
            shutil.rmtree(self.target, ignore_errors=True)
        else:
            try:
                fs, root = _fsspec(self.target)
                fs.rm(root, recursive=True)  # the staging prefix, or a new store's own prefix
            except (OSError, ValueError):
                pass


@contextmanager
def progress_bar(total: int, enabled: bool | None, desc: str) -> Iterator[Any]:
    """A tqdm bar over regions; off when ``enabled`` is False, or None and stderr is no terminal."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    with tqdm(total=total, unit="regions", desc=desc, disable=not enabled,
              dynamic_ncols=True, file=sys.stderr) as bar:
        yield bar
