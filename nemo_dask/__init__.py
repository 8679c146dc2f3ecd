"""nemo_dask: the Fi-NeMo motif-instance caller as a Dask-distributed batch processor."""

from .errors import InputError, NemoDaskError, OutputExistsError

__all__ = ["InputError", "NemoDaskError", "OutputExistsError"]
