"""What /proc says about processes and their UDP sockets (Linux)."""

from __future__ import annotations

import os
import select

EPOLLEXCLUSIVE = int(getattr(select, "EPOLLEXCLUSIVE", 1 << 28))


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def udp_inodes(port: int) -> set[int]:
    """Inodes of every UDP socket bound to ``port`` (any address, IPv4 or IPv6)."""
    inodes: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(int(fields[9]))
    return inodes


def socket_fds(pid: int) -> dict[int, int]:
    """Descriptor -> socket inode, for every socket ``pid`` holds."""
    found: dict[int, int] = {}
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return found
    for name in names:
        try:
            target = os.readlink(f"{base}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found[int(name)] = int(target[len("socket:[") : -1])
    return found


def held_udp_inodes(pid: int, port: int) -> set[int]:
    """The inodes of the UDP sockets on ``port`` that ``pid`` holds."""
    return set(socket_fds(pid).values()) & udp_inodes(port)


def epoll_masks(pid: int) -> dict[int, int]:
    """Descriptor -> event mask, for everything ``pid`` registered with any epoll."""
    masks: dict[int, int] = {}
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            if os.readlink(f"{base}/{name}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{name}") as info:
                for line in info:
                    if line.startswith("tfd:"):
                        fields = line.split()
                        masks[int(fields[1])] = int(fields[3], 16)
        except OSError:
            continue
    return masks


def exclusive_udp_registrations(pid: int, port: int) -> list[bool]:
    """For each UDP socket on ``port`` held by ``pid``: is it registered with EPOLLEXCLUSIVE?"""
    inodes = udp_inodes(port)
    masks = epoll_masks(pid)
    return [
        bool(masks.get(fd, 0) & EPOLLEXCLUSIVE)
        for fd, inode in socket_fds(pid).items()
        if inode in inodes and fd in masks
    ]
