"""Verified reads of a regions store: every chunk is checked against what its conversion wrote.

zarr reads an absent chunk as the array's fill value (zarr 3.1 has no option to make that an
error), so a chunk lost from a store (a deleted file, an object an object store lost) would be
solved as zeros. And a chunk overwritten or truncated either fails to decode, with an error
that names no chunk, or decodes to other numbers. Converters therefore

* write every chunk, the all-zero ones too (``write_empty_chunks``), so that in a store every
  chunk exists, and
* record, per array, a CRC-32 of each chunk's decoded values as written
  (``chunk_crc32/<array path>``, an int64 array of one entry per chunk, -1 where nothing was
  recorded), before the store's complete mark.

Every read (:func:`read_rows`) reads whole chunks, recomputes their CRC-32 and compares; any
difference, and any chunk that fails to decode, is a :class:`~nemo_dask.errors.CorruptDataError`
naming the store, the array, the chunk, its regions, whether its file or object is missing or
damaged, and the fix. CRC-32 because it runs at several GB/s (zlib) and is made for exactly
this: finding accidental damage, not forgery.

Stores converted before checksums existed (no ``chunk_crc32`` attribute) open and are read
unverified, as before; :func:`verified` says which, so call-hits can warn once.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ..errors import CorruptDataError

#: Group under a store's root holding one checksum array per data array.
CHECKSUM_GROUP = "chunk_crc32"
#: The store attribute saying the store's chunks carry checksums (and of what).
CHECKSUM_ATTR = "chunk_checksums"
CHECKSUM_RECORD = {"algorithm": "crc32", "of": "decoded chunk values, little-endian; strings "
                   "as int64 UTF-8 lengths then the bytes", "group": CHECKSUM_GROUP}
#: Checksum entry of a chunk whose checksum was never written.
NOT_RECORDED = -1
#: Largest verified range of one array kept for the next read (a default chunk is ~1-3 MB).
KEEP_BYTES = 8 << 20


def chunk_crc32(values: np.ndarray) -> int:
    """CRC-32 of one chunk's values as stored (dtype, shape and byte order fixed).

    Numbers: their little-endian bytes. Strings (zarr's variable-length UTF-8): the int64
    UTF-8 byte lengths of every string, then the bytes of all of them, so that a changed
    boundary between two strings changes the checksum.
    """
    values = np.asarray(values)
    if values.dtype.kind in "OUST":  # object, str, bytes, numpy's StringDType
        encoded = [str(v).encode("utf-8") for v in values.ravel().tolist()]
        lengths = np.array([len(b) for b in encoded], dtype="<i8")
        return zlib.crc32(b"".join(encoded), zlib.crc32(lengths.tobytes()))
    little = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return zlib.crc32(little.view(np.uint8).reshape(-1).data if little.size else b"")


class ChecksumRecorder:
    """Collects the CRC-32 of each chunk a converter writes, then writes them to the store."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[int, int]] = {}

    def add(self, path: str, chunk: int, values: np.ndarray) -> None:
        """Record chunk ``chunk`` of the array at ``path`` (its values as the array holds them)."""
        self._sums.setdefault(path, {})[chunk] = chunk_crc32(values)

    def write(self, group: Any, n_chunks: int) -> None:
        """Write ``chunk_crc32/<path>`` (n_chunks,) int64 arrays into ``group``, every chunk."""
        root = group.require_group(CHECKSUM_GROUP)
        for path, sums in sorted(self._sums.items()):
            values = np.full(n_chunks, NOT_RECORDED, dtype=np.int64)
            for k, v in sums.items():
                values[k] = v
            parent = root
            *dirs, name = path.split("/")
            for d in dirs:
                parent = parent.require_group(d)
            arr = parent.create_array(name, shape=(n_chunks,), chunks=(max(1, min(n_chunks,
                                      1 << 16)),), dtype="int64", fill_value=NOT_RECORDED,
                                      config={"write_empty_chunks": True})
            arr[:] = values


def verified(attrs: dict[str, Any]) -> bool:
    """Whether a store with these attributes records chunk checksums (converted by a version
    that writes them)."""
    return isinstance(attrs.get(CHECKSUM_ATTR), dict)


def read_rows(regions: Any, path: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the array at ``path`` (relative to the store root), verified.

    Parameters
    ----------
    regions : Regions
        The open store (its ``group``, ``url``, ``chunk_size`` and ``attrs``).
    path : str
        ``"sequences"``, ``"contributions"``, ``"peaks/chr"``, ``"tiling/own_start"``, ...
    start, stop : int
        Rows (regions) along axis 0.

    Returns
    -------
    ndarray, shape=(stop - start, ...)
        The values as stored.

    Raises
    ------
    CorruptDataError
        A chunk the rows lie in is missing, does not decode, or decodes to values whose CRC-32
        is not the one recorded when the store was written (one line: store, array, chunk,
        regions, what is wrong, the fix). Stores without checksums are read unverified.
    """
    array = regions.zarr_array(path)
    if stop <= start:
        return np.asarray(array[start:stop])
    if not verified(regions.attrs):
        return _decode(regions, array, path, start, stop)
    kept = regions._kept.get(path)
    if kept is not None and kept[0] <= start and stop <= kept[1]:
        return kept[2][start - kept[0]:stop - kept[0]].copy()  # callers may write to theirs
    rows = int(array.chunks[0])
    first, last = start // rows, (stop - 1) // rows
    lo, hi = first * rows, min((last + 1) * rows, int(array.shape[0]))
    data = _decode(regions, array, path, lo, hi)
    expected = _expected(regions, path)
    only_fill = []
    for k in range(first, last + 1):
        chunk = data[(k - first) * rows:(k + 1 - first) * rows]
        found = chunk_crc32(chunk)
        if k >= len(expected) or int(expected[k]) != found:
            recorded = int(expected[k]) if k < len(expected) else NOT_RECORDED
            raise _error(regions, array, path, k, _fault(array, k, recorded))
        if found == _fill_crc32(regions, array, path, chunk.shape):
            only_fill.append(k)
    # A chunk of fill values only (an all-False null mask, say) reads the same when its file is
    # gone: for those alone the store is asked whether the chunk is there (one request each).
    for k, there in zip(only_fill, _chunks_exist(array, only_fill), strict=True):
        if not there:
            raise _error(regions, array, path, k, _fault(array, k, 0))
    # The verified chunks are kept (one range per array, when small): blocks smaller than a
    # chunk that the same worker solves one after another then decode and check it once.
    if data.nbytes <= KEEP_BYTES:
        regions._kept[path] = (lo, hi, data)
        return data[start - lo:stop - lo].copy()
    regions._kept[path] = None
    return data[start - lo:stop - lo]


def _fill_crc32(regions: Any, array: Any, path: str, shape: tuple[int, ...]) -> int:
    """CRC-32 of a chunk of ``shape`` holding only the array's fill value (cached)."""
    cache = regions._fill_crc32
    key = (path, shape)
    if key not in cache:
        kind = array.dtype.kind
        values = np.full(shape, array.fill_value, dtype=object if kind in "OUST" else array.dtype)
        cache[key] = chunk_crc32(values)
    return cache[key]


def _decode(regions: Any, array: Any, path: str, lo: int, hi: int) -> np.ndarray:
    """``array[lo:hi]``; a chunk that fails to decode is found and named."""
    try:
        return np.asarray(array[lo:hi])
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - codecs raise anything (RuntimeError from blosc)
        if _not_the_data(err):
            raise
        rows = int(array.chunks[0])
        for k in range(lo // rows, (hi - 1) // rows + 1):
            try:
                array[k * rows:min((k + 1) * rows, int(array.shape[0]))]
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as chunk_err:  # noqa: BLE001
                if _not_the_data(chunk_err):
                    raise
                raise _error(regions, array, path, k, "is damaged: it does not decode "
                             f"({type(chunk_err).__name__}: {_short(chunk_err)})") from None
        raise _error(regions, array, path, lo // rows,
                     f"could not be read ({type(err).__name__}: {_short(err)})") from None


def _not_the_data(err: BaseException) -> bool:
    """Whether a read failed for the file system's or the network's sake (permission, a
    server gone), not because the chunk is damaged: that is reported as what it is
    (:mod:`nemo_dask.storage.faults`), with its own fix."""
    from ..storage.faults import is_fault, is_unreachable

    return is_fault(err) or is_unreachable(err)


def _expected(regions: Any, path: str) -> np.ndarray:
    """The recorded checksums of ``path``'s chunks (cached on the Regions object)."""
    cache = regions._checksums
    sums = cache.get(path)
    if sums is None:
        try:
            sums = np.asarray(regions.zarr_array(f"{CHECKSUM_GROUP}/{path}")[:], dtype=np.int64)
        except KeyError:
            raise CorruptDataError(
                f"{regions.url}: the checksums of array {path!r} ({CHECKSUM_GROUP}/{path}) are "
                "missing, so its chunks cannot be verified; the store is damaged: convert the "
                "inputs again (nemo-dask convert ... --overwrite)") from None
        cache[path] = sums
    return sums


def _fault(array: Any, chunk: int, recorded: int) -> str:
    if recorded == NOT_RECORDED:
        return "has no recorded checksum (the store's checksum record is damaged)"
    if not _chunk_exists(array, chunk):
        return "is missing (its file or object is gone; zarr would read it as zeros)"
    return "is damaged: its values differ from what the conversion wrote (CRC-32 mismatch)"


def _chunk_key(array: Any, chunk: int) -> str:
    coords = (chunk,) + (0,) * (len(array.shape) - 1)
    return f"{array.path}/{array.metadata.encode_chunk_key(coords)}"


def _chunk_exists(array: Any, chunk: int) -> bool:
    return _chunks_exist(array, [chunk])[0]


def _chunks_exist(array: Any, chunks: list[int]) -> list[bool]:
    """Whether each chunk's key is in the store (all asked at once)."""
    if not chunks:
        return []
    import asyncio

    from zarr.core.sync import sync

    async def ask() -> list[bool]:
        return list(await asyncio.gather(*(array.store.exists(_chunk_key(array, k))
                                           for k in chunks)))

    try:
        return [bool(x) for x in sync(ask())]
    except Exception:  # noqa: BLE001 - the store cannot say: take the chunks as present
        return [True] * len(chunks)


def _error(regions: Any, array: Any, path: str, chunk: int, what: str) -> CorruptDataError:
    rows = int(array.chunks[0])
    first, last = chunk * rows, min((chunk + 1) * rows, int(array.shape[0])) - 1
    return CorruptDataError(
        f"{regions.url}: array {path!r} chunk {chunk} ({_chunk_key(array, chunk)}, regions "
        f"{first}-{last}) {what}; the regions store is damaged: convert the inputs again "
        "(nemo-dask convert ... --overwrite) or restore the store from a copy")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ("CHECKSUM_ATTR", "CHECKSUM_GROUP", "ChecksumRecorder", "chunk_crc32", "read_rows",
           "verified")
