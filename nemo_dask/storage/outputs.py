"""Every user-named output goes through here: what ``-o PATH`` may be, and how it is written.

Rules (the README's "Outputs" section says the same for users):

* **A regular file, or a path that does not exist** is written atomically: the bytes go to a
  temporary file in the same directory, which is flushed to disk and renamed over the path only
  when complete. A reader never sees a half-written file; a failed write leaves the old file.
* **A symbolic link** is followed: its final target (existing or not) is written atomically
  beside the target, so the link stays a link and points at the new file.
* **A character device, FIFO or socket** (``/dev/null``, ``/dev/stdout``, a named pipe another
  program reads, a Unix socket) is written to directly, as a stream, and is never replaced or
  deleted. ``-`` means standard output; a path that is this process's standard output or error
  (``/dev/stdout``, ``/dev/fd/1``, whatever they lead to) is written through the open stream. A
  stream cannot be taken back: a writer that fails midway leaves what it wrote. A block device
  is refused (writing a disk is never what ``-o`` means).
* **A directory where a file is wanted**, or **a file, device or FIFO where a directory is
  wanted**, is refused with :class:`~nemo_dask.errors.OutputExistsError` (one line from the
  CLI, exit 2) before anything is written.

Temporaries are named as :mod:`nemo_dask.storage.temporary` says; :func:`remove_temporaries`
deletes those a killed writer left, at the next run. URLs (``s3://...``) follow the rules of
:mod:`nemo_dask.storage.urls` instead; ``file://`` URLs are local paths.

Directory outputs (a call-hits OUT, a regions store, an export or report directory) are checked
with :func:`output_dir` (a symlink to a directory, or to nothing yet, is followed) and created
with :func:`make_output_dir`; a whole directory made beside its target is swapped in with
:func:`replace_directory`. Files inside a directory output follow the file rules above, one by
one. ``--overwrite`` removes only what is nemo_dask's own output, through :func:`remove_owned`,
which refuses symlinks (whatever they point to), devices, FIFOs and sockets, and whatever the
caller's ownership test rejects: it never deletes a special file, never deletes a link's target
through the link, and never empties a directory that is not ours. An output directory given as
a symlink to our own output is ours: its entries are replaced, the link stays.

Usage::

    with open_output(path, "wb", what="hits table") as f:   # or "w" for UTF-8 text
        frame.write_csv(f, separator="\\t")
    out = make_output_dir(path, "export directory")           # resolved, created
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import socket
import stat
import sys
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import OutputExistsError
from .temporary import MAX_STEM, temporary_name, temporary_of
from .urls import as_text, filesystem, is_url, localize, location, url_output

#: The spelling of standard output as an output path.
STDOUT = "-"


def remove_temporaries(directory: str | os.PathLike[str],
                       names: Collection[str] | None = None) -> int:
    """Delete the temporaries a killed writer left in ``directory``; returns how many.

    Only regular files and directories named as :func:`.temporary.is_temporary` says are
    removed, and with ``names`` only the temporaries of those final names (for a directory that
    also holds the user's own files); links and special files are left alone whatever their
    name.
    """
    if is_url(directory):
        return 0  # objects are written whole, by one request: no temporaries on object stores
    d = Path(localize(directory))
    if not d.is_dir():
        return 0
    wanted = None if names is None else {n[:MAX_STEM] for n in names}
    removed = 0
    for entry in os.scandir(d):
        final = temporary_of(entry.name)
        if final is None or (wanted is not None and final not in wanted):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        else:
            continue
        removed += 1
    return removed


#: How messages name each kind of file system entry, by its stat test.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a file"))


def _describe(mode: int) -> str:
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "a special file")


def _is_stream(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def is_stdout(path: str | os.PathLike[str]) -> bool:
    """Whether writing ``path`` writes this process's standard output (``-``, /dev/stdout...)."""
    if as_text(path) == STDOUT:
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def output_file(path: str | os.PathLike[str], what: str = "output file") -> tuple[str, Path]:
    """Check a file output and say how it will be written, without writing anything.

    Returns
    -------
    (kind, target) : tuple
        ``kind`` is ``"stdout"`` or ``"stderr"`` (the path is this process's standard output or
        error, e.g. ``-``, ``/dev/stdout``: written through the open stream), ``"stream"``
        (device, FIFO, socket: ``target`` is opened and written directly) or ``"file"``
        (written atomically; ``target`` is the path with symlinks resolved).

    Raises
    ------
    OutputExistsError
        ``path`` is (or links to) a directory or a block device, or its parent is not a
        directory.
    """
    if as_text(path) == STDOUT:
        return "stdout", Path("/dev/stdout")
    path = localize(path)
    if is_url(path):
        fs, root = filesystem(as_text(path))
        if fs.isdir(root):
            raise OutputExistsError(f"{as_text(path)} is a directory (a prefix with objects under "
                                    f"it), but the {what} must be a file: choose another -o; "
                                    "nothing was written")
        return "url", path  # type: ignore[return-value]
    given = Path(os.path.expanduser(os.fspath(path)))
    try:
        # stat, not realpath first: the kernel follows /dev/stdout's "magic" /proc links too.
        st: os.stat_result | None = os.stat(given)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputExistsError(f"{path}: cannot write this {what}: a parent of it is a file, "
                                "not a directory; choose another -o") from None
    if st is not None:
        for fd, kind in ((1, "stdout"), (2, "stderr")):
            with contextlib.suppress(OSError):
                if os.path.samestat(st, os.fstat(fd)):
                    return kind, given
        if _is_stream(st.st_mode):
            return "stream", given
        if not stat.S_ISREG(st.st_mode):
            raise OutputExistsError(
                f"{_shown(path)} is {_describe(st.st_mode)}; the {what} must be a file path (or a "
                "character device, FIFO or - for standard output): choose another -o; nothing "
                "was written")
    # A regular file, or nothing yet (a dangling link's target is created).
    target = Path(os.path.realpath(given))
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise OutputExistsError(f"{_shown(path)}: cannot write this {what}: {parent} is not a "
                                "directory; choose another -o")
    return "file", target


def _shown(path: str | os.PathLike[str]) -> str:
    """The path as typed, with where a symlink leads."""
    text = os.fspath(path)
    if os.path.islink(text):
        return f"{text} (-> {os.path.realpath(text)})"
    return text


@contextlib.contextmanager
def open_output(path: str | os.PathLike[str], mode: str = "wb", *,
                what: str = "output file") -> Iterator[IO[Any]]:
    """Open a user-named output for writing, following the rules of this module.

    Parameters
    ----------
    path : str or PathLike
        The output: a file path, a symlink, a device, FIFO or socket, or ``-``.
    mode : {"wb", "w"}
        Binary, or UTF-8 text.
    what : str
        How messages name this output ("hits table", ...).

    Yields
    ------
    file object
        For a file path, a temporary file renamed over the final path when the ``with`` block
        ends without an exception (and removed if it raises); for a stream, the stream itself.

    Raises
    ------
    OutputExistsError
        See :func:`output_file`; raised before anything is opened.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"open_output: mode must be 'wb' or 'w', got {mode!r}")
    path = localize(path)
    if is_url(path):
        with url_output(os.fspath(path), mode, what) as f:
            yield f
            if mode == "w":
                f.flush()
                f.detach()  # type: ignore[attr-defined]
        return
    kind, target = output_file(path, what)
    if kind == "file":
        with _atomic(target) as raw:
            with _as_mode(raw, mode) as f:
                yield f
        return
    with _stream(kind, target) as raw, _as_mode(raw, mode) as f:
        yield f


def write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "output file") -> None:
    """Write ``data`` to ``path`` with :func:`open_output`."""
    with open_output(path, "wb", what=what) as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str, what: str = "output file") -> None:
    """Write ``text`` (UTF-8) to ``path`` with :func:`open_output`."""
    with open_output(path, "w", what=what) as f:
        f.write(text)


def write_json(obj: Any, path: str | os.PathLike[str], *, indent: int = 4,
               final_newline: bool = True, what: str = "JSON file") -> None:
    """Write ``obj`` as indented JSON to ``path`` with :func:`open_output`."""
    with open_output(path, "w", what=what) as f:
        json.dump(obj, f, indent=indent)
        if final_newline:
            f.write("\n")


def copy_file(src: str | os.PathLike[str], path: str | os.PathLike[str],
              what: str = "output file") -> None:
    """Copy the file ``src`` to output ``path`` with :func:`open_output`."""
    with open(src, "rb") as fin, open_output(path, "wb", what=what) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def install(src: str | os.PathLike[str], path: str | os.PathLike[str],
            what: str = "output file") -> None:
    """Put the finished file ``src`` at output ``path``; ``src`` is consumed.

    For a file output ``src`` is renamed into place when it lies on the same file system as the
    target (a rename in the target's directory), else copied atomically; for a stream its bytes
    are copied into it.
    """
    src = Path(src)
    kind, target = output_file(path, what)
    if kind == "url":
        fs, root = filesystem(as_text(target))
        fs.put_file(str(src), root)  # one whole object
        src.unlink()
        return
    if kind == "file":
        with open(src, "rb+") as f:
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(src, stat.S_IMODE(os.stat(target).st_mode))
        try:
            os.replace(src, target)
            _fsync_dir(target.parent)
            return
        except OSError as err:
            if err.errno != errno.EXDEV:  # another file system (a link led there): copy instead
                raise
    copy_file(src, path, what)
    src.unlink()


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[IO[bytes]]:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputExistsError(f"{target}: cannot write it: a parent of it is not a directory "
                                "(or is a link to nothing); choose another -o") from None
    tmp = target.parent / temporary_name(target.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            # Data on disk before the rename, so a crash cannot leave an empty file in place.
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            # Keep the permissions a user gave the file being replaced.
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _stream(kind: str, target: Path) -> Iterator[IO[bytes]]:
    if kind in ("stdout", "stderr"):
        out = (sys.stdout if kind == "stdout" else sys.stderr).buffer
        out.flush()
        yield _Unclosed(out)
        out.flush()
        return
    if stat.S_ISSOCK(os.stat(target).st_mode):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(target))
            with sock.makefile("wb") as f:
                yield f
        return
    # No O_CREAT, no O_TRUNC: the device or FIFO is used as it is, never created or replaced.
    with open(os.open(target, os.O_WRONLY), "wb") as f:
        yield f


class _Unclosed(io.RawIOBase):
    """Standard output as a binary file that writers may close without closing stdout."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:  # type: ignore[override]
        self._stream.write(b)
        return len(b)

    def flush(self) -> None:
        self._stream.flush()


@contextlib.contextmanager
def _as_mode(raw: IO[bytes], mode: str) -> Iterator[IO[Any]]:
    if mode == "wb":
        yield raw
        return
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")  # type: ignore[arg-type]
    try:
        yield text
        text.flush()
    finally:
        text.detach()  # the binary file is closed by its own context


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every file system lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def output_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """Check a directory output; returns it with symlinks resolved (not created).

    A missing path (or a link to one) is fine; an existing directory (or a link to one) too.

    Raises
    ------
    OutputExistsError
        ``path`` is ``-``, or is (or links to) a file, device, FIFO or socket.
    """
    if as_text(path) == STDOUT:
        raise OutputExistsError(f"the {what} cannot be standard output (-): give a directory "
                                "path")
    path = localize(path)
    if is_url(path):
        fs, root = filesystem(as_text(path))
        if fs.isfile(root):
            raise OutputExistsError(f"{as_text(path)} is an object (a file), but the {what} must "
                                    "be a directory (a prefix): choose another -o; nothing was "
                                    "written")
        return location(path)
    given = os.path.expanduser(os.fspath(path))
    try:
        mode = os.stat(given).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        raise OutputExistsError(f"{path}: cannot create this {what}: a parent of it is a file, "
                                "not a directory; choose another -o") from None
    if mode is not None and not stat.S_ISDIR(mode):
        raise OutputExistsError(f"{_shown(path)} is {_describe(mode)}, but the {what} must be a "
                                "directory: choose another -o; nothing was written")
    return Path(os.path.realpath(given))


def make_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """:func:`output_dir`, then create the directory (and its parents); returns it resolved."""
    target = output_dir(path, what)
    if is_url(target):
        return target  # an object store prefix exists as soon as an object is under it
    try:
        target.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputExistsError(f"{path}: cannot create this {what}: a parent of it is not a "
                                "directory; choose another -o") from None
    return target


def replace_directory(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                      owned: Callable[[Path], bool] | None = None,
                      what: str = "output directory") -> None:
    """Move the finished directory ``src`` onto ``dst`` (same file system, ``dst`` resolved).

    An old ``dst`` must pass :func:`check_removable` with ``owned``; it is renamed to a
    temporary name, the new one renamed into place, and only then is the old one deleted, so
    ``dst`` always names a complete directory.
    """
    src, dst = Path(src), Path(dst)
    if os.path.lexists(dst):
        check_removable(dst, owned, what)
        trash = dst.parent / temporary_name(dst.name)
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)
    _fsync_dir(dst.parent)


def remove_owned(path: str | os.PathLike[str], owned: Callable[[Path], bool] | None = None,
                 what: str = "entry") -> bool:
    """Delete ``path`` (a file or directory tree that nemo_dask wrote); returns whether it did.

    Refuses, with :class:`OutputExistsError`, what :func:`check_removable` refuses. A missing
    path is not an error. Trees are removed without following links inside them.
    """
    if is_url(path):
        if check_removable(path, owned, what) is None:
            return False
        fs, root = filesystem(as_text(path))
        fs.rm(root, recursive=True)
        return True
    p = Path(localize(path))
    st = check_removable(p, owned, what)
    if st is None:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(p)
    else:
        p.unlink()
    return True


def check_removable(path: str | os.PathLike[str], owned: Callable[[Path], bool] | None = None,
                    what: str = "entry") -> os.stat_result | None:
    """Raise unless :func:`remove_owned` may delete ``path``; returns its lstat (None: missing).

    Refused: a symlink (whatever it points to), a device, FIFO or socket, and anything for
    which ``owned`` (when given) returns False.
    """
    if is_url(path):
        u = location(path)
        if not u.exists():
            return None
        if owned is not None and not owned(u):
            raise OutputExistsError(f"{u} is not nemo_dask's own {what}; refusing to delete it "
                                    "even with --overwrite; remove it yourself or choose another "
                                    "output")
        return os.stat_result((0,) * 10)  # objects have no mode; removable
    p = Path(localize(path))
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise OutputExistsError(f"{p} is a symbolic link, not nemo_dask's own {what}; refusing "
                                "to delete it (or what it points to) even with --overwrite: "
                                "remove it yourself or choose another output")
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise OutputExistsError(f"{p} is {_describe(st.st_mode)}, not nemo_dask's own {what}; "
                                "refusing to delete it even with --overwrite; choose another "
                                "output")
    if owned is not None and not owned(p):
        raise OutputExistsError(f"{p} is not nemo_dask's own {what}; refusing to delete it even "
                                "with --overwrite; remove it yourself or choose another output")
    return st


@contextlib.contextmanager
def staged_output(dest: str | os.PathLike[str], what: str = "output directory"
                  ) -> Iterator[tuple[str, Path | None]]:
    """A local staging directory for a directory output of several files.

    Yields ``(stage, final)``. For a local ``dest`` (a path or ``file://``), ``stage`` is a
    hidden temporary directory inside it and ``final`` the resolved directory: the caller moves
    the finished files in (with :func:`install`). For a URL, ``final`` is None: when the block
    ends without an exception every file in ``stage`` is uploaded to ``dest/<name>``, one whole
    object each. ``stage`` is removed in both cases.
    """
    import tempfile

    dest = localize(dest)
    if is_url(dest):
        fs, root = filesystem(dest)
        if fs.isfile(root):
            raise OutputExistsError(f"{dest} is an object (a file), but the {what} must be a "
                                    "directory (prefix): choose another -o; nothing was written")
        with tempfile.TemporaryDirectory(prefix=".nemo-dask-stage-") as stage:
            yield stage, None
            for dirpath, _dirs, files in os.walk(stage):
                for name in sorted(files):
                    local = os.path.join(dirpath, name)
                    rel = os.path.relpath(local, stage).replace(os.sep, "/")
                    fs.put_file(local, f"{root.rstrip('/')}/{rel}")
        return
    real = make_output_dir(dest, what)
    remove_temporaries(real, ("stage",))
    stage = real / temporary_name("stage")
    stage.mkdir()
    try:
        yield str(stage), real
    finally:
        shutil.rmtree(stage, ignore_errors=True)


__all__ = (
    "STDOUT", "check_removable", "copy_file", "install", "is_stdout", "make_output_dir",
    "open_output", "output_dir", "output_file", "remove_owned", "remove_temporaries",
    "replace_directory", "staged_output", "write_bytes", "write_json", "write_text",
)
