"""Every RFC 4475 torture message in tests/data/rfc4475, by name, with its verdict."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sipsock.sip import Request, Response, SipParseError, parse

DATA = Path(__file__).parents[2] / "data" / "rfc4475"

VALID = "valid"
DROP = "drop"  # parse raises SipParseError: no response possible or wanted
INVALID_RESPONSE = "invalid response"  # parses, validate() raises, status None

#: name -> expected verdict: VALID, DROP, INVALID_RESPONSE or the error code asked for.
VERDICTS: dict[str, str | int] = {
    # 3.1.1 valid messages
    "wsinv": VALID,
    "intmeth": VALID,
    "esc01": VALID,
    "escnull": VALID,
    "longreq": VALID,
    "dblreq": VALID,
    "semiuri": VALID,
    "transports": VALID,
    "mpart01": VALID,
    "unreason": VALID,
    "noreason": VALID,
    # 3.1.2 invalid messages
    "badinv01": 400,
    "scalar02": 400,
    "scalarlg": INVALID_RESPONSE,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": VALID,  # Date does not matter to sipsock: ignored, as the RFC allows
    "regbadct": 400,
    "badaspec": 400,
    "baddn": DROP,  # as archived it has no empty line ending the headers
    "mismatch02": 501,
    "bigcode": DROP,
    # 3.2 to 3.4 semantic tests: well-formed unless said otherwise
    "badbranch": VALID,
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": VALID,
    "bext01": VALID,
    "invut": VALID,
    "regaut01": VALID,
    "multi01": 400,
    "mcl01": DROP,
    "bcast": VALID,
    "zeromf": VALID,
    "cparam01": VALID,
    "cparam02": VALID,
    "regescrt": VALID,
    "sdp01": VALID,
    "inv2543": VALID,
}

#: In INDEX.md but absent from the shared test data this suite was built from.
MISSING_FROM_SHARED_DATA = {"esc02", "lwsdisp", "clerr", "ncl", "badvers", "mismatch01"}


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def test_every_message_file_has_a_verdict() -> None:
    assert {path.stem for path in DATA.glob("*.dat")} == set(VERDICTS)


def test_every_index_entry_is_tested_or_known_missing() -> None:
    indexed = set(re.findall(r"^\| `(\w+)\.dat`", (DATA / "INDEX.md").read_text(), re.M))
    assert indexed == set(VERDICTS) | MISSING_FROM_SHARED_DATA


@pytest.mark.parametrize("name", sorted(n for n, v in VERDICTS.items() if v == VALID))
def test_valid_message_parses_validates_and_reserializes(name: str) -> None:
    data = load(name)
    message = parse(data)
    message.validate()
    if isinstance(message, Request):
        assert message.error_response is None
    again = parse(bytes(message))
    assert again.start_line() == message.start_line()
    assert again.body == message.body
    added = [] if message.get("Content-Length") else [("Content-Length", str(len(message.body)))]
    assert again.headers == message.headers + added


@pytest.mark.parametrize("name", sorted(n for n, v in VERDICTS.items() if isinstance(v, int)))
def test_invalid_request_parses_with_the_error_response_the_rfc_asks_for(name: str) -> None:
    message = parse(load(name))
    assert isinstance(message, Request)
    assert message.error_response is not None
    assert message.error_response[0] == VERDICTS[name]
    with pytest.raises(SipParseError) as raised:
        message.validate()
    assert raised.value.status == VERDICTS[name]


@pytest.mark.parametrize("name", sorted(n for n, v in VERDICTS.items() if v == DROP))
def test_unframeable_message_is_rejected_by_parse(name: str) -> None:
    with pytest.raises(SipParseError):
        parse(load(name))


def test_invalid_response_fails_validation_without_a_status() -> None:
    message = parse(load("scalarlg"))
    assert isinstance(message, Response)
    with pytest.raises(SipParseError) as raised:
        message.validate()
    assert raised.value.status is None


def test_wsinv_unfolds_and_reads_odd_spacing() -> None:
    message = parse(load("wsinv"))
    assert message.max_forwards == 68
    assert message.cseq == (9, "INVITE")
    assert message.top_via.branch == "390skdjuw"
    assert message.top_via.transport == "UDP"
    assert [v.split()[0] for v in message.get_all("v")] == ["SIP", "SIP", "SIP"]
    assert message.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert message.get("Subject") == ""
    assert len(message.body) == 150


def test_intmeth_keeps_raw_control_bytes_in_display_name() -> None:
    message = parse(load("intmeth"))
    assert isinstance(message, Request)
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert "\\\x00" in (message.get("To") or "")
    assert parse(bytes(message)) == message


def test_dblreq_discards_trailing_invite() -> None:
    message = parse(load("dblreq"))
    assert isinstance(message, Request)
    assert message.method == "REGISTER"
    assert message.body == b""


def test_inv2543_body_runs_to_end_of_datagram() -> None:
    data = load("inv2543")
    message = parse(data)
    assert message.body == data[data.index(b"\r\n\r\n") + 4 :]
    assert message.top_via.branch is None
    assert message.max_forwards is None


def test_inv2543_without_content_length_is_rejected_on_a_stream() -> None:
    with pytest.raises(SipParseError):
        parse(load("inv2543"), datagram=False)


def test_mpart01_body_framed_by_content_length() -> None:
    message = parse(load("mpart01"))
    assert len(message.body) == 553
    assert b"\x00" in message.body


def test_noreason_has_empty_reason_phrase() -> None:
    message = parse(load("noreason"))
    assert isinstance(message, Response)
    assert (message.code, message.reason) == (100, "")
    assert bytes(message).startswith(b"SIP/2.0 100 \r\n")


def test_unreason_reason_phrase_is_utf8_text() -> None:
    message = parse(load("unreason"))
    assert isinstance(message, Response)
    assert message.code == 200
    assert message.reason.encode() in load("unreason")
    assert not message.reason.isascii()


def test_longreq_reads_all_34_via_values() -> None:
    message = parse(load("longreq"))
    assert len(message.get_all("Via")) == 34
    assert len(message.body) == 150


def test_transports_reads_every_via_transport() -> None:
    message = parse(load("transports"))
    from sipsock.sip import parse_via

    transports = [parse_via(v).transport for v in message.get_all("Via")]
    assert transports == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_badbranch_keeps_bare_magic_cookie() -> None:
    assert parse(load("badbranch")).top_via.branch == "z9hG4bK"


def test_zeromf_has_max_forwards_zero() -> None:
    assert parse(load("zeromf")).max_forwards == 0


def test_mcl01_conflicting_content_lengths_ask_for_400() -> None:
    with pytest.raises(SipParseError) as raised:
        parse(load("mcl01"))
    assert raised.value.status == 400


def test_bigcode_is_dropped_silently() -> None:
    with pytest.raises(SipParseError) as raised:
        parse(load("bigcode"))
    assert raised.value.status is None


def test_baddn_with_the_missing_empty_line_added_asks_for_400() -> None:
    message = parse(load("baddn") + b"\r\n")
    assert isinstance(message, Request)
    assert message.error_response == (400, "Bad Request")


def test_bcast_second_via_is_broadcast_address() -> None:
    from sipsock.sip import parse_via

    assert parse_via(parse(load("bcast")).get_all("Via")[1]).host == "255.255.255.255"
