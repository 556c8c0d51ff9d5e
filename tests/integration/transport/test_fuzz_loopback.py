# mypy: disable-error-code="no-untyped-call"
"""Hostile payloads over real loopback WS and UDP sockets, through the real dispatcher.

A seeded stream of mutated SIP messages, torture messages and random bytes
(text frames when the payload is UTF-8, binary frames otherwise; datagrams
on UDP) goes to a socket served by the real `Dispatcher` and `Responder`.
Every answer is a SIP response we may send, nothing is logged as a failure,
and a valid OPTIONS is answered 200: on WS sent last on the same connection,
on UDP after every `BATCH` datagrams. Bounded: `PAYLOADS` payloads,
`TIMEOUT` seconds per wait.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet import threads
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import provider

from sipsock.apps import Dispatcher, Responder
from sipsock.config import WebSocketSettings
from sipsock.sip import Response, parse
from sipsock.sockdef import parse_row
from sipsock.transport import open_listener
from tests.fuzz_targets import ANSWER_CODES, VALID_OPTIONS
from tests.net import free_port
from tests.wsclient import ws_connect

reactor: Any = _reactor
PAYLOADS = 300
#: Datagrams sent between two OPTIONS that wait for their answer.
BATCH = 25
TIMEOUT = 30.0
RFC4475 = Path(__file__).resolve().parents[2] / "data" / "rfc4475"
SEEDS = [path.read_bytes() for path in sorted(RFC4475.glob("*.dat"))] + [VALID_OPTIONS]
NOISE = [b"\r\n", b" ", b":", b";", b",", b"<", b'"', b"SIP/2.0", b"\x00", b"\xff", b"9" * 40]


def payloads(seed: int, count: int) -> Iterator[bytes]:
    """``count`` hostile payloads, the same for the same ``seed``."""
    chance = random.Random(seed)
    for _ in range(count):
        kind = chance.random()
        if kind < 0.15:
            yield chance.randbytes(chance.randrange(0, 300))
            continue
        data = bytearray(chance.choice(SEEDS))
        for _ in range(chance.randrange(1, 6)):
            position = chance.randrange(0, len(data) + 1)
            edit = chance.random()
            if edit < 0.4:
                data[position:position] = chance.choice(NOISE)
            elif edit < 0.7:
                del data[position : position + chance.randrange(1, 20)]
            elif edit < 0.85 and position < len(data):
                data[position] = chance.randrange(256)
            else:
                del data[position:]
        yield bytes(data)


def check_answers(answers: list[bytes]) -> list[Response]:
    responses = []
    for answer in answers:
        if answer == b"\r\n":
            continue
        response = parse(answer)
        assert isinstance(response, Response), answer
        assert response.code in ANSWER_CODES, answer
        responses.append(response)
    return responses


class Failures:
    """Events logged with a failure while the test runs."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            if "log_failure" in event:
                self.events.append(event)

        self.observer = observe
        globalLogPublisher.addObserver(observe)

    def stop(self) -> None:
        globalLogPublisher.removeObserver(self.observer)
        if self.events:
            self.events[0]["log_failure"].raiseException()


def ws_client_run(port: int) -> list[bytes]:
    """Send every payload, then a valid OPTIONS; return every answer up to its 200."""
    answers: list[bytes] = []
    options = VALID_OPTIONS.replace(b"SIP/2.0/UDP", b"SIP/2.0/WS").replace(
        b"still-serving", b"last-ws"
    )
    with ws_connect(port, timeout=TIMEOUT) as client:
        for payload in payloads(7118, PAYLOADS):
            try:
                client.send(payload.decode("utf-8"))
            except UnicodeDecodeError:
                client.send(payload)
        client.send(options.decode())
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            answer = client.recv(timeout=deadline - time.monotonic())
            data = answer.encode() if isinstance(answer, str) else answer
            answers.append(data)
            if b"last-ws" in data:
                return answers
    raise AssertionError("no answer to the last OPTIONS")


def udp_client_run(port: int) -> list[bytes]:
    """Send every payload as a datagram, an OPTIONS after each `BATCH`; every answer.

    Waiting for the answer to each OPTIONS keeps the socket's receive buffer
    from overflowing (a dropped datagram is not what this test is about);
    an OPTIONS is sent again when its answer is late.
    """
    answers: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.connect(("127.0.0.1", port))
        for index, payload in enumerate(payloads(3261, PAYLOADS), start=1):
            if payload:
                client.send(payload)
            if index % BATCH == 0 or index == PAYLOADS:
                answers += udp_options(client, f"probe-{index}".encode())
    return answers


def udp_options(client: socket.socket, call_id: bytes) -> list[bytes]:
    """Send an OPTIONS with ``call_id`` until it is answered; the answers up to its own."""
    options = VALID_OPTIONS.replace(b"still-serving", call_id)
    answers: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        client.send(options)
        client.settimeout(1.0)
        try:
            while True:
                data = client.recv(65535)
                answers.append(data)
                if call_id in data:
                    return answers
        except TimeoutError:
            continue
    raise AssertionError(f"no answer to OPTIONS {call_id!r}")


@pytest_twisted.ensureDeferred
async def test_hostile_websocket_messages_leave_the_connection_serving() -> None:
    port = free_port()
    dispatcher = Dispatcher(Responder())
    listener = open_listener(
        parse_row(1, f"ws:127.0.0.1:{port}"),
        1,
        dispatcher,
        reactor=reactor,
        websocket=WebSocketSettings(require_origin=False),
    )
    failures = Failures()
    try:
        answers = await threads.deferToThread(ws_client_run, port)
    finally:
        await listener.stop()
        failures.stop()
    responses = check_answers(answers)
    assert responses[-1].code == 200
    assert dispatcher.app_errors == 0
    assert dispatcher.parse_errors > 0


@pytest_twisted.ensureDeferred
async def test_hostile_datagrams_leave_the_socket_serving() -> None:
    port = free_port()
    dispatcher = Dispatcher(Responder())
    listener = open_listener(parse_row(1, f"udp:127.0.0.1:{port}"), 1, dispatcher, reactor=reactor)
    failures = Failures()
    try:
        answers = await threads.deferToThread(udp_client_run, port)
    finally:
        await listener.stop()
        failures.stop()
    responses = check_answers(answers)
    assert responses[-1].code == 200
    assert dispatcher.app_errors == 0
    assert dispatcher.parse_errors > 0
