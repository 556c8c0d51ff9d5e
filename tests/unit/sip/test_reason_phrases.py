"""The reason phrase of every status code the daemon may answer with."""

from __future__ import annotations

import pytest

from sipsock.apps.dispatch import error_phrase
from sipsock.sip.grammar import REASON_PHRASES, reason_phrase


@pytest.mark.parametrize(
    ("code", "phrase"),
    [
        (403, "Forbidden"),
        (486, "Busy Here"),
        (481, "Call/Transaction Does Not Exist"),
        (603, "Decline"),
        (499, "Request Failure"),  # no phrase of its own: its class's (RFC 3261 7.2)
        (599, "Server Failure"),
        (699, "Global Failure"),
        (399, "Redirection"),
        (700, "Unknown"),
        (99, "Unknown"),
    ],
)
def test_each_code_has_its_phrase_or_its_class_phrase(code: int, phrase: str) -> None:
    assert reason_phrase(code) == phrase


def test_an_error_answer_is_never_called_bad_request_unless_it_is_a_400() -> None:
    for code in range(300, 700):
        phrase = error_phrase(code, "why")
        assert phrase.endswith(" (why)")
        assert phrase.startswith("Bad Request") == (code == 400), (code, phrase)
    assert error_phrase(403, "caller barred", "Forbidden Here") == "Forbidden Here (caller barred)"


def test_every_phrase_is_one_printable_line() -> None:
    for code, phrase in REASON_PHRASES.items():
        assert 100 <= code <= 699 and phrase.isprintable() and phrase.strip() == phrase
