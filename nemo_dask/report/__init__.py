"""The HTML report: finemo's report tables and figures, computed from a nemo-dask output dataset.

``model`` (:class:`ReportTables`), ``compute`` (:func:`report_tables`: the numbers as polars
frames, with ``distinct``, ``tables``, ``cwms``, ``seqlets``), ``plots`` and ``logo`` (figures),
``html`` (the page, from ``templates/report.html.j2``) and ``write`` (:func:`write_report`:
tables, figures and page as files).
"""

from ..storage.temporary import matplotlib_config_dir

matplotlib_config_dir()  # before matplotlib is first imported (a read-only HOME)

from .compute import report_tables  # noqa: E402
from .model import ReportTables  # noqa: E402
from .seqlets import load_seqlets  # noqa: E402
from .write import write_report, write_tables  # noqa: E402

__all__ = [
    "ReportTables",
    "load_seqlets",
    "report_tables",
    "write_report",
    "write_tables",
]
