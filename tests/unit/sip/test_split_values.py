"""`split_values`: its scans split exactly as the character-by-character rules.

A value with quotes is split by a pattern, one without by ``str.find``
(`sipsock.sip.grammar._split_outside_brackets`); both are checked here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.sip import split_values
from tests.unit.sip.growth import cost_growth

#: Linear gives about 8, quadratic 64 (as in `tests.unit.sip.test_linear_cost`).
FACTOR = 8
LINEAR = 20.0


def _split_values_by_character(value: str) -> list[str]:
    """`split_values` as it was written before its regex: one character at a time."""
    values: list[str] = []
    start = 0
    in_quotes = in_angle = escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif in_quotes:
            if char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == "," and not in_angle:
            values.append(value[start:index].strip())
            start = index + 1
    values.append(value[start:].strip())
    return values


@settings(max_examples=3000)
@given(st.text(st.sampled_from('a,"<>\\ \t\n;=é'), max_size=60))
def test_split_values_splits_as_the_character_by_character_rules(text: str) -> None:
    assert split_values(text) == _split_values_by_character(text)


@settings(max_examples=3000)
@given(st.text(st.sampled_from("a,<> \t;="), max_size=60))
def test_a_value_without_quotes_splits_as_the_character_by_character_rules(text: str) -> None:
    assert split_values(text) == _split_values_by_character(text)


@pytest.mark.parametrize(
    "text",
    [
        '"a,b" <sip:x@y;p="1,2">, <sip:z>',
        '<sip:a;x="q>,r">, b',
        '"unclosed, x',
        '"esc\\", still, in" , out',
        "<unclosed, x",
        'a, "b\\',
        ",,",
        " , ",
        "<sip:a;lr>, <sip:b;lr>,<sip:c>",
        "<sip:a;x=>,b>, <sip:c,d>",
        "a>, <b, c",
        "<>,<<>>,>,<",
    ],
)
def test_split_values_examples_match_the_character_rules(text: str) -> None:
    assert split_values(text) == _split_values_by_character(text)


def test_a_long_unclosed_value_is_split_in_linear_time() -> None:
    text = ("<" + '"a\\' * 2000 + ",") * 20
    assert split_values(text) == _split_values_by_character(text)


def _brackets_before_a_far_comma(n: int) -> str:
    return "<>" * n + ","


def _unclosed_brackets(n: int) -> str:
    return "a<, " * n


@pytest.mark.parametrize("make", [_brackets_before_a_far_comma, _unclosed_brackets])
def test_a_long_value_without_quotes_is_split_in_linear_time(make: Callable[[int], str]) -> None:
    # Each search resumes where the last stopped: a comma far behind many
    # brackets is not searched for again after each of them.
    assert cost_growth(make, split_values, 16_000, FACTOR) < LINEAR
