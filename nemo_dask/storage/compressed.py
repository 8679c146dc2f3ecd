"""Input files that may be compressed: recognised by their first bytes, whatever their name.

gzip (and bgzip, whose blocks are gzip members), bzip2 and xz are what genomics tools and users
(``gzip hits.tsv``) produce; Python reads all three without extra packages. A file is read
exactly as its plain form would be.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from collections.abc import Callable
from typing import IO, Any

from .urls import is_url, localize, open_input

#: (magic bytes, name, opener) of each recognised compression; an opener takes a path or a
#: binary file object and returns the decompressed stream.
MAGIC: tuple[tuple[bytes, str, Callable[[Any], IO[bytes]]], ...] = (
    (b"\x1f\x8b", "gzip", lambda f: gzip.open(f, "rb")),
    (b"BZh", "bzip2", lambda f: bz2.open(f, "rb")),
    (b"\xfd7zXZ\x00", "xz", lambda f: lzma.open(f, "rb")),
)

#: File-name suffixes a compressed copy of a file may carry (``hits.tsv.gz``).
SUFFIXES: tuple[str, ...] = (".gz", ".bgz", ".bz2", ".xz")

#: What a truncated or corrupt compressed stream raises while it is read.
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, gzip.BadGzipFile,
                                                 lzma.LZMAError, ValueError)


def compression(head: bytes) -> str | None:
    """The compression whose magic bytes ``head`` (a file's first 6 bytes) starts with."""
    return next((name for magic, name, _ in MAGIC if head.startswith(magic)), None)


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """The compression of the file ``path`` (local or a URL), by content; None when plain."""
    with open_input(path) as f:
        return compression(f.read(6))


def open_decompressed(path: str | os.PathLike[str]) -> IO[bytes]:
    """``path`` (local or a URL) opened for reading its plain bytes; the caller closes it.

    A URL's object is fetched whole first (finemo's tables, not genomes, are read this way).
    """
    path = localize(path)
    source: Any = path
    if is_url(path):
        with open_input(path) as f:
            source = io.BytesIO(f.read())
        head = source.getvalue()[:6]
    else:
        with open(path, "rb") as f:
            head = f.read(6)
    for magic, _, opener in MAGIC:
        if head.startswith(magic):
            return opener(source)
    return source if isinstance(source, io.BytesIO) else open(source, "rb")


def read_decompressed(path: str | os.PathLike[str]) -> bytes:
    """The whole plain content of ``path``, decompressed by content."""
    with open_decompressed(path) as f:
        return f.read()


__all__ = ("MAGIC", "READ_ERRORS", "SUFFIXES", "compression", "compression_of",
           "open_decompressed", "read_decompressed")
