"""SIP applications: the `ISipApplication` seam, its dispatcher and the built-in apps."""

from sipsock.apps.dispatch import Dispatcher
from sipsock.apps.interface import (
    ApplicationError,
    ISipApplication,
    MessageContext,
    NoSockets,
    SocketDirectory,
)
from sipsock.apps.loader import load_application
from sipsock.apps.responder import Responder

__all__ = [
    "ApplicationError",
    "Dispatcher",
    "ISipApplication",
    "MessageContext",
    "NoSockets",
    "Responder",
    "SocketDirectory",
    "load_application",
]
