"""Imported by the embedded cluster's fork server (``clusters.local``): loads the compiled CPU
solver's kernels once, from numba's cache, so that every worker forked from the server starts
with them loaded instead of loading them on its first block."""

from .cpu import warm_up

warm_up()
