"""Storage faults as one line: a full disk or quota, a read-only or unwritable location.

A write that fails for want of space (``ENOSPC``, ``EDQUOT``, ``EFBIG``) or permission
(``EACCES``, ``EPERM``, ``EROFS``) is not a bug to show as a traceback: the user needs the
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
                 written: str | None = None, fix: str | None = None) -> None:
        self.path, self.errno, self.note, self.written = str(path), errno_, note, written
        if fix is None:
            fix = ("free space there (or write elsewhere), then run the same command again"
                   if errno_ in SPACE_FAULTS else
                   "make it writable for this user (or write elsewhere), then run the same "
                   "command again")
        self.fix = fix
        what = FAULTS.get(errno_ or 0, os.strerror(errno_) if errno_ else "storage fault")
        text = f"{self.path}: {what}{note}"
        if written:
            text += f"; {written}"
        super().__init__(f"{text}; {fix}")

    def with_written(self, written: str, fix: str | None = None) -> StorageFaultError:
        """The same fault, saying ``written`` (and ``fix``, when given) instead."""
        return type(self)(self.path, self.errno, self.note, written,
                          self.fix if fix is None else fix)

    def __reduce__(self) -> tuple[Any, ...]:  # raised on workers, re-raised in the driver
        return (type(self), (self.path, self.errno, self.note, self.written, self.fix))


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
    except OSError as err:
        if not is_fault(err):
            raise
        note = written() if callable(written) else written
        raise fault_error(err, path, note, fix) from None


__all__ = ("FAULTS", "SPACE_FAULTS", "StorageFaultError", "fault_error", "file_system_note", "format_size", "is_fault", "reporting_faults", "tree_size")
