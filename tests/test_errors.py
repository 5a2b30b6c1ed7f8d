"""`ConfigError` spells the value as its source does: YAML for a YAML file, Python otherwise."""

from __future__ import annotations

import datetime

import pytest

from mta_logging.errors import ConfigError, spell_value


@pytest.mark.parametrize(("value", "yaml", "python"), [
    (True, "true", "True"),
    (False, "false", "False"),
    (None, "null", "None"),
    ("perhaps", "'perhaps'", "'perhaps'"),
    ("true", "'true'", "'true'"),
    (2.5, "2.5", "2.5"),
    (float("inf"), ".inf", "inf"),
    (float("-inf"), "-.inf", "-inf"),
    (float("nan"), ".nan", "nan"),
    (datetime.date(2026, 12, 1), "2026-12-01", "datetime.date(2026, 12, 1)"),
    ([1, None, "a"], "[1, null, 'a']", "[1, None, 'a']"),
    ({"archiving": True, "x": [False]}, "{'archiving': true, 'x': [false]}",
     "{'archiving': True, 'x': [False]}"),
])
def test_a_value_is_spelt_as_its_source_spells_it(value, yaml, python):
    assert spell_value(value, "r6.yaml") == yaml
    assert spell_value(value, "/etc/mta/LOGGING.YML") == yaml
    assert spell_value(value, "accounting_files.ini") == python
    assert spell_value(value, None) == python


def test_the_message_names_the_source_the_key_and_the_value_as_written():
    error = ConfigError("accounting.archving", True, "unknown setting", source="r6.yaml")
    assert str(error) == "r6.yaml: accounting.archving: true is not valid; unknown setting"
    assert str(ConfigError("compress", None, "expected true or false")) == (
        "compress: None is not valid; expected true or false")


def test_located_names_the_file_once():
    error = ConfigError("spool_dir", "spool", "not a directory")
    assert str(error.located("r2.yaml")) == (
        "r2.yaml: spool_dir: 'spool' is not valid; not a directory")
    named = ConfigError("listen", None, "expected host:port", source="r1.yml")
    assert named.located("r2.yaml") is named
