"""Regions: one entry point (:func:`~.source.open_regions`: a store or finemo's regions.npz),
the Zarr store every worker reads its block from, and converters into it.

``source`` (:func:`open_regions`, the :class:`RegionSource` protocol), ``store``
(:class:`Regions`, :class:`RegionBlock`, the layout), ``npz`` (:class:`NpzRegions`) and
``convert`` (one module per finemo input format).
"""
