"""One writer per output directory: a lock a run holds from before it touches OUT to its end.

The lock is a small JSON record at ``OUT/.nemo-dask.lock`` naming its holder: user, host, pid,
the process's start time, when the run started, a heartbeat time and a random token.

* **POSIX file systems**: the record is written under a temporary name, ``flock``-ed, and
  linked to the lock's name (``link`` fails when the name exists, atomically, on NFS too). The
  holder keeps the ``flock`` until it ends; the kernel drops it when the process dies.
* **Object stores** (``s3://...``): the record is one object created with a conditional PUT
  (``If-None-Match: *``): exactly one of two drivers creates it.

The holder rewrites the record's heartbeat every :data:`HEARTBEAT_S` seconds. Another driver
that finds the lock takes it over only when its holder is dead, by this rule:

* same host: its ``flock`` is free (POSIX), or its pid is gone or belongs to a process started
  at another time (object stores, or file systems without locks);
* another host: its ``flock`` is free *and* (or, where the file system cannot tell, simply) its
  heartbeat is older than ``stale_after`` seconds (``nemo_dask.call-hits.lock-stale-after``,
  default 300): a host that crashed stops beating, and a live run never misses that many beats.

Otherwise the second driver stops with :class:`~nemo_dask.errors.OutputLockedError`, one line
naming the holder. ``--overwrite`` takes the lock first, so it never removes a run's files
while another run holds them.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import getpass
import json
import os
import socket
import threading
import uuid
from typing import Any

from ..errors import OutputLockedError
from .temporary import temporary_name
from .urls import filesystem, is_url, location

#: The lock's name inside OUT (hidden; no dataset glob matches it).
LOCK_NAME = ".nemo-dask.lock"
#: Seconds between heartbeats of the holder.
HEARTBEAT_S = 30.0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    if started is not None:
        now = _process_start(pid)
        return now is None or now == started  # another start time: the pid was reused
    return True


def describe(holder: dict[str, Any]) -> str:
    """How messages name a lock's holder."""
    return (f"{holder.get('command', 'a run')} of {holder.get('user', '?')}@"
            f"{holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
            f"{holder.get('started_at', '?')}, last heartbeat {holder.get('heartbeat_at', '?')}")


class OutputLock:
    """The lock of one output directory; use as a context manager (see the module docstring).

    Parameters
    ----------
    out : path or URL
        The output directory (created if missing).
    command : str
        What holds it, for the messages of others ("call-hits").
    stale_after : float, optional
        Seconds without a heartbeat after which a holder on another host counts as dead;
        default ``nemo_dask.call-hits.lock-stale-after``.
    """

    def __init__(self, out: Any, command: str = "call-hits", stale_after: float | None = None
                 ) -> None:
        if stale_after is None:
            from .. import config

            stale_after = float(config.get("call-hits.lock-stale-after"))
        self.out = location(out)
        self.path = self.out / LOCK_NAME
        self.stale_after = stale_after
        self.record = {"command": command, "user": _user(), "host": socket.gethostname(),
                       "pid": os.getpid(), "process_start": _process_start(os.getpid()),
                       "started_at": _now(), "heartbeat_at": _now(),
                       "token": uuid.uuid4().hex}
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.took_over: dict[str, Any] | None = None

    # -- taking and giving back -----------------------------------------------------------------

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`OutputLockedError` naming its live holder."""
        for _ in range(5):
            if self._create():
                self._start_heartbeat()
                return self
            holder = self._judge()
            if holder is not None:
                raise OutputLockedError(
                    f"{self.out} is being written by another run ({describe(holder)}); wait "
                    "for it to finish, or choose another output directory. (A holder that "
                    f"died is detected: on this host at once, from other hosts "
                    f"{self.stale_after:g} s after its last heartbeat)")
        raise OutputLockedError(f"{self.out}: could not take the lock {LOCK_NAME} (other "
                                "drivers kept taking it); try again")

    def release(self) -> None:
        """Give the lock back (only if it is still this holder's)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        if is_url(self.path):
            with contextlib.suppress(OSError, ValueError):
                fs, root = filesystem(str(self.path))
                if json.loads(fs.cat_file(root)).get("token") == self.record["token"]:
                    fs.rm(root)
            return
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.stat(self.path), os.fstat(self._fd)):
                    os.unlink(self.path)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- POSIX and object-store primitives ------------------------------------------------------

    def _create(self) -> bool:
        """Create the lock; False if it exists."""
        data = json.dumps(self.record, indent=1).encode()
        if is_url(self.path):
            fs, root = filesystem(str(self.path))
            try:
                fs.pipe_file(root, data, mode="create")
            except TypeError:  # a file system without exclusive create: best effort
                if fs.exists(root):
                    return False
                fs.pipe_file(root, data)
            except (FileExistsError, OSError) as err:
                if _is_precondition(err) or fs.exists(root):
                    return False
                raise
            return True
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / temporary_name(LOCK_NAME)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _try_flock(fd)
            os.write(fd, data)
            os.fsync(fd)
            try:
                os.link(tmp, self.path)
            except (FileExistsError, FileNotFoundError):  # (the holder cleaned our temporary)
                os.close(fd)
                fd = -1
                return False
            self._fd = fd
            fd = -1
            return True
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _judge(self) -> dict[str, Any] | None:
        """The live holder of an existing lock; None after removing a dead holder's lock."""
        if is_url(self.path):
            fs, root = filesystem(str(self.path))
            holder = _read_json(lambda: fs.cat_file(root))
            if holder is None:
                return None if not fs.exists(root) else {"command": "a run (unreadable lock)"}
            if self._alive(holder, flock_free=None):
                return holder
            with contextlib.suppress(FileNotFoundError):
                fs.rm(root)
            self.took_over = holder
            return None
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None  # released meanwhile: take it
        try:
            try:
                free = _try_flock(fd)
            except BlockingIOError:
                return _read_json(lambda: os.pread(fd, 1 << 16, 0)) or {}
            holder = _read_json(lambda: os.pread(fd, 1 << 16, 0)) or {}
            if self._alive(holder, flock_free=free):
                return holder
            with contextlib.suppress(OSError):
                if os.path.samestat(os.stat(self.path), os.fstat(fd)):
                    os.unlink(self.path)  # ours to remove: we hold its flock now
            self.took_over = holder
            return None
        finally:
            os.close(fd)

    def _alive(self, holder: dict[str, Any], flock_free: bool | None) -> bool:
        """Whether the holder of a lock is alive (see the module docstring's rule)."""
        if not holder:
            return not flock_free  # no readable record: dead unless someone holds its flock
        same_host = holder.get("host") == socket.gethostname()
        if same_host and flock_free:
            return False  # its process would hold the flock
        if same_host and isinstance(holder.get("pid"), int):
            return _pid_alive(holder["pid"], holder.get("process_start"))
        beat = holder.get("heartbeat_at")
        try:
            age = (datetime.datetime.now(datetime.timezone.utc)
                   - datetime.datetime.fromisoformat(str(beat))).total_seconds()
        except ValueError:
            return True
        return age < self.stale_after

    def _start_heartbeat(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name="nemo-dask-lock",
                                      daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        interval = min(HEARTBEAT_S, self.stale_after / 4)
        while not self._stop.wait(interval):
            self.record["heartbeat_at"] = _now()
            data = json.dumps(self.record, indent=1).encode()
            with contextlib.suppress(OSError, ValueError):
                if is_url(self.path):
                    fs, root = filesystem(str(self.path))
                    fs.pipe_file(root, data)
                elif self._fd is not None:
                    # Overwritten in place, padded with spaces (valid JSON): a reader never
                    # sees an empty or half-truncated record.
                    size = max(len(data), os.fstat(self._fd).st_size)
                    os.pwrite(self._fd, data.ljust(size), 0)


def lock_holder(out: Any) -> dict[str, Any] | None:
    """The record of the lock on ``out`` when a live run holds it (on this host, or on another
    within ``stale_after``), else None."""
    probe = OutputLock.__new__(OutputLock)
    from .. import config

    probe.stale_after = float(config.get("call-hits.lock-stale-after"))
    path = location(out) / LOCK_NAME
    if is_url(path):
        fs, root = filesystem(str(path))
        holder = _read_json(lambda: fs.cat_file(root))
        return holder if holder is not None and probe._alive(holder, None) else None
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        holder = _read_json(lambda: os.pread(fd, 1 << 16, 0)) or {}
        try:
            free = _try_flock(fd, shared=True)
        except BlockingIOError:
            return holder
        if free:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
        return holder if probe._alive(holder, flock_free=free) else None
    finally:
        os.close(fd)


def _try_flock(fd: int, shared: bool = False) -> bool | None:
    """flock ``fd`` without waiting: True when taken, None when the file system has no locks;
    BlockingIOError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the record's pid and heartbeat decide
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        raise
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _read_json(read: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(read())
    except (OSError, ValueError, FileNotFoundError):
        return None
    return value if isinstance(value, dict) else None


def _is_precondition(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}"
    return "PreconditionFailed" in text or "412" in text or isinstance(err, FileExistsError)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


__all__ = ("HEARTBEAT_S", "LOCK_NAME", "OutputLock", "describe", "lock_holder")
