"""The row parser's shortcuts: the same verdicts as the character-by-character rules."""

from __future__ import annotations

import pytest

from sipsock.sockdef import (
    _GOOD_HOSTS,
    GOOD_HOSTS_MAX,
    SocketDefError,
    _check_plain,
    parse_row,
    parse_socket,
)


def reference_plain(text: str) -> bool:
    """The rule as written before: no blank, no control character."""
    return not any(ch.isspace() or not ch.isprintable() for ch in text)


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_is_judged_as_the_character_rule_does(code: int) -> None:
    text = f"udp:127.0.0.1{chr(code)}:5060"

    def reject(reason: str) -> ValueError:
        return ValueError(reason)

    try:
        _check_plain(text, reject)
        plain = True
    except ValueError as error:
        assert str(error) == "contains blanks or control characters"
        plain = False
    assert plain == reference_plain(text)


def test_a_host_read_again_gives_the_same_canonical_spelling() -> None:
    first = parse_socket("udp:[0::1]:5060")
    again = parse_socket("udp:[0::1]:5070")
    assert first[1] == again[1] == "::1"
    assert parse_socket("udp:Example.COM.:5060")[1] == parse_socket("udp:Example.COM.:5061")[1]
    assert parse_socket("udp:Example.COM.:5060")[1] == "example.com"


def test_a_bad_host_is_rejected_every_time_and_never_remembered() -> None:
    for _ in range(2):
        with pytest.raises(SocketDefError) as caught:
            parse_row(7, "udp:300.1.1.1:5060")
        assert "is not an IPv4 address" in str(caught.value)
        assert caught.value.row_id == 7
    assert "300.1.1.1" not in _GOOD_HOSTS


def test_the_memory_of_good_hosts_is_bounded() -> None:
    for index in range(GOOD_HOSTS_MAX + 10):
        parse_socket(f"udp:h{index}.example:5060")
    assert len(_GOOD_HOSTS) <= GOOD_HOSTS_MAX
    assert parse_socket("udp:h1.example:5060")[1] == "h1.example"
