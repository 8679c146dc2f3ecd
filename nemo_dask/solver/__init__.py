"""The Fi-NeMo solver: pure functions of arrays, no dask, zarr or files.

``kernels`` (finemo's numerics as tensor steps: preprocessing, the proximal step, scoring),
``stream`` (:func:`fit_block` / :func:`fit_stream`: regions in batch slots, refilled as they
finish) and ``service`` (one solver thread per worker process, fed by the worker's tasks).
"""
