"""``[core]``: the static sockets, the SIP application and process-wide settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sipsock.config.reader import ConfigError, Reader
from sipsock.scaling import ScalingRule
from sipsock.sockdef import SocketDef, SocketDefError, parse_static

DEFAULT_STATE_DIR: Final = "var"
DEFAULT_APPLICATION: Final = "sipsock.apps:Responder"
#: ``[core] udp_receive_buffer``: bytes of kernel receive buffer per UDP socket
#: (0 keeps the kernel default, about 208 KiB, which drops datagrams at a few
#: thousand OPTIONS per second).
DEFAULT_UDP_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
MAX_UDP_RECEIVE_BUFFER: Final = 1024 * 1024 * 1024
#: ``[core] log_level`` values, most verbose first (Twisted's level names).
LOG_LEVELS: Final = ("debug", "info", "warn", "error", "critical")
#: ``[core] tcp_workers``: two stream workers use both cores of a small host
#: and keep the streams away from the control process (the MI, reloads and
#: the database stay responsive under stream load), for about 30 MB each.
DEFAULT_TCP_WORKERS: Final = 2
_DOTTED_RE: Final = re.compile(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?")


@dataclass(frozen=True)
class CoreSettings:
    """``[core]``: static sockets, the SIP application and process-wide settings."""

    listen: tuple[SocketDef, ...] = ()
    udp_workers: int = 1
    #: Stream worker processes (OpenSIPS's name): every TCP, TLS, WS and WSS
    #: socket, static and dynamic, is served by them; 0 keeps the streams in
    #: the control process (one core, as before).
    tcp_workers: int = DEFAULT_TCP_WORKERS
    application: str = DEFAULT_APPLICATION
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    stream_idle_timeout: float = 180.0
    max_message_size: int = 65535
    log_format: str = "text"
    log_level: str = "info"
    udp_receive_buffer: int = DEFAULT_UDP_RECEIVE_BUFFER
    #: Seconds a UDP worker has to answer each command of the control process;
    #: one that does not is killed and replaced.
    worker_timeout: float = 10.0
    #: ``udp_auto_scaling_profile``: the static UDP pool's profile (None: ``udp_workers`` fixed).
    udp_auto_scaling_profile: ScalingRule | None = None
    #: ``tcp_auto_scaling_profile``: the stream pool's profile (None: ``tcp_workers`` fixed).
    tcp_auto_scaling_profile: ScalingRule | None = None


def read_core(reader: Reader, data: Mapping[str, Any]) -> CoreSettings:
    sec = reader.section(data, "core", CoreSettings)
    listen: list[SocketDef] = []
    for index, entry in enumerate(sec.get("listen", list)):
        try:
            listen.append(parse_static(entry, index=index))
        except SocketDefError as exc:
            raise ConfigError(reader.source, f"[core] listen[{index}]", str(exc)) from None
    seen: dict[tuple[str, str, int], int] = {}
    for index, sdef in enumerate(listen):
        key = (sdef.proto, sdef.host, sdef.port)
        if key in seen:
            raise ConfigError(
                reader.source,
                f"[core] listen[{index}]",
                f"{sdef.socket_text} is already listen[{seen[key]}]",
            )
        seen[key] = index
    application = sec.get("application", str)
    if not _DOTTED_RE.fullmatch(application):
        sec.fail("application", f"{application!r} is not a dotted name (module:Class)")
    return CoreSettings(
        listen=tuple(listen),
        udp_workers=sec.integer("udp_workers", 1, 256),
        tcp_workers=sec.integer("tcp_workers", 0, 256),
        application=application,
        state_dir=Path(sec.get("state_dir", str)),
        stream_idle_timeout=sec.number("stream_idle_timeout", 1.0, 86400.0),
        max_message_size=sec.integer("max_message_size", 1024, 65535),
        log_format=sec.choice("log_format", ("text", "json")),
        log_level=sec.choice("log_level", LOG_LEVELS),
        udp_receive_buffer=sec.integer("udp_receive_buffer", 0, MAX_UDP_RECEIVE_BUFFER),
        worker_timeout=sec.number("worker_timeout", 0.5, 3600.0),
    )
