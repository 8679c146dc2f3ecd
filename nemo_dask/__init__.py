"""nemo_dask: the Fi-NeMo motif-instance caller as a Dask-distributed batch processor.

Data flow: ``convert`` (finemo inputs -> Zarr regions store) -> ``call_hits`` (blocks of regions
solved on Dask workers -> Parquet dataset) -> ``export`` / ``collapse_hits`` /
``intersect_hits`` / ``write_report``.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import config as _config

# Every default (nemo_dask.yaml) is in dask's configuration from here on, before any module
# that reads it is imported: dask.config.get("nemo_dask.cluster") works after `import nemo_dask`.
_config.register()

# Where each public name lives. Imported on first use (PEP 562), so that `import nemo_dask` and
# the CLI stay fast and the driver of a distributed run never imports torch.
_EXPORTS: dict[str, str] = {
    "AnnotateResult": "matching.annotate",
    "BlockResult": "solver.stream",
    "CallHitsResult": "calling.api",
    "CallHitsManyResult": "calling.many",
    "RunReport": "calling.summary",
    "SheetError": "calling.sheet",
    "ClusterOptions": "clusters.connect",
    "ExportResult": "finemo.export",
    "GpuUnavailableError": "clusters.connect",
    "HitComparison": "compare",
    "InputError": "errors",
    "MatchOptions": "matching.annotate",
    "MotifParams": "params",
    "NpzRegions": "regions.npz",
    "Motifs": "motifs",
    "NemoDaskError": "errors",
    "CorruptDataError": "errors",
    "OutputExistsError": "errors",
    "OutputLockedError": "errors",
    "RegionBlock": "regions.store",
    "Regions": "regions.store",
    "ReportTables": "report",
    "RunOptions": "params",
    "SolverParams": "params",
    "StorageFaultError": "storage.faults",
    "WorkerMemoryError": "calling.deaths",
    "WorkersUnavailableError": "errors",
    "annotate": "matching.annotate",
    "call_hits": "calling.api",
    "call_hits_many": "calling.many",
    "collapse_hits": "finemo.postprocess",
    "compare_hits": "compare",
    "connect": "clusters.connect",
    "convert_bigwig": "regions.convert",
    "convert_bpnet_h5": "regions.convert",
    "convert_chrombpnet_h5": "regions.convert",
    "convert_intervals": "regions.convert",
    "convert_modisco": "regions.convert",
    "convert_npz": "regions.convert",
    "export": "finemo.export",
    "finemo_hits": "finemo.read",
    "finemo_qc": "finemo.read",
    "fit_block": "solver.stream",
    "import_finemo": "finemo.importing",
    "intersect_hits": "finemo.postprocess",
    "load_hits": "finemo.read",
    "load_motifs": "motifs",
    "open_regions": "regions.source",
    "read_motifs": "dataset",
    "read_parameters": "dataset",
    "report_tables": "report",
    "scan_hits": "dataset",
    "scan_qc": "dataset",
    "write_collapsed": "finemo.postprocess",
    "write_intersection": "finemo.postprocess",
    "write_report": "report",
    "write_tracks": "tracks",
}

__all__ = [*sorted(_EXPORTS), "version"]  # the lazy exports above are the public API


def version() -> str:
    """The installed nemo_dask version (``"unknown"`` when run from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    try:
        return _dist_version("nemo_dask")
    except PackageNotFoundError:
        return "unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nemo_dask' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
