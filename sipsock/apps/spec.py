"""`AppSpec`: what every process builds the SIP application from, frozen once at start.

The control process freezes the settings it loaded (with their TOML text)
and the proxy secret it derived (`freeze`), and hands the spec to each UDP
worker at its AMP handshake; `build_dispatcher` makes the application and its
`Dispatcher` from a spec, the same way on both sides. A worker started after
the configuration file was edited (or broken) so runs exactly what the
control process runs, and the secret does not depend on a later working
directory (``twistd -d`` changes it after ``makeService``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipsock.apps.dispatch import Dispatcher
from sipsock.apps.interface import ApplicationError
from sipsock.apps.loader import application_options, derived_secret, load_application
from sipsock.config import Settings, default_settings, parse_config_text


class SpecError(Exception):
    """The application of a spec cannot be built; the message names the file and the key."""


@dataclass(frozen=True)
class AppSpec:
    """The settings the control process loaded, and the proxy secret it derived (if any)."""

    settings: Settings
    secret: str | None

    @property
    def source(self) -> str:
        """Where the settings were read from (a path, or ``<defaults>``)."""
        return self.settings.source

    @property
    def text(self) -> str | None:
        """The TOML text of the settings (None: the built-in defaults)."""
        return self.settings.text


def freeze(settings: Settings) -> AppSpec:
    """The spec of ``settings``, with the proxy secret derived now (unless set)."""
    secret = None if settings.proxy.secret else derived_secret(settings)
    return AppSpec(settings, secret)


def thaw(source: str, text: str | None, secret: str | None) -> AppSpec:
    """The spec whose settings are the TOML ``text`` read from ``source`` (None: defaults).

    Raises `sipsock.config.ConfigError` when ``text`` is not a valid configuration.
    """
    settings = default_settings() if text is None else parse_config_text(text, source=source)
    return AppSpec(settings, secret)


def build_dispatcher(spec: AppSpec, *, clock: Any = None) -> Dispatcher:
    """The application of ``spec`` and its `Dispatcher`; raises `SpecError` with the reason."""
    settings = spec.settings
    try:
        options = application_options(settings, spec.secret)
    except ApplicationError as error:
        raise SpecError(f"{settings.source}: {error}") from None
    try:
        app = load_application(settings.core.application, options)
    except ApplicationError as error:
        raise SpecError(f"{settings.source}: [core] application: {error}") from None
    return Dispatcher(
        app,
        max_message_size=settings.core.max_message_size,
        clock=clock,
        log_interval=settings.limits.log_interval,
    )
