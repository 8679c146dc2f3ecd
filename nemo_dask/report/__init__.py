"""The HTML report: finemo's report tables and figures, computed from a nemo-dask output dataset.

``model`` (:class:`ReportTables`), ``compute`` (:func:`report_tables`: the numbers as polars
frames, with ``distinct``, ``tables``, ``cwms``, ``seqlets``), ``plots`` and ``logo`` (figures),
``html`` (the page, from ``templates/report.html.j2``) and ``write`` (:func:`write_report`:
tables, figures and page as files).
"""

from .compute import report_tables
from .model import ReportTables
from .seqlets import load_seqlets
from .write import write_report, write_tables

__all__ = [
    "ReportTables",
    "load_seqlets",
    "report_tables",
    "write_report",
    "write_tables",
]
