"""Converters from every finemo input format to a regions store (a module per kind of input
file).

Each ``convert_*`` function streams its inputs chunk by chunk into a new Zarr store (see
:mod:`nemo_dask.regions.store`) and returns it opened; the arrays equal what finemo's matching
``extract-regions-*`` command writes to ``regions.npz``.
"""

from .bigwig import convert_bigwig
from .h5 import convert_bpnet_h5, convert_chrombpnet_h5
from .intervals import convert_intervals
from .modisco import convert_modisco
from .npz import convert_npz

__all__ = [
    "convert_bigwig",
    "convert_bpnet_h5",
    "convert_chrombpnet_h5",
    "convert_intervals",
    "convert_modisco",
    "convert_npz",
]
