"""Why a TLS handshake or a TLS context failed, in a few words (pure).

Shared by the TLS context builder (`sipsock.transport.tls`) and the stream
and WebSocket connections (`sipsock.transport.stream`, `sipsock.transport.ws`).
"""

from __future__ import annotations

from OpenSSL import SSL
from service_identity import VerificationError


def describe_tls_error(error: SSL.Error) -> str:
    """The OpenSSL reasons of a TLS failure, short ("certificate verify failed")."""
    reasons: list[str] = []
    details = error.args[0] if error.args and isinstance(error.args[0], list) else []
    for item in details:
        if isinstance(item, tuple) and item and str(item[-1]) not in reasons:
            reasons.append(str(item[-1]))
    return ", ".join(reasons) or str(error) or "TLS error"


def describe_tls_failure(error: BaseException | None) -> str | None:
    """Why a TLS handshake failed, or None when ``error`` is not a TLS failure.

    OpenSSL errors, and the host-name check of the client side
    (service-identity: the certificate does not name the server).
    """
    if isinstance(error, SSL.Error):
        return describe_tls_error(error)
    if isinstance(error, VerificationError):
        names: list[str] = []
        for mismatch in error.errors:
            wanted = getattr(mismatch, "mismatched_id", None)
            name = getattr(wanted, "hostname", None) or getattr(wanted, "ip", None) or mismatch
            # service-identity keeps a DNS name as IDNA bytes.
            names.append(name.decode("ascii", "replace") if isinstance(name, bytes) else str(name))
        return f"the server certificate does not name {', '.join(names)}"
    return None
