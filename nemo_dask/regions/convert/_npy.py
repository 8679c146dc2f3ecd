"""Reading rows of a ``.npy`` file or an ``.npz`` member without loading the whole array.

A ``.npy`` file is read with seeks and plain reads (not ``mmap``: mapped pages would count
towards the process's resident memory as the conversion walks the file). An ``.npz`` member is
a zip entry, possibly deflated, so it is decompressed as a stream: rows must be asked for in
increasing order (going back reopens the entry). Either way memory is bounded by the rows
asked for. Fortran-ordered arrays cannot be streamed by rows: a ``.npy`` one is memory-mapped, an
``.npz`` one is loaded whole (the one case where memory grows with N).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from ...errors import InputError

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
# Bytes skipped per read when moving forward in a compressed member.
_SKIP_BYTES = 1 << 24


def npz_keys(path: str | os.PathLike[str]) -> list[str]:
    """Array names of an ``.npz`` file (``.npy`` suffix dropped)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [n[:-4] if n.endswith(".npy") else n for n in z.namelist()]
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable .npz file ({err}); is it truncated?") from None


def file_kind(path: str | os.PathLike[str]) -> str:
    """``"npy"`` or ``"npz"`` by content, as ``numpy.load`` decides (not by the suffix)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err})") from None
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head == _NPY_MAGIC:
        return "npy"
    raise InputError(f"{path}: neither a .npy nor an .npz file (first bytes {head!r}); save the "
                     "array with numpy.save or numpy.savez")


class NpyRows:
    """Rows (along axis 0) of one array in a ``.npy`` file or an ``.npz`` member.

    Parameters
    ----------
    path : str or PathLike
        The file.
    key : str, optional
        For an ``.npz``: the member (array name); required there, ignored for ``.npy``.
    field : str
        How error messages name the array (e.g. ``"arr_0"``).

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    """

    def __init__(self, path: str | os.PathLike[str], key: str | None = None,
                 field: str | None = None) -> None:
        self.path = Path(path)
        self.kind = file_kind(path)
        self.key = key
        self.field = field or key or "array"
        self._zip: zipfile.ZipFile | None = None
        self._fp: IO[bytes] | None = None
        self._whole: Any = None
        self._pos = 0
        if self.kind == "npz":
            if key is None:
                raise ValueError("an .npz member needs a key")
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile) as err:
                raise InputError(f"{self.path}: not a readable .npz file ({err}); is it "
                                 "truncated?") from None
            member = f"{key}.npy"
            if member not in self._zip.namelist():
                found = npz_keys(self.path)
                self._zip.close()
                raise InputError(f"{self.path}: no array {key!r} (found {found}); "
                                 f"{self._missing_hint(key)}")
            self._info = self._zip.getinfo(member)
            self._open_member()
            available = self._info.file_size - self._data_offset
        else:
            self._fp = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            self._read_header()
            available = os.fstat(self._fp.fileno()).st_size - self._data_offset
        if self.dtype.hasobject:
            self.close()
            raise InputError(f"{self.path}: {self.field} holds Python objects (dtype "
                             f"{self.dtype}); save a numeric or fixed-width string array")
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        needed = (self.shape[0] if self.shape else 1) * self.row_bytes
        if available < needed:
            self.close()
            raise InputError(f"{self.path}: {self.field} is truncated ({available} of {needed} "
                             "data bytes present); re-create the file")
        if self.fortran_order and self.shape and len(self.shape) > 1:
            self._load_whole()

    @staticmethod
    def _missing_hint(key: str) -> str:
        if key == "arr_0":
            return "save the array with numpy.savez(path, array) so that it is named arr_0"
        return "is this the right file?"

    def _open_member(self) -> None:
        assert self._zip is not None
        if self._fp is not None:
            self._fp.close()
        self._fp = self._zip.open(self._info)
        self._read_header()

    def _read_header(self) -> None:
        fp = self._fp
        assert fp is not None
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise InputError(f"{self.path}: {self.field} has no valid .npy header ({err}); is "
                             "the file truncated?") from None
        self.shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.fortran_order = bool(fortran)
        self.dtype = np.dtype(dtype)
        self._data_offset = fp.tell()
        self._pos = 0

    def _load_whole(self) -> None:
        if self.kind == "npy":
            self._whole = np.load(self.path, mmap_mode="r")
        else:
            with np.load(self.path) as data:
                self._whole = data[self.key]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new array (shape ``(stop - start, *shape[1:])``)."""
        if self._whole is not None:
            return np.array(self._whole[start:stop])
        fp = self._fp
        assert fp is not None
        n = stop - start
        try:
            if self.kind == "npy":
                fp.seek(self._data_offset + start * self.row_bytes)
            else:
                if start < self._pos:
                    self._open_member()
                self._skip((start - self._pos) * self.row_bytes)
            data = _read_exact(fp, n * self.row_bytes)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise InputError(f"{self.path}: reading rows {start}:{stop} of {self.field} failed "
                             f"({err}); the file is damaged or truncated, re-create it") from None
        self._pos = stop
        return np.frombuffer(data, dtype=self.dtype).reshape((n, *self.shape[1:])).copy()

    def _skip(self, nbytes: int) -> None:
        assert self._fp is not None
        while nbytes > 0:
            got = len(self._fp.read(min(nbytes, _SKIP_BYTES)))
            if not got:
                raise EOFError("unexpected end of data")
            nbytes -= got

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> NpyRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exact(fp: IO[bytes], nbytes: int) -> bytes:
    parts = []
    while nbytes > 0:
        chunk = fp.read(nbytes)
        if not chunk:
            raise EOFError("unexpected end of data")
        parts.append(chunk)
        nbytes -= len(chunk)
    return b"".join(parts)
