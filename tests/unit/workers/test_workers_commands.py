# mypy: disable-error-code="no-untyped-call"
"""Wire forms of the worker commands: definitions, counters pages, long byte strings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.protocols import amp

from sipsock.apps.spec import freeze
from sipsock.config import default_settings, parse_config_text
from sipsock.seams import SocketCounters
from sipsock.sockdef import FLAG_NAMES, SocketDef, parse_row
from sipsock.workers.commands import (
    AMP_VALUE_LIMIT,
    COUNTER_NAMES,
    STATS_PAGE,
    Adoption,
    Descriptors,
    LargeBytes,
    SocketStats,
    WorkerError,
    _read_definition,
    batches,
    decode_adoptions,
    decode_entries,
    decode_failures,
    decode_spec,
    decode_stats_page,
    decode_updates,
    definition_fields,
    definition_from_fields,
    encode_adoption,
    encode_adoptions,
    encode_entries,
    encode_failures,
    encode_spec,
    encode_stats_page,
    encode_updates,
    join_encoded,
    split_chunks,
)

definitions = st.builds(
    SocketDef,
    proto=st.sampled_from(["udp", "tcp", "tls", "ws", "wss"]),
    host=st.sampled_from(["127.0.0.1", "::1", "10.1.2.3", "edge.example.com"]),
    port=st.integers(0, 65535),
    advertised_host=st.none() | st.sampled_from(["203.0.113.7", "sip.example.com"]),
    advertised_port=st.none() | st.integers(1, 65535),
    tag=st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
    flags=st.frozensets(st.sampled_from(FLAG_NAMES)),
    tos=st.none() | st.integers(0, 255),
    text=st.text(max_size=40),
    row_id=st.none() | st.integers(-(2**31), 2**31),
)


FIELD_NAMES = sorted(definition_fields(parse_row(1, "udp:127.0.0.1:5060")))


def decode_definition(text: str) -> SocketDef:
    return definition_from_fields(json.loads(text))


def encode_definition(sdef: SocketDef) -> str:
    return json.dumps(definition_fields(sdef))


@given(definitions)
def test_a_definition_survives_the_wire_with_its_text_and_row(sdef: SocketDef) -> None:
    back = decode_definition(encode_definition(sdef))
    assert back == sdef
    assert (back.text, back.row_id) == (sdef.text, sdef.row_id)


def test_a_parsed_row_survives_the_wire() -> None:
    sdef = parse_row(4, "udp:[::1]:5070", "sip.example.com:5099", "edge", "frag,reuse_port", "16")
    assert decode_definition(encode_definition(sdef)) == sdef


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"proto": "sctp"}, "unknown proto 'sctp'"),
        ({"port": 70000}, "port 70000 is out of range"),
        ({"port": True}, "port is True"),
        ({"flags": ["bogus"]}, "bad flags ['bogus']"),
        ({"tos": 300}, "tos 300 is out of range"),
        ({"host": None}, "host is None"),
    ],
)
def test_a_bad_definition_is_refused_with_the_field_named(
    change: dict[str, Any], reason: str
) -> None:
    data = json.loads(encode_definition(parse_row(1, "udp:127.0.0.1:5060")))
    data.update(change)
    with pytest.raises(WorkerError) as info:
        decode_definition(json.dumps(data))
    assert reason in info.value.reason


#: A field left out.
MISSING = "<missing>"
#: Values of every JSON type, in and out of each field's range.
json_values = (
    st.none()
    | st.booleans()
    | st.integers(-2, 70000)
    | st.text(max_size=3)
    | (st.lists(st.sampled_from([*FLAG_NAMES, "bogus", 1]), max_size=2))
    | st.sampled_from(["udp", "tls", "127.0.0.1", 0, 255, 256, 65535, 65536, 1.5, {}, MISSING])
)


@given(definitions, st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=3))
def test_the_quick_check_accepts_and_refuses_what_the_field_reader_does(
    sdef: SocketDef, changes: dict[str, Any]
) -> None:
    data = json.loads(encode_definition(sdef))
    data.update(changes)
    for name in [k for k, v in changes.items() if v == MISSING]:
        del data[name]
    try:
        expected: SocketDef | str = _read_definition(data)
    except WorkerError as error:
        expected = error.reason
    try:
        got: SocketDef | str = definition_from_fields(data)
    except WorkerError as error:
        got = error.reason
    assert got == expected
    if isinstance(got, SocketDef):
        assert isinstance(expected, SocketDef)
        assert (got.text, got.row_id, got.flags) == (expected.text, expected.row_id, expected.flags)


@pytest.mark.parametrize(("data", "reason"), [([1], "not a JSON object"), ({}, "proto is missing")])
def test_garbage_is_not_a_definition(data: object, reason: str) -> None:
    with pytest.raises(WorkerError, match=reason):
        definition_from_fields(data)


CONFIG = """
[core]
application = "sipsock.apps:StatelessProxy"
state_dir = "relative/state"

[[proxy.route]]
uri_host = "*.example.com"
destination = "sip:10.0.0.1:5060"
"""


def test_a_spec_survives_the_wire_with_its_settings_and_secret() -> None:
    spec = freeze(parse_config_text(CONFIG, source="/etc/sipsock.toml"))
    assert spec.secret is not None and len(spec.secret) == 32
    back = decode_spec(encode_spec(spec))
    assert back == spec
    assert back.settings.proxy.routes == spec.settings.proxy.routes
    assert back.text == CONFIG
    defaults = freeze(default_settings())
    assert decode_spec(encode_spec(defaults)) == defaults


def test_a_spec_with_its_own_secret_carries_none_derived() -> None:
    spec = freeze(parse_config_text('[proxy]\nsecret = "s3"\n', source="x.toml"))
    assert spec.secret is None
    assert decode_spec(encode_spec(spec)).settings.proxy.secret == "s3"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not JSON"),
        (b"[]", "must hold exactly secret, source, text"),
        (b'{"source": "x", "text": null}', "must hold exactly"),
        (b'{"source": "x", "text": null, "secret": null, "more": 1}', "must hold exactly"),
        (b'{"source": null, "text": null, "secret": null}', "spec source is None"),
        (b'{"source": "x", "text": 3, "secret": null}', "spec text is 3"),
        (b'{"source": "x", "text": null, "secret": ["s"]}', "spec secret is"),
        (b'{"source": "x", "text": null, "secret": ""}', "spec secret is empty"),
        (b'{"source": "x.toml", "text": "[core", "secret": null}', "x.toml: not valid TOML"),
        (
            b'{"source": "x.toml", "text": "[core]\\nbogus = 1", "secret": null}',
            r"x.toml: \[core\] bogus",
        ),
    ],
)
def test_a_bad_spec_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(WorkerError, match=reason):
        decode_spec(data)


def counters(seed: int) -> SocketCounters:
    return SocketCounters(**{name: seed + i for i, name in enumerate(COUNTER_NAMES)})


def test_stats_come_in_pages_that_add_up() -> None:
    stats = [SocketStats(key, counters(key)) for key in range(STATS_PAGE * 2 + 3)]
    seen: list[SocketStats] = []
    start, more = 0, True
    while more:
        page, more = encode_stats_page(stats, start)
        assert len(page) < AMP_VALUE_LIMIT
        decoded = decode_stats_page(page)
        seen += decoded
        start += len(decoded)
    assert seen == stats


@pytest.mark.parametrize(
    "text", ["nope", "{}", "[[1, 2]]", "[[1, -1, 0, 0, 0, 0, 0, 0, 0]]", '[["a"]]']
)
def test_a_malformed_stats_page_is_refused(text: str) -> None:
    with pytest.raises(WorkerError):
        decode_stats_page(text)


@pytest.mark.parametrize("size", [0, 1, AMP_VALUE_LIMIT, AMP_VALUE_LIMIT + 1, 200_000])
def test_large_bytes_cross_an_amp_box_whole(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    argument = LargeBytes()
    box: dict[bytes, bytes] = {}
    argument.toBox(b"data", box, {"data": data}, None)
    assert all(len(value) <= AMP_VALUE_LIMIT for value in box.values())
    wire = amp.AmpBox(box).serialize()  # AMP itself accepts every piece
    assert wire
    objects: dict[str, Any] = {}
    argument.fromBox(b"data", dict(box), objects, None)
    assert objects["data"] == data


def test_split_chunks_keeps_one_piece_for_nothing() -> None:
    assert split_chunks(b"") == [b""]
    assert split_chunks(b"abcde", 2) == [b"ab", b"cd", b"e"]


def test_batches_keep_the_order_and_cut_at_the_size() -> None:
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert batches([], 2) == []
    assert [len(b) for b in batches(list(range(300)))] == [128, 128, 44]
    with pytest.raises(ValueError, match="at least one"):
        batches([1], 0)


def test_a_batch_of_adoptions_survives_the_wire() -> None:
    sdefs = [parse_row(n, f"udp:127.0.0.1:{5060 + n}", tag=f"t{n}") for n in range(500)]
    adoptions = [
        Adoption(n + 1, n if n % 2 else None, n % 3 == 0, n % 5 == 0, s)
        for n, s in enumerate(sdefs)
    ]
    data = encode_adoptions(adoptions)
    assert len(data) > AMP_VALUE_LIMIT  # LargeBytes carries it whole
    assert decode_adoptions(data) == [(a.key, a) for a in adoptions]


def test_a_bad_definition_fails_its_own_adoption_only() -> None:
    good = definition_fields(parse_row(1, "udp:127.0.0.1:5070"))
    data = json.dumps(
        [[1, 0, True, False, good], [2, 1, True, True, {**good, "port": 70000}]]
    ).encode()
    [(first, adopted), (second, refused)] = decode_adoptions(data)
    assert (first, second) == (1, 2)
    assert isinstance(adopted, Adoption)
    assert isinstance(refused, WorkerError)
    assert "port 70000 is out of range" in refused.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"nope", "not JSON"),
        (b"{}", "not a JSON list"),
        (b'[["1", 0, true, false, {}]]', "bad item"),
        (b"[[1, 0, true, false]]", "bad item"),
        (b"[[1, 0, true, {}]]", "bad item"),
        (b'[[1, 0, true, "no", {}]]', "bad item"),
        (b'[[1, "slot", true, false, {}]]', "bad item"),
    ],
)
def test_a_garbled_adoption_batch_is_refused_whole(data: bytes, reason: str) -> None:
    with pytest.raises(WorkerError, match=reason):
        decode_adoptions(data)


def test_updates_entries_and_failures_survive_the_wire() -> None:
    sdef = parse_row(7, "udp:127.0.0.1:5070", advertised="203.0.113.1:5080", tos="16")
    assert decode_updates(encode_updates([(3, sdef)])) == [(3, sdef)]
    entries = [(sdef.socket_text, 4, False, sdef), ("udp:127.0.0.1:5070", None, True, sdef)]
    assert decode_entries(encode_entries(entries)) == entries
    assert decode_failures(encode_failures({3: "no", 9: "never"})) == {3: "no", 9: "never"}
    assert decode_failures(encode_failures({})) == {}


def test_a_bad_update_definition_is_refused_in_its_place() -> None:
    data = json.dumps([[3, {"proto": "sctp"}]]).encode()
    [(key, error)] = decode_updates(data)
    assert key == 3
    assert isinstance(error, WorkerError)


@pytest.mark.parametrize("data", [b"[1]", b'[["a", 1]]', b"[[1]]"])
def test_garbled_update_and_failure_lists_are_refused(data: bytes) -> None:
    with pytest.raises(WorkerError):
        decode_updates(data)
    with pytest.raises(WorkerError):
        decode_failures(data)


def test_an_announcement_needs_its_whole_shape() -> None:
    with pytest.raises(WorkerError, match="bad item"):
        decode_entries(b'[["udp:127.0.0.1:5070", null, "yes", {}]]')


class DescriptorPeer:
    """The part of an AMP protocol that `Descriptors` uses: descriptor ordinals."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.received: dict[int, int] = {}

    def _sendFileDescriptor(self, fd: int) -> int:
        self.sent.append(fd)
        return len(self.sent) - 1

    def _getDescriptor(self, ordinal: int) -> int:
        return self.received.pop(ordinal)


def test_descriptors_travel_as_ordinals_in_one_value() -> None:
    peer = DescriptorPeer()
    argument = Descriptors()
    text = argument.toStringProto([10, 11, 12], peer)
    assert (text, peer.sent) == (b"0,1,2", [10, 11, 12])
    peer.received = {0: 40, 1: 41, 2: 42}
    assert argument.fromStringProto(text, peer) == [40, 41, 42]
    assert argument.fromStringProto(b"", peer) == []
    with pytest.raises(WorkerError, match="bad descriptor list"):
        argument.fromStringProto(b"0,x", peer)


def test_adoptions_encoded_item_by_item_are_the_list_json_gives() -> None:
    # fanout encodes each socket's item once and joins them per worker: the bytes
    # must be those of the whole list encoded at once.
    sdefs = [
        parse_row(1, "udp:127.0.0.1:5060", tag="a", flags="frag,reuse_port", tos="0x10"),
        parse_row(2, "udp:[::1]:5061", advertised="sip.example.com:5080"),
    ]
    adoptions = [Adoption(7, None, True, False, sdefs[0]), Adoption(8, 3, False, True, sdefs[1])]
    rows = [[a.key, a.slot, a.shared, a.static, definition_fields(a.sdef)] for a in adoptions]
    whole = json.dumps(rows, separators=(",", ":")).encode("utf-8")
    assert encode_adoptions(adoptions) == whole
    assert join_encoded([encode_adoption(a) for a in adoptions]) == whole
    assert join_encoded([]) == json.dumps([]).encode()
