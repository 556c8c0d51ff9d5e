"""SIP applications: the `ISipApplication` seam, its dispatcher and the built-in apps.

Built in: `Responder` (the default) and `StatelessProxy`.
"""

from sipsock.apps.dispatch import Dispatcher
from sipsock.apps.interface import (
    ApplicationError,
    IAnswersOptions,
    ISipApplication,
    MessageContext,
    NoSockets,
    SocketDirectory,
)
from sipsock.apps.loader import load_application
from sipsock.apps.proxy import StatelessProxy
from sipsock.apps.responder import Responder
from sipsock.config.proxy import ProxyRoute, RouteError

__all__ = [
    "ApplicationError",
    "Dispatcher",
    "IAnswersOptions",
    "ISipApplication",
    "MessageContext",
    "NoSockets",
    "ProxyRoute",
    "Responder",
    "RouteError",
    "SocketDirectory",
    "StatelessProxy",
    "load_application",
]
