"""Reading accounting files back: streaming reader, filters, summaries and their renderings.

>>> from mta_logging.report import Reader, Filters, Summary
>>> summary = Summary().add_all(Reader(["accounting_files"], filters=Filters.build(kinds="b")))
"""

from mta_logging.report.filters import Filters
from mta_logging.report.reader import Issue, Reader, ReadStats, Record, read_records

__all__ = ["Filters", "Issue", "ReadStats", "Reader", "Record", "read_records"]
