"""The parser and the framer cost time linear in their input (no quadratic path to attack).

Each test compares the cost of an input with that of one ``FACTOR`` times
larger (`cost_growth`): linear is about ``FACTOR``, quadratic ``FACTOR ** 2``.
"""

from __future__ import annotations

import contextlib

from sipsock.sip import SipParseError, StreamFramer, parse
from tests.unit.sip.growth import cost_growth

FACTOR = 8
#: Linear gives about 8; quadratic 64. Generous for a busy machine, far from 64.
LINEAR = 20.0
BIG = 10**8

HEAD = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
    b"To: <sip:a@example.com>\r\n"
    b"From: <sip:b@example.com>;tag=1\r\n"
    b"Call-ID: c\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
)
TAIL = b"Content-Length: 0\r\n\r\n"


def _parse_and_check(data: bytes) -> None:
    message = parse(data, max_size=BIG)
    with contextlib.suppress(SipParseError):
        message.validate()


def test_folded_header_costs_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD + b"Subject: x" + b"\r\n y" * n + b"\r\n" + TAIL

    assert cost_growth(make, _parse_and_check, 16_000, FACTOR) < LINEAR


def test_folds_between_blank_continuation_lines_cost_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD + b"Subject: x" + b"   \r\n \t \r\n\t y" * n + b"\r\n" + TAIL

    assert cost_growth(make, _parse_and_check, 16_000, FACTOR) < LINEAR


def test_long_run_of_blanks_before_a_fold_costs_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD + b"Subject: x" + b" " * (8 * n) + b"\r\n" + b" " * (8 * n) + b"y\r\n" + TAIL

    assert cost_growth(make, _parse_and_check, 16_000, FACTOR) < LINEAR


def test_many_header_lines_cost_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD + b"X-H: y\r\n" * n + TAIL

    assert cost_growth(make, _parse_and_check, 8_000, FACTOR) < LINEAR


def test_many_via_values_cost_linear_time() -> None:
    def make(n: int) -> bytes:
        return (
            HEAD
            + b"Via: "
            + b"SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKv," * n
            + b"SIP/2.0/UDP h\r\n"
            + TAIL
        )

    assert cost_growth(make, _parse_and_check, 2_000, FACTOR) < LINEAR


def test_many_via_parameters_cost_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD.replace(b";branch=z9hG4bKx", b";branch=z9hG4bKx" + b";p=1" * n) + TAIL

    assert cost_growth(make, _parse_and_check, 4_000, FACTOR) < LINEAR


def test_many_contact_addresses_cost_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD + b"Contact: " + b"<sip:a@192.0.2.1>;q=0.5," * n + b"<sip:b@h>\r\n" + TAIL

    assert cost_growth(make, _parse_and_check, 2_000, FACTOR) < LINEAR


def test_header_fed_byte_by_byte_to_the_framer_costs_linear_time() -> None:
    def feed(data: bytes) -> None:
        framer = StreamFramer(max_message_size=BIG, max_header_size=BIG)
        out: list[bytes] = []
        for index in range(0, len(data), 16):
            out += framer.feed(data[index : index + 16])
        assert len(out) == 1

    def make(n: int) -> bytes:
        return HEAD + b"X-H: " + b"y" * n + b"\r\n" + TAIL

    assert cost_growth(make, feed, 4_000, FACTOR) < LINEAR


def test_many_messages_in_one_read_cost_linear_time() -> None:
    def feed(data: bytes) -> None:
        StreamFramer(max_message_size=BIG, max_header_size=BIG).feed(data)

    def make(n: int) -> bytes:
        return (HEAD + TAIL) * n

    assert cost_growth(make, feed, 1_000, FACTOR) < LINEAR


def test_many_address_parameters_cost_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD.replace(b";tag=1", b";tag=1" + b";p=v" * n) + TAIL

    assert cost_growth(make, _parse_and_check, 4_000, FACTOR) < LINEAR


def test_a_failing_address_parameter_list_costs_linear_time() -> None:
    def make(n: int) -> bytes:  # the match fails at the very end: no backtracking blow-up
        return HEAD.replace(b";tag=1", b";tag=1" + b"; p = v " * n + b";=") + TAIL

    assert cost_growth(make, _parse_and_check, 2_000, FACTOR) < LINEAR


def test_many_quoted_commas_cost_linear_time() -> None:
    def make(n: int) -> bytes:
        return HEAD + b'Contact: "' + b"a," * n + b'" <sip:a@h>\r\n' + TAIL

    assert cost_growth(make, _parse_and_check, 8_000, FACTOR) < LINEAR
