"""`load_application`: the ``[core] application`` dotted name to an application object."""

from __future__ import annotations

import hashlib
import importlib
import socket
from collections.abc import Mapping
from typing import Any

from sipsock.apps.interface import ApplicationError, ISipApplication
from sipsock.config import Settings


def load_application(dotted: str, options: Mapping[str, Any] | None = None) -> ISipApplication:
    """Import ``module:Class`` (or ``module.Class``) and construct it with ``**options``.

    The result must provide `ISipApplication`. Every failure raises
    `ApplicationError` naming the dotted path and the reason.
    """
    options = dict(options or {})
    module_name, colon, attribute = dotted.partition(":")
    if not colon:
        module_name, _, attribute = dotted.rpartition(".")
    if not module_name or not attribute:
        raise ApplicationError(dotted, "not a dotted name (write it as module:Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ApplicationError(dotted, f"cannot import module {module_name}: {exc}") from exc
    except Exception as exc:
        raise ApplicationError(
            dotted, f"importing module {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ApplicationError(
                dotted, f"module {module_name} has no attribute {attribute}"
            ) from None
    if isinstance(target, type) or (callable(target) and not ISipApplication.providedBy(target)):
        try:
            app = target(**options)
        except Exception as exc:
            raise ApplicationError(
                dotted, f"cannot construct it with options {sorted(options)}: {exc}"
            ) from exc
    elif options:
        raise ApplicationError(dotted, "options given, but it names an object, not a class")
    else:
        app = target
    if not ISipApplication.providedBy(app):
        raise ApplicationError(
            dotted,
            f"{type(app).__name__} does not provide ISipApplication "
            "(declare it with @implementer(ISipApplication))",
        )
    return app


PROXY_APPLICATIONS = frozenset(
    f"{module}{sep}StatelessProxy"
    for module in ("sipsock.apps", "sipsock.apps.proxy")
    for sep in (":", ".")
)


def application_options(settings: Settings, secret: str | None = None) -> dict[str, Any]:
    """The keyword arguments of the SIP application: ``[application]``, and for
    the proxy (or any application when ``[proxy]`` is present) ``routes``,
    ``record_route`` and ``secret`` from ``[proxy]``.

    The secret is ``[proxy] secret``, else ``secret`` (the control process
    derives it once, `derived_secret`, and hands it to its workers), else
    derived here.
    """
    options = dict(settings.application)
    proxy = settings.proxy
    if not (proxy.configured or settings.core.application in PROXY_APPLICATIONS):
        return options
    clash = sorted(set(options) & {"routes", "record_route", "secret"})
    if clash:
        raise ApplicationError(
            f"[application] {clash[0]}",
            "set it in [proxy] (routes as [[proxy.route]] tables)",
        )
    chosen = proxy.secret or secret or derived_secret(settings)
    options.update(routes=proxy.routes, record_route=proxy.record_route, secret=chosen)
    return options


def derived_secret(settings: Settings) -> str:
    """The proxy secret when ``[proxy] secret`` is unset: a hash of the host name and
    the state directory, the same in every process of one installation, different
    between two. Derived once in the control process, when the configuration is
    loaded (a relative state directory is resolved then, before ``twistd -d``
    changes directory), and handed to the workers.
    """
    seed = f"{socket.gethostname()}|{settings.core.state_dir.resolve()}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]
