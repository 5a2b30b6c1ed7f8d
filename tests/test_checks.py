"""Checks of single YAML values: the error names the dotted key, the value and what is allowed."""

import math

import pytest

from mta_logging.checks import check_keys, count, flag, seconds, text
from mta_logging.errors import ConfigError


def test_check_keys() -> None:
    check_keys("nats.", {"servers": []}, ("servers", "stream"))
    with pytest.raises(ConfigError, match=r"^nats\.subjects: 'a' is not valid; unknown setting; "
                                          r"allowed: servers, stream$"):
        check_keys("nats.", {"subjects": "a"}, ("servers", "stream"))
    with pytest.raises(ConfigError, match=r"^nats: \[1\] is not valid; expected a mapping$"):
        check_keys("nats.", [1], ("servers",))
    with pytest.raises(ConfigError, match=r"^ship settings: 3 is not valid; expected a mapping$"):
        check_keys("", 3, ("paths",), what="ship settings")


def test_text() -> None:
    assert text("host", "  relay1 ") == "relay1"
    for bad in ("", "  ", None, 5):
        with pytest.raises(ConfigError, match=r"^host: .* is not valid; expected a non-empty text"):
            text("host", bad)


def test_seconds() -> None:
    assert seconds("timeout", None, 10.0) == 10.0
    assert seconds("timeout", 2, 10.0) == 2.0
    assert seconds("max_age", 0, 1.0, allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match="expected a number of seconds greater than 0"):
        seconds("timeout", 0, 10.0)
    for bad in (True, "5", math.inf, math.nan):
        with pytest.raises(ConfigError, match="expected a number of seconds"):
            seconds("timeout", bad, 10.0)


def test_count() -> None:
    assert count("batch", None, 100) == 100
    assert count("batch", 3, 100) == 3
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match=r"^batch: .* expected a whole number of at least 1$"):
            count("batch", bad, 100)


def test_flag() -> None:
    assert flag("dsn.enabled", None, True) is True
    assert flag("dsn.enabled", False, True) is False
    assert flag("dsn.enabled", True, False) is True
    for value in ("yes", 1, 0, "true"):
        with pytest.raises(ConfigError, match=r"^dsn\.enabled: .* is not valid; expected true "
                                              r"or false$"):
            flag("dsn.enabled", value, True)
