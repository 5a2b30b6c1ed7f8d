"""The C accelerator of the write path (``mta_logging/_accel.c``); everything else is in
pyproject.toml. ``optional=True``: without a compiler the install still succeeds and the pure
Python path is used (``mta_logging.speedups.accelerated()`` tells which)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mta_logging._accel", ["mta_logging/_accel.c"], optional=True)])
