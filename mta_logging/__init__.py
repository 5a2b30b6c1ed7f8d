"""mta-logging: accounting files for outbound mail, built on Python's ``logging``.

>>> import mta_logging
>>> mta_logging.configure("configs/accounting_files.ini")      # doctest: +SKIP
>>> mta_logging.AccountingLogger().delivered("bob@example.com", job_id="42")  # doctest: +SKIP
"""

from mta_logging.classify import Classifier, bounce_category
from mta_logging.config import AccountingSettings, configure, load, to_dict_config
from mta_logging.errors import ConfigError, FormatError, MtaLoggingError
from mta_logging.fields import DEFAULT_FIELDS, FIELD_NAMES
from mta_logging.formatters import AccountingFormatter, AccountingJsonFormatter
from mta_logging.handlers import AccountingFileHandler, KindFilter
from mta_logging.logger import DEFAULT_LOGGER, AccountingLogger
from mta_logging.outcome import Kind, Outcome

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_LOGGER",
    "FIELD_NAMES",
    "AccountingFileHandler",
    "AccountingFormatter",
    "AccountingJsonFormatter",
    "AccountingLogger",
    "AccountingSettings",
    "Classifier",
    "ConfigError",
    "FormatError",
    "Kind",
    "KindFilter",
    "MtaLoggingError",
    "Outcome",
    "bounce_category",
    "configure",
    "load",
    "to_dict_config",
]
