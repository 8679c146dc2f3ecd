"""One writer per OUT: the lock's holder is named, a dead holder's lock is taken over (on this
host at once, from another host after its heartbeat stops), and the lock is given back."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemo_dask.errors import OutputLockedError
from nemo_dask.storage.lock import LOCK_NAME, OutputLock, lock_holder

HOLD = """
import sys, time
from nemo_dask.storage.lock import OutputLock
lock = OutputLock(sys.argv[1], "call-hits").acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture()
def holder(tmp_path):
    """Another process (a driver) holding the lock of ``tmp_path / 'out'``."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    yield out, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_second_driver_is_told_who_holds_the_lock(holder):
    out, proc = holder
    with pytest.raises(OutputLockedError) as err:
        OutputLock(out).acquire()
    text = str(err.value)
    assert "\n" not in text
    assert f"{out} is being written by another run (call-hits of " in text
    assert f"@{socket.gethostname()}, pid {proc.pid}, started " in text
    assert lock_holder(out)["pid"] == proc.pid


def test_a_killed_holder_is_taken_over_at_once_on_its_host(holder):
    out, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / LOCK_NAME).exists() and lock_holder(out) is None
    with OutputLock(out) as lock:
        assert lock.took_over["pid"] == proc.pid
        assert lock_holder(out)["pid"] == os.getpid()
    assert not (out / LOCK_NAME).exists()
    assert not [n for n in os.listdir(out) if n.startswith(".")], "no temporaries left"


def test_a_record_without_its_flock_is_stale_even_if_its_pid_lives(tmp_path):
    """A live pid (here this process) whose lock file nobody flocks: not a holder (the pid was
    reused, or the holder died between writing and linking)."""
    from nemo_dask.storage.lock import _process_start

    out = tmp_path / "out"
    out.mkdir()
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    (out / LOCK_NAME).write_text(json.dumps({
        "command": "call-hits", "user": "me", "host": socket.gethostname(), "pid": os.getpid(),
        "process_start": _process_start(os.getpid()), "started_at": now, "heartbeat_at": now}))
    with OutputLock(out) as lock:
        assert lock.took_over["pid"] == os.getpid()


def _foreign(out: Path, beat_age_s: float) -> None:
    beat = (datetime.datetime.now(datetime.timezone.utc)
            - datetime.timedelta(seconds=beat_age_s)).isoformat(timespec="seconds")
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps({
        "command": "call-hits", "user": "someone", "host": "other-node", "pid": 1,
        "started_at": beat, "heartbeat_at": beat, "token": "x"}))


def test_a_holder_on_another_host_counts_while_it_beats(tmp_path):
    out = tmp_path / "out"
    _foreign(out, beat_age_s=10)
    with pytest.raises(OutputLockedError, match="someone@other-node, pid 1"):
        OutputLock(out, stale_after=300).acquire()
    _foreign(out, beat_age_s=1000)  # its host died: no heartbeat for longer than stale_after
    with OutputLock(out, stale_after=300) as lock:
        assert lock.took_over["host"] == "other-node"


def test_the_holder_beats_and_gives_the_lock_back(tmp_path, monkeypatch):
    from nemo_dask.storage import lock as lock_module

    ticks = iter(range(10**6))
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(lock_module, "_now", lambda: f"2026-01-01T00:00:00.{next(ticks):06d}")
    out = tmp_path / "out"
    with OutputLock(out, stale_after=300):
        first = json.loads((out / LOCK_NAME).read_text())["heartbeat_at"]
        deadline = time.time() + 10
        while json.loads((out / LOCK_NAME).read_text())["heartbeat_at"] == first:
            assert time.time() < deadline, "no heartbeat"
            time.sleep(0.05)
        with pytest.raises(OutputLockedError):
            OutputLock(out).acquire()  # the same process's second driver too
    assert not (out / LOCK_NAME).exists()
    with OutputLock(out):
        pass
