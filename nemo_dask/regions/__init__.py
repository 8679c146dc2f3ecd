"""Regions: the Zarr store every worker reads its block from, and converters into it.

``store`` (:class:`Regions`, :class:`RegionBlock`, :func:`open_regions`) and ``convert`` (one
module per finemo input format).
"""
