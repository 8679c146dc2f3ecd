"""Benchmarks behind ``nemo-dask bench``: the solver against finemo (``solver``) and call-hits on
clusters of several sizes (``workers``). They print figures; nothing is asserted."""
