"""The call-hits stage: from a regions store and motifs to the partitioned Parquet dataset.

``api`` (the public :func:`call_hits`), ``plan`` (validation, blocks, ``OUT/parameters.json``),
``task`` (what one dask task does on a worker), ``execute`` (submitting the tasks, progress) and
``output`` (run identity, resume, the manifest).

Named ``calling``, not ``call_hits``: a subpackage is set as an attribute of its parent when
imported, and would then hide the public function ``nemo_dask.call_hits``.
"""
