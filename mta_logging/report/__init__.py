"""Reading accounting files back: streaming reader, filters, summaries and their renderings.

>>> from mta_logging.report import Filters, Reader, Summary
>>> report = Summary().add_all(Reader(["accounting_files"], filters=Filters.build(kinds="b"))
...                            ).report(top=20)                      # doctest: +SKIP
"""

from mta_logging.report.filters import Filters
from mta_logging.report.reader import Issue, Reader, ReadStats, Record, read_records
from mta_logging.report.summary import Summary

__all__ = ["Filters", "Issue", "ReadStats", "Reader", "Record", "Summary", "read_records"]
