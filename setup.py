"""The C extensions; everything else is in pyproject.toml. ``optional=True``: without a
compiler the install still succeeds and the pure Python paths are used.

* ``mta_logging._accel`` (``mta_logging/_accel.c``): the write path
  (``mta_logging.speedups.accelerated()`` tells whether it is used);
* ``mta_logging.relay._spoolwriter`` (``mta_logging/relay/_spoolwriter.c``): the relay's spool
  writer threads, without the GIL (``mta_logging.relay.spooler.IN_C`` tells).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("mta_logging._accel", ["mta_logging/_accel.c"],
              depends=["mta_logging/_durable.h"], optional=True),
    Extension("mta_logging.relay._spoolwriter", ["mta_logging/relay/_spoolwriter.c"],
              depends=["mta_logging/_durable.h"], optional=True),
])
