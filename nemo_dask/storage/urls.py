"""fsspec URLs: object stores and other remote file systems, as inputs and outputs.

Every path option takes a local path, a ``file://`` URL (the same local path) or any fsspec
URL (``s3://bucket/key``, ``gs://...``, ``memory://...``). :func:`localize` turns ``file://``
URLs into local paths, so that the rules of :mod:`nemo_dask.storage.outputs` apply to them
unchanged; :func:`is_url` says whether what remains is remote. Remote outputs follow these
rules instead:

* a file is written in memory (or to a local temporary file when large) and sent with ONE
  write of the whole object (``fs.pipe_file`` / ``fs.put_file``; on S3 a single PUT, or a
  multipart upload that becomes visible only when complete): a reader never sees half an
  object, and a failed write leaves the old object;
* a directory output is a prefix; nothing has to be created first;
* a directory of several files (export, tracks, report) is staged in a local temporary
  directory and each file uploaded when all are complete
  (:func:`nemo_dask.storage.outputs.staged_output`);
* a remote input directory (a run's OUT for export, tracks, report, collapse/intersect) is
  copied to a local temporary directory first (:func:`remote_input`), its regions store left
  out.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import OutputExistsError
from .temporary import is_temporary

#: fsspec protocols and the package that provides each (for the one-line message).
_FS_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
                "abfs": "adlfs", "abfss": "adlfs", "adl": "adlfs", "hf": "huggingface_hub",
                "sftp": "paramiko", "ssh": "paramiko", "http": "aiohttp", "https": "aiohttp"}
_LOCAL_SCHEMES = ("file", "local")
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")


def as_text(path: Any) -> str | None:
    """A path, URL or universal_pathlib UPath as text (None for anything else)."""
    if isinstance(path, Path):
        return os.fspath(path)
    if hasattr(path, "protocol") and hasattr(path, "fs"):  # a UPath (str() is its URL)
        return str(path)
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)  # type: ignore[return-value]
    return None


def url_scheme(path: Any) -> str | None:
    """The URL scheme of ``path`` (``"s3"``, ``"file"``), or None for a plain path."""
    text = as_text(path)
    m = _URL_RE.match(text) if text is not None else None
    return m.group("scheme").lower() if m else None


def is_url(path: Any) -> bool:
    """Whether ``path`` names a remote (non-local) location: an fsspec URL other than file://."""
    scheme = url_scheme(path)
    return scheme is not None and scheme not in _LOCAL_SCHEMES


def localize(path: Any) -> Any:
    """``file://`` and ``local://`` URLs as local path strings; remote UPaths as URL strings;
    anything else unchanged."""
    scheme = url_scheme(path)
    if scheme in _LOCAL_SCHEMES:
        from urllib.parse import unquote, urlparse

        parsed = urlparse(as_text(path))
        return unquote(parsed.netloc + parsed.path)
    if scheme is not None and not isinstance(path, str):
        return as_text(path)
    return path


def location(path: Any) -> Any:
    """A path-like handle of a directory or file: a local :class:`Path` (``~`` expanded,
    absolute; ``file://`` URLs included), or a universal_pathlib ``UPath`` for a URL, which has
    the same ``/``, ``exists``, ``is_file``, ``is_dir``, ``iterdir`` and ``name`` and whose
    ``str()`` is the URL."""
    path = localize(path)
    if is_url(path):
        from upath import UPath

        filesystem(as_text(path))  # one clear line when the package is missing
        return UPath(as_text(path))
    return Path(os.path.expanduser(os.fspath(path))).absolute()


def open_input(path: Any, mode: str = "rb") -> Any:
    """Open a local file or a URL's object for reading (a context manager either way)."""
    path = localize(path)
    if is_url(path):
        fs, root = filesystem(as_text(path))
        return fs.open(root, mode)
    return open(path, mode)


def filesystem(url: str | os.PathLike[str]) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path within it.

    Raises
    ------
    InputError
        The URL's protocol is unknown, or its file-system package is not installed (one line
        naming the package, e.g. ``pip install 'nemo_dask[s3]'`` for s3fs).
    """
    import fsspec

    from ..errors import InputError

    text = as_text(url) or os.fspath(url)
    scheme = url_scheme(text) or "file"
    try:
        fs, root = fsspec.core.url_to_fs(text)
    except ImportError as err:
        pkg = _FS_PACKAGES.get(scheme, getattr(err, "name", None) or "its fsspec package")
        extra = " (pip install 'nemo_dask[s3]')" if pkg == "s3fs" else ""
        raise InputError(f"{text}: reading or writing {scheme}:// URLs needs the Python package "
                         f"{pkg}, which is not installed{extra}") from None
    except ValueError as err:
        if "Protocol not known" in str(err):
            raise InputError(f"{text}: unknown URL protocol {scheme}://; pass a local path or a "
                             "URL of a file system fsspec knows (s3://, gs://, file://...)"
                             ) from None
        raise
    return fs, root


def join(base: str | os.PathLike[str], *parts: str) -> Any:
    """``base / parts`` for a local path (a Path) or a URL (a string joined with ``/``)."""
    if is_url(base):
        text = os.fspath(base).rstrip("/")
        return "/".join([text, *parts])
    return Path(localize(base)).joinpath(*parts)


def url_isfile(url: str) -> bool:
    """Whether ``url`` is one object (not a prefix)."""
    fs, root = filesystem(url)
    return bool(fs.isfile(root))


@contextlib.contextmanager
def url_output(url: str, mode: str, what: str) -> Iterator[IO[Any]]:
    from ..errors import InputError

    fs, root = filesystem(url)
    if fs.isdir(root):
        raise OutputExistsError(f"{url} is a directory (a prefix with objects under it), but "
                                f"the {what} must be a file: choose another -o; nothing was "
                                "written")
    spool = _SpooledBytes()
    try:
        yield spool if mode == "wb" else io.TextIOWrapper(spool, encoding="utf-8", newline="\n")
    except BaseException:
        spool.discard()  # nothing is sent: the old object (if any) stays
        raise
    spool.seek(0)
    try:
        if spool.tell_size() <= _PIPE_MAX:
            fs.pipe_file(root, spool.read())
        else:
            fs.put_file(spool.name(), root)
    except OSError as err:
        raise InputError(f"{url}: writing the {what} failed ({err})") from err
    finally:
        spool.discard()


#: Objects up to this size are sent from memory; larger ones from a local temporary file.
_PIPE_MAX = 64 << 20


class _SpooledBytes(io.RawIOBase):
    """A binary sink held in memory up to _PIPE_MAX bytes, then in a local temporary file."""

    def __init__(self) -> None:
        import tempfile

        self._f: Any = tempfile.SpooledTemporaryFile(max_size=_PIPE_MAX)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b: Any) -> int:  # type: ignore[override]
        return self._f.write(b)

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        return self._f.read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def tell_size(self) -> int:
        here = self._f.tell()
        self._f.seek(0, 2)
        size = self._f.tell()
        self._f.seek(here)
        return size

    def name(self) -> str:
        self._f.rollover()
        self._f.flush()
        return self._f.name

    def close(self) -> None:  # writers (pyarrow, TextIOWrapper) close their sink: keep data
        pass

    def discard(self) -> None:
        self._f.close()


@contextlib.contextmanager
def remote_input(src: str | os.PathLike[str], what: str = "input directory",
                 exclude: Collection[str] = ("regions.zarr",)) -> Iterator[str]:
    """A local path for an input directory: the path itself, or a local copy of a URL's files.

    The copy (top-level entries named in ``exclude`` left out) lives in a temporary directory
    removed when the block ends.

    Raises
    ------
    InputError
        A URL with nothing under it.
    """
    import tempfile

    from ..errors import InputError

    src = localize(src)
    if not is_url(src):
        yield os.fspath(Path(os.path.expanduser(os.fspath(src))))
        return
    fs, root = filesystem(src)
    root = root.rstrip("/")
    files = [f for f in fs.find(root) if f.startswith(root + "/")]
    files = [f for f in files if f[len(root) + 1:].split("/")[0] not in exclude]
    if not files:
        raise InputError(f"{src}: nothing there; pass the {what} (a path or URL that exists)")
    with tempfile.TemporaryDirectory(prefix=".nemo-dask-input-") as tmp:
        for f in files:
            rel = f[len(root) + 1:]
            if any(is_temporary(part) for part in rel.split("/")):
                continue
            local = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            fs.get_file(f, local)
        yield tmp


def fetch_input_file(value: Any, directory: str | os.PathLike[str]) -> Any:
    """A local copy, in ``directory``, of an input *file* at a remote URL (a modisco H5, peaks,
    FASTA, bigWig, a regions.npz, ...): the libraries that read them (h5py, pyBigWig, pyfaidx,
    numpy's npz) need a local file. A FASTA's ``.fai`` index beside it comes along. Local paths,
    ``file://`` URLs (as local paths) and remote *directories* (a regions store, a run) are
    returned as they are: those are read in place.

    Raises
    ------
    InputError
        The URL's filesystem package is missing (one line naming it).
    """
    value = localize(value)
    if not is_url(value) or not url_isfile(as_text(value)):
        return value
    fs, root = filesystem(as_text(value))
    dest = Path(directory) / f"{len(os.listdir(directory))}-{root.rstrip('/').rsplit('/', 1)[-1]}"
    fs.get(root, str(dest))
    if fs.isfile(root + ".fai"):
        fs.get(root + ".fai", str(dest) + ".fai")
    _FETCHED[str(dest)] = as_text(value)
    return str(dest)


#: The local copies :func:`fetch_input_file` made in this process -> the URL each came from.
_FETCHED: dict[str, str] = {}


def recorded_path(path: Any) -> str | None:
    """How a run's parameters.json and a store's attributes record an input: the URL a local
    copy made by :func:`fetch_input_file` came from, a URL as it is, else the absolute local
    path (``~`` expanded, ``file://`` resolved); None stays None.

    They outlive the command: a temporary copy is gone by then, and a relative path means
    nothing to whoever reads the run from another directory."""
    if path is None:
        return None
    text = as_text(localize(path)) or os.fspath(path)
    if text in _FETCHED:
        return _FETCHED[text]
    return text if is_url(text) else os.path.abspath(os.path.expanduser(text))


def with_fetched_urls(text: str) -> str:
    """``text`` (an error or warning) with every local copy's path replaced by its URL."""
    for local, url in _FETCHED.items():
        text = text.replace(local, url)
    return text


__all__ = (
    "as_text", "fetch_input_file", "filesystem", "is_url", "join", "localize",
    "location", "open_input", "recorded_path", "remote_input", "url_isfile",
    "url_output", "url_scheme", "with_fetched_urls",
)
