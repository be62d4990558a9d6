"""One check for every option value, wherever it comes from (``observed_batch.options``)."""

from __future__ import annotations

from typing import Any

import pytest

from observed_batch import ConfigError
from observed_batch.middleware import TimeoutGuardMiddleware, TracingMiddleware
from observed_batch.options import Option

SIZE = Option("size", int, 1024, "Size.", min=64)
RATE = Option("rate", float, 1.0, "Rate.", max=1)
FRACTION = Option("fraction", float, 0.1, "Fraction.", below=1)
MODE = Option("mode", ("per_record", "batch"), "per_record", "Mode.")
LABEL = Option("label", str, None, "Label.")
NAMES = Option("names", str, "", "Names.", accepts=lambda value: isinstance(value, list), expects="a list")
CLOCK = Option("clock", None, None, "Clock.", accepts=callable, expects="a callable returning seconds")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        (SIZE, 64, 64),
        (RATE, 1, 1.0),  # an int where a float is declared: widened
        (FRACTION, 0.0, 0.0),
        (MODE, "batch", "batch"),
        (LABEL, None, None),  # the default is None: None is a value
        (NAMES, ["a.B"], ["a.B"]),  # a richer value from code
        (NAMES, "a.B,c.D", "a.B,c.D"),
        (CLOCK, None, None),
    ],
)
def test_valid_values_pass(option: Option, value: Any, expected: Any) -> None:
    # GIVEN a declared option WHEN a valid value is checked THEN it comes back (typed)
    checked = option.check(value, option.name)
    assert checked == expected
    assert type(checked) is type(expected)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (SIZE, 63, "size=63 must be at least 64"),
        (SIZE, True, "size=True must be of type int"),
        (SIZE, 1.5, "size=1.5 must be of type int"),
        (RATE, 1.5, "rate=1.5 must be at most 1"),
        (RATE, -0.5, "rate=-0.5 must not be negative"),
        (FRACTION, 1.0, "fraction=1.0 must be below 1"),
        (MODE, "sideways", "mode='sideways' is not one of: per_record, batch"),
        (LABEL, 3, "label=3 must be of type str"),
        (NAMES, 3, "names=3 must be a list"),
        (CLOCK, 3, "clock=3 must be a callable returning seconds"),
    ],
)
def test_invalid_values_name_where_they_came_from(option: Option, value: Any, message: str) -> None:
    # GIVEN a declared option WHEN an invalid value is checked THEN ConfigError names it and the rule
    with pytest.raises(ConfigError) as raised:
        option.check(value, option.name)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("option", "raw", "expected"),
    [(SIZE, " 512 ", 512), (RATE, "0.5", 0.5), (MODE, "batch ", "batch"), (LABEL, " orders ", "orders")],
)
def test_environment_text_is_parsed_then_checked(option: Option, raw: str, expected: Any) -> None:
    assert option.parse(raw, "OBSERVED_BATCH_X") == expected


def test_environment_text_of_the_wrong_kind_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="OBSERVED_BATCH_X_SIZE='big' is not an integer"):
        SIZE.parse("big", "OBSERVED_BATCH_X_SIZE")


def test_a_builtin_constructor_runs_the_same_check() -> None:
    # GIVEN built-ins constructed in code with values their declarations refuse
    # WHEN / THEN the message is the declaration's, naming the middleware and the option
    with pytest.raises(ConfigError, match=r"^tracing option max_response_bytes=63 must be at least 64$"):
        TracingMiddleware(max_response_bytes=63)
    with pytest.raises(ConfigError, match=r"^timeout_guard option remaining_fraction=1 must be below 1$"):
        TimeoutGuardMiddleware(remaining_fraction=1)


def test_describe_says_what_a_valid_value_is() -> None:
    assert SIZE.describe() == "an integer >= 64"
    assert FRACTION.describe() == "a number >= 0 and < 1"
    assert MODE.describe() == "one of: per_record, batch"
    assert Option("flag", bool, False).describe() == "true or false"
