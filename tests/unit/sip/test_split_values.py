"""`split_values`: a regex scan that splits exactly as the character-by-character rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.sip import split_values


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
    ],
)
def test_split_values_examples_match_the_character_rules(text: str) -> None:
    assert split_values(text) == _split_values_by_character(text)


def test_a_long_unclosed_value_is_split_in_linear_time() -> None:
    text = ("<" + '"a\\' * 2000 + ",") * 20
    assert split_values(text) == _split_values_by_character(text)
