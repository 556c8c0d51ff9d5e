"""The whole configuration: `Settings`, and the file read into it section by section.

Every key is checked at load: an unknown section or key, a wrong type or an
out-of-range number raises `ConfigError` naming the file, the key and the
problem. Relative paths are taken from the working directory, as twistd does.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from sipsock.config.admin import ManholeSettings, MISettings, read_manhole, read_mi
from sipsock.config.core import CoreSettings, read_core
from sipsock.config.database import SocketsMgmSettings, read_sockets_mgm
from sipsock.config.proxy import ProxySettings, read_proxy
from sipsock.config.reader import ConfigError, Reader
from sipsock.config.scaling import (
    CORE_PROFILE_KEY,
    SOCKETS_MGM_PROFILE_KEY,
    STREAM_PROFILE_KEY,
    pool_profile,
    read_profiles,
)
from sipsock.config.tls import TLSSettings, read_tls
from sipsock.config.transport import (
    LimitSettings,
    WebSocketSettings,
    read_limits,
    read_websocket,
)
from sipsock.scaling import ScalingRule


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one daemon."""

    sockets_mgm: SocketsMgmSettings
    core: CoreSettings = field(default_factory=CoreSettings)
    mi: MISettings = field(default_factory=MISettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    manhole: ManholeSettings = field(default_factory=ManholeSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    application: Mapping[str, Any] = field(default_factory=dict)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    #: ``[auto_scaling.NAME]``: the auto-scaling profiles, by name.
    auto_scaling: Mapping[str, ScalingRule] = field(default_factory=dict)
    source: str = "<defaults>"
    #: The TOML text these settings were read from (None: not read from a file);
    #: UDP workers are handed it, frozen, rather than re-reading the file.
    text: str | None = field(default=None, compare=False, repr=False)

    @property
    def mi_socket(self) -> Path:
        """Where ``sipsock-mi`` connects: ``[mi] socket`` or the state directory."""
        return self.mi.socket or self.core.state_dir / "sipsock-mi.sock"


#: The sections of the file: the fields of `Settings` but where they were read from.
SECTIONS: Final = frozenset(item.name for item in fields(Settings)) - {"source", "text"}


def load_config(path: str | Path) -> Settings:
    """Read and check a configuration file."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ConfigError(name, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: not UTF-8 ({exc.reason})") from None
    return parse_config_text(text, source=name)


def parse_config_text(text: str, *, source: str) -> Settings:
    """Check the TOML ``text`` of a configuration file read from ``source``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    return replace(parse_config(data, source=source), text=text)


def default_settings() -> Settings:
    """The settings of an empty configuration file."""
    return parse_config({}, source="<defaults>")


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Settings:
    """Check a decoded TOML document and build `Settings` from it."""
    reader = Reader(source)
    reader.only_sections(data, SECTIONS)
    core = read_core(reader, data)
    websocket = read_websocket(reader, data)
    profiles = read_profiles(reader, data)
    sockets_mgm = read_sockets_mgm(reader, data, core.state_dir)
    rule, processes = pool_profile(
        reader,
        data,
        profiles,
        ("sockets_mgm", SOCKETS_MGM_PROFILE_KEY, "processes"),
        sockets_mgm.processes,
    )
    sockets_mgm = replace(sockets_mgm, auto_scaling_profile=rule, processes=processes)
    rule, udp_workers = pool_profile(
        reader, data, profiles, ("core", CORE_PROFILE_KEY, "udp_workers"), core.udp_workers
    )
    core = replace(core, udp_auto_scaling_profile=rule, udp_workers=udp_workers)
    rule, tcp_workers = pool_profile(
        reader, data, profiles, ("core", STREAM_PROFILE_KEY, "tcp_workers"), core.tcp_workers
    )
    core = replace(core, tcp_auto_scaling_profile=rule, tcp_workers=tcp_workers)
    return Settings(
        sockets_mgm=sockets_mgm,
        core=core,
        mi=read_mi(reader, data),
        tls=read_tls(reader, data),
        websocket=websocket,
        manhole=read_manhole(reader, data),
        limits=read_limits(reader, data, core.max_message_size, websocket),
        # Options of the SIP application, checked by the application itself.
        application=reader.table(data, "application"),
        proxy=read_proxy(reader, data),
        auto_scaling=profiles,
        source=source,
    )
