"""Getting a Dask cluster for call-hits, split by concern.

``options`` (the :class:`ClusterOptions` dataclass and its dask-config defaults), ``local``
(LocalCluster / LocalCUDACluster on loopback), ``jobqueue`` (SLURM, PBS, LSF, SGE through
dask-jobqueue) and ``security`` (TLS). The public entry points live in :mod:`.connect`.
"""
