"""The HTML report: finemo's report tables and figures, computed from a nemo-dask output dataset.

``report_tables`` returns the numbers as polars frames; ``write_report`` writes finemo's four
tables, the figures and ``report.html``.
"""

from .api import ReportTables, report_tables, write_report, write_tables
from .regions import NpzRegions, open_report_regions
from .seqlets import load_seqlets

__all__ = [
    "NpzRegions",
    "ReportTables",
    "load_seqlets",
    "open_report_regions",
    "report_tables",
    "write_report",
    "write_tables",
]
