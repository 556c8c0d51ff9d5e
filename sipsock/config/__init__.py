"""The configuration file (TOML) turned into frozen settings; every error names the key.

One module per job: `reader` (typed access naming the key, defaults taken
from the settings dataclasses), one module per group of sections (`core`,
`database` for ``[sockets_mgm]``, `admin` for ``[mi]`` and ``[manhole]``,
`tls`, `transport` for ``[websocket]`` and ``[limits]``, `proxy`), and
`loader` (the file to `Settings`). The public names are re-exported here:
``sipsock.config`` is the one import path for the rest of the code.
"""

from sipsock.config.admin import ManholeSettings, MISettings
from sipsock.config.core import (
    DEFAULT_APPLICATION,
    DEFAULT_STATE_DIR,
    DEFAULT_UDP_RECEIVE_BUFFER,
    LOG_LEVELS,
    MAX_UDP_RECEIVE_BUFFER,
    CoreSettings,
)
from sipsock.config.database import (
    DEFAULT_UDP_BALANCE,
    UDP_BALANCE_MODES,
    DatabaseURL,
    SocketsMgmSettings,
    TableNames,
    parse_db_url,
)
from sipsock.config.loader import (
    Settings,
    default_settings,
    load_config,
    parse_config,
    parse_config_text,
)
from sipsock.config.proxy import ProxyRoute, ProxySettings, RouteError
from sipsock.config.reader import IDENTIFIER_RE, ConfigError
from sipsock.config.tls import TLS_VERSIONS, TLSDomainSettings, TLSSettings
from sipsock.config.transport import LimitSettings, WebSocketSettings

__all__ = [
    "DEFAULT_APPLICATION",
    "DEFAULT_STATE_DIR",
    "DEFAULT_UDP_BALANCE",
    "DEFAULT_UDP_RECEIVE_BUFFER",
    "IDENTIFIER_RE",
    "LOG_LEVELS",
    "MAX_UDP_RECEIVE_BUFFER",
    "TLS_VERSIONS",
    "UDP_BALANCE_MODES",
    "ConfigError",
    "CoreSettings",
    "DatabaseURL",
    "LimitSettings",
    "MISettings",
    "ManholeSettings",
    "ProxyRoute",
    "ProxySettings",
    "RouteError",
    "Settings",
    "SocketsMgmSettings",
    "TLSDomainSettings",
    "TLSSettings",
    "TableNames",
    "WebSocketSettings",
    "default_settings",
    "load_config",
    "parse_config",
    "parse_config_text",
    "parse_db_url",
]
