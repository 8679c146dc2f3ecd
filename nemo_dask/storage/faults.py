"""Storage faults as one line: a full disk or quota, a read-only or unwritable location.

A write that fails for want of space (``ENOSPC``, ``EDQUOT``, ``EFBIG``) or permission
(``EACCES``, ``EPERM``, ``EROFS``), or an object store whose endpoint stops answering, is not a
bug to show as a traceback: the user needs the
path, the file system and its free space, what was written before it failed, and what to do.
:func:`reporting_faults` turns such an ``OSError`` raised inside it into a
:class:`StorageFaultError` with that line; other errors pass through unchanged. Writers remove
their temporaries on the way out (:mod:`nemo_dask.storage.outputs`), so nothing half-written is
left under a final name and a rerun after the fault is fixed starts from the complete files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import NemoDaskError
from .temporary import is_temporary
from .urls import is_url

#: errno -> how the line names the fault.
FAULTS: dict[int, str] = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
#: Faults that freeing space (or a larger quota) fixes.
SPACE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class StorageFaultError(NemoDaskError):
    """A write (or read) failed for want of space or permission.

    Its message is one line: ``PATH: fault (free space); written; fix``. ``path``, ``errno``
    (the OS's code), ``note`` (the file system's free space), ``written`` and ``fix`` are kept
    apart so that the driver can add what the whole run wrote to a fault found on a worker
    (:meth:`with_written`).
    """

    def __init__(self, path: Any, errno_: int | None, note: str = "",
                 written: str | None = None, fix: str | None = None,
                 what: str | None = None) -> None:
        self.path, self.errno, self.note, self.written = str(path), errno_, note, written
        self.what = what
        if fix is None and what is not None:
            fix = "once it answers again, run the same command again"
        if fix is None:
            fix = ("free space there (or write elsewhere), then run the same command again"
                   if errno_ in SPACE_FAULTS else
                   "make it writable for this user (or write elsewhere), then run the same "
                   "command again")
        self.fix = fix
        if what is None:
            what = FAULTS.get(errno_ or 0, os.strerror(errno_) if errno_ else "storage fault")
        text = f"{self.path}: {what}{note}"
        if written:
            text += f"; {written}"
        super().__init__(f"{text}; {fix}")

    def with_written(self, written: str, fix: str | None = None) -> StorageFaultError:
        """The same fault, saying ``written`` (and ``fix``, when given) instead."""
        return type(self)(self.path, self.errno, self.note, written,
                          self.fix if fix is None else fix, self.what)

    def __reduce__(self) -> tuple[Any, ...]:  # raised on workers, re-raised in the driver
        return (type(self), (self.path, self.errno, self.note, self.written, self.fix,
                             self.what))


def is_fault(err: BaseException) -> bool:
    """Whether ``err`` is an ``OSError`` of space or permission (:data:`FAULTS`)."""
    return isinstance(err, OSError) and err.errno in FAULTS


def format_size(n: float) -> str:
    """``n`` bytes for people, in dask's binary units: ``0 B``, ``512.00 kiB``, ``1.31 GiB``."""
    from dask.utils import format_bytes

    return format_bytes(int(n))


def file_system_note(path: Any, code: int | None) -> str:
    """Where the fault happened, for the message: the free space of the file system holding
    ``path`` (space faults), or nothing when the OS cannot say (a URL, a vanished path)."""
    if code not in SPACE_FAULTS:
        return ""
    probe = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        probe = parent if parent != probe else None
    if not probe:
        return ""
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return ""
    return f" (its file system has {format_size(usage.free)} free of {format_size(usage.total)})"


def tree_size(path: Any) -> int:
    """Bytes in the regular files under ``path`` (0 when it is gone); links not followed."""
    total = 0
    for root, _dirs, files in os.walk(os.fspath(path)):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def fault_error(err: OSError, path: Any, written: str | None = None,
                fix: str | None = None) -> StorageFaultError:
    """:class:`StorageFaultError` for ``err`` met while writing (or reading) ``path``.

    The OS's own file name, when the error carries one, is more precise than ``path`` and
    wins. ``fix`` defaults to freeing space (space faults) or to making the location writable
    (permission faults).
    """
    shown = err.filename if err.filename else path
    if isinstance(shown, (str, os.PathLike)) and is_temporary(os.path.basename(shown)):
        shown = os.path.dirname(shown)  # our hidden temporary: the directory is what to fix
    return StorageFaultError(shown, err.errno, file_system_note(shown, err.errno), written, fix)


#: Exception classes (by name: botocore, aiohttp and gcsfs need not be installed) that mean
#: an object store's endpoint does not answer.
_UNREACHABLE = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ServerTimeoutError",
})


def is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) says a remote store does not
    answer: a refused or timed-out connection."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ in _UNREACHABLE or isinstance(e, (ConnectionRefusedError,
                                                                ConnectionResetError,
                                                                ConnectionAbortedError)):
            return True
        e = e.__cause__ or e.__context__
    return False


def endpoint_of(err: BaseException) -> str | None:
    """The URL of the endpoint ``err`` failed to reach: botocore's own word, else the
    ``AWS_ENDPOINT_URL`` the clients were given."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        url = (getattr(e, "kwargs", None) or {}).get("endpoint_url")
        if url:  # the request's URL: its server is what the user knows
            from urllib.parse import urlsplit

            parts = urlsplit(str(url))
            return f"{parts.scheme}://{parts.netloc}" if parts.netloc else str(url)
        e = e.__cause__ or e.__context__
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")


def unreachable_error(err: BaseException, path: Any, written: str | None = None,
                      fix: str | None = None) -> StorageFaultError:
    """:class:`StorageFaultError` for an object store that stopped answering at ``path``."""
    where = endpoint_of(err)
    what = ("the object store does not answer" + (f" at {where}" if where else "")
            + f" ({type(err).__name__})")
    return StorageFaultError(path, None, "", written, fix, what)


@contextlib.contextmanager
def reporting_faults(path: Any, written: Callable[[], str | None] | str | None = None,
                     fix: str | None = None) -> Iterator[None]:
    """Turn a space or permission ``OSError`` raised inside into :class:`StorageFaultError`.

    ``written`` says what was written before the fault (a string, or a function called only
    when a fault happens, so that it can count files). A writer that removes what it wrote
    before the error reaches here should raise :func:`fault_error` itself, with the free space
    measured before the removal.
    """
    try:
        yield
    except StorageFaultError:
        raise
    except Exception as err:
        if is_fault(err):
            note = written() if callable(written) else written
            raise fault_error(err, path, note, fix) from None  # type: ignore[arg-type]
        if is_url(path) and is_unreachable(err):
            note = written() if callable(written) else written
            raise unreachable_error(err, path, note) from None
        raise


__all__ = ("FAULTS", "SPACE_FAULTS", "StorageFaultError", "endpoint_of", "fault_error",
           "file_system_note", "is_unreachable", "unreachable_error", "format_size", "is_fault", "reporting_faults", "tree_size")
