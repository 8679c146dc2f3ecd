"""The call-hits stage: from a regions store and motifs to the partitioned Parquet dataset.

``api`` (the public :func:`call_hits`), ``plan`` (validation, claiming OUT, blocks,
``OUT/parameters.json``), ``identity`` (is this the same run; what a resume keeps), ``output``
(OUT's lock, ``--overwrite``, the regions store put in OUT), ``task`` (what one dask task does
on a worker) and ``execute`` (submitting the tasks of one or several runs through one loop,
each run's end: its manifest), ``progress`` (the bar, the batch log). Many runs on one cluster:
``many`` (:func:`call_hits_many`), ``sheet`` (reading ``RUNS.tsv`` against call-hits' own
options) and ``summary`` (``RUNS.summary.tsv``).

Named ``calling``, not ``call_hits``: a subpackage is set as an attribute of its parent when
imported, and would then hide the public function ``nemo_dask.call_hits``.
"""
