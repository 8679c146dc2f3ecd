"""Exceptions that carry a message meant for the user.

The CLI prints an :class:`InputError` as one line (no traceback) and exits with status 2; the
Python API lets it propagate. Messages say what was expected, what was found, in which file and
field, and what to do.
"""

from __future__ import annotations


class NemoDaskError(Exception):
    """Base class of nemo_dask's own errors."""


class InputError(NemoDaskError, ValueError):
    """An input file, array or parameter is unusable; the message says why and how to fix it."""


class CorruptDataError(InputError):
    """Stored data (a regions store's chunk, a run's partition) are missing or damaged: they are
    not what was written. Never retried: reading them again gives the same answer."""


class OutputLockedError(NemoDaskError, RuntimeError):
    """Another run is writing into the output location (it holds the lock)."""


class OutputExistsError(NemoDaskError, FileExistsError):
    """The output location holds something that would be overwritten or mixed with new results."""


class WorkersUnavailableError(NemoDaskError, RuntimeError):
    """No Dask worker can join the run: the batch system refused or can never start its jobs,
    or none connected within the bound the user set (``--worker-wait``)."""
