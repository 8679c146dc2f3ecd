"""Names of the temporaries every writer uses: ``.<name>.tmp-<32 hex digits>``.

A leading dot (hidden, and skipped by pyarrow's dataset discovery) and a last suffix that is
never a data suffix, so no dataset glob (``OUT/hits/*.parquet``, ``*.tsv``, ``*.json``,
``*.zarr``) ever matches one, even one left by a killed writer. :func:`is_temporary`
recognises them (and the ``.tmp-<hex>-<name>`` names that earlier versions gave partitions) for
the clean-up at the next run (:func:`nemo_dask.storage.outputs.remove_temporaries`).
"""

from __future__ import annotations

import re
import uuid

_TMP_MARK = ".tmp-"
# .<name>.tmp-<hex> (this version), .tmp-<hex>-<name> (dataset writers before it).
_TMP_RE = re.compile(r"^\.(?P<new>.+)\.tmp-[0-9a-f]{8,32}$|^\.tmp-[0-9a-f]{8,32}-(?P<old>.+)$")
#: Longest final name kept in a temporary's name, so that it stays within NAME_MAX (255 bytes).
MAX_STEM = 200


def temporary_name(name: str) -> str:
    """A fresh temporary name for final name ``name`` (same directory; matches no data glob)."""
    return f".{name[:MAX_STEM]}{_TMP_MARK}{uuid.uuid4().hex}"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary made by :func:`temporary_name` (or by older versions)."""
    return bool(_TMP_RE.match(name))


def temporary_of(name: str) -> str | None:
    """The final name a temporary named ``name`` was for (truncated as made); None if not one."""
    m = _TMP_RE.match(name)
    return None if m is None else (m.group("new") or m.group("old"))


__all__ = ("MAX_STEM", "is_temporary", "temporary_name", "temporary_of")


def matplotlib_config_dir() -> None:
    """Give matplotlib a private cache directory when HOME's is not writable.

    matplotlib keeps its font cache under ``$MPLCONFIGDIR`` or ``~/.config/matplotlib`` and,
    when neither can be written (a read-only or foreign HOME on a cluster node), makes a
    temporary one and prints two lines about it on every import. Done here first, quietly;
    the directory is removed at exit. A user's own ``MPLCONFIGDIR`` is left alone.
    """
    import atexit
    import os
    import shutil
    import tempfile

    if os.environ.get("MPLCONFIGDIR"):
        return
    wanted = os.path.join(os.path.expanduser("~"), ".config", "matplotlib")
    probe = wanted
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        probe = parent if parent != probe else ""
    if probe and os.access(probe, os.W_OK | os.X_OK) and os.path.isdir(probe):
        return
    private = tempfile.mkdtemp(prefix="nemo-dask-matplotlib-")
    os.environ["MPLCONFIGDIR"] = private
    atexit.register(shutil.rmtree, private, ignore_errors=True)
