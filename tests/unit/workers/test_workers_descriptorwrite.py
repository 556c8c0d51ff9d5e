# mypy: disable-error-code="no-untyped-call"
"""`send_descriptors_together`: a batch's descriptors travel in one message, in order."""

from __future__ import annotations

import array
import os
import socket
from typing import Any

import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.protocols import amp

from sipsock.workers.commands import Descriptors
from sipsock.workers.descriptorwrite import MAX_DESCRIPTORS, send_descriptors_together
from sipsock.workers.directwrite import write_at_once
from tests.unit.workers.test_workers_directwrite import adopt

reactor: Any = _reactor

#: More than one message can carry.
COUNT = MAX_DESCRIPTORS + 47


class Take(amp.Command):
    arguments = [(b"fds", Descriptors()), (b"inodes", amp.Unicode())]
    response = [(b"same", amp.Boolean())]


class Taking(amp.AMP):
    @Take.responder
    def take(self, fds: list[int], inodes: str) -> dict[str, bool]:
        got = [os.fstat(fd).st_ino for fd in fds]
        for fd in fds:
            os.close(fd)
        return {"same": ",".join(map(str, got)) == inodes}


class Sending(amp.AMP):
    def connectionMade(self) -> None:
        super().connectionMade()
        write_at_once(self.transport)
        send_descriptors_together(self.transport)


def memory_files(count: int) -> list[int]:
    return [os.memfd_create(f"d{i}") for i in range(count)]


def inodes(fds: list[int]) -> str:
    return ",".join(str(os.fstat(fd).st_ino) for fd in fds)


@pytest_twisted.ensureDeferred
async def test_every_descriptor_arrives_in_order_through_amp() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sending, taking = Sending(), Taking()
    adopt(left, sending)
    adopt(right, taking)
    files = memory_files(COUNT)
    try:
        for size in (COUNT, 1, 3):
            answer = await sending.callRemote(Take, fds=files[:size], inodes=inodes(files[:size]))
            assert answer == {"same": True}
    finally:
        for fd in files:
            os.close(fd)
        for protocol in (sending, taking):
            ending: Any = protocol.transport
            ending.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_batch_of_descriptors_is_one_message_per_253_not_one_each() -> None:
    """Before: 300 messages of one byte each, one read (and wake-up) each in the worker."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sending = Sending()
    adopt(left, sending)
    files = memory_files(COUNT)
    right.setblocking(False)
    messages: list[int] = []
    received: list[int] = []
    data = b""
    try:
        done: Deferred[Any] = sending.callRemote(Take, fds=files, inodes="")
        done.addErrback(lambda _: None)  # nobody answers: the connection is closed at the end
        for _ in range(200):  # bounded: the box is a few kilobytes
            try:
                chunk, ancillary, _flags, _ = right.recvmsg(65536, socket.CMSG_SPACE(4096))
            except BlockingIOError:
                await deferLater(reactor, 0.01, lambda: None)
                continue
            data += chunk
            for level, kind, payload in ancillary:
                assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
                fds = array.array("i", payload).tolist()
                messages.append(len(fds))
                received += fds
            if b"_command" in data and data.endswith(b"\x00\x00"):
                break
        assert messages == [MAX_DESCRIPTORS, COUNT - MAX_DESCRIPTORS]
        assert inodes(received) == inodes(files)
    finally:
        for fd in files + received:
            os.close(fd)
        ending: Any = sending.transport
        ending.loseConnection()
        right.close()
