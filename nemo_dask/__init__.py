"""nemo_dask: the Fi-NeMo motif-instance caller as a Dask-distributed batch processor.

Data flow: ``convert`` (finemo inputs -> Zarr regions store) -> ``call_hits`` (blocks of regions
solved on Dask workers -> Parquet dataset) -> ``export`` / ``collapse_hits`` /
``intersect_hits`` / ``write_report``.
"""

from .cluster import ClusterOptions, GpuUnavailableError, connect
from .convert import (
    convert_bigwig,
    convert_bpnet_h5,
    convert_chrombpnet_h5,
    convert_modisco,
    convert_npz,
)
from .dataset import read_motifs, read_parameters, scan_hits, scan_qc
from .errors import InputError, NemoDaskError, OutputExistsError
from .exporting import ExportResult, export, finemo_hits, finemo_qc
from .importing import import_finemo
from .motifs import Motifs, load_motifs
from .params import MotifParams, SolverParams
from .postprocess import (
    collapse_hits,
    intersect_hits,
    load_hits,
    write_collapsed,
    write_intersection,
)
from .report import ReportTables, report_tables, write_report
from .run import CallHitsResult, call_hits
from .solver import BlockResult, fit_block
from .store import RegionBlock, Regions, open_regions

__all__ = [
    "BlockResult", "CallHitsResult", "ClusterOptions", "ExportResult", "GpuUnavailableError",
    "InputError", "Motifs", "MotifParams", "NemoDaskError", "OutputExistsError", "RegionBlock",
    "Regions", "ReportTables", "SolverParams", "call_hits", "collapse_hits", "connect",
    "convert_bigwig", "convert_bpnet_h5", "convert_chrombpnet_h5", "convert_modisco",
    "convert_npz", "export", "finemo_hits", "finemo_qc", "fit_block", "import_finemo",
    "intersect_hits", "load_hits", "load_motifs", "open_regions", "read_motifs",
    "read_parameters", "report_tables", "scan_hits", "scan_qc", "write_collapsed",
    "write_intersection", "write_report",
]
