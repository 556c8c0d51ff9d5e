# mypy: disable-error-code="no-any-return"
"""Direct OpenSSL calls on a pyOpenSSL memory-BIO connection: Twisted's TLS calls, cheaper.

Twisted's TLS layer (`twisted.protocols.tls.TLSMemoryBIOProtocol`) drives a
pyOpenSSL `SSL.Connection` through ``bio_write``, ``recv``, ``send`` and
``bio_read``. Each of those costs 1.5-3.5 µs of Python around a C call of
well under a microsecond (a new 32 KiB buffer per read, a context
manager per write, three callback-helper checks and an error lookup per
call), and "nothing more to read" and "nothing to send" are exceptions
(`WantReadError`), raised at least twice for every message read.

The functions here make the same OpenSSL calls on the same connection
through pyOpenSSL's own binding, into one buffer of this module, and answer
None where pyOpenSSL raises `WantReadError` with nothing else to report.
Every other outcome (a callback's saved exception, a TLS alert, the peer's
close_notify, a failed memory-BIO call) is handed to pyOpenSSL's own error
path on the same result, so it raises exactly what ``recv``, ``send``,
``bio_read`` and ``bio_write`` raise.

`direct_calls` says whether a connection can be driven this way (a
pyOpenSSL connection with memory BIOs, and a pyOpenSSL whose internals are
the ones relied on: ``_ssl``, ``_into_ssl``, ``_from_ssl``, the context's
callback helpers, ``_raise_ssl_error`` and ``_handle_bio_errors``); the TLS
layer (`sipsock.transport.tlswrite`) falls back to pyOpenSSL's methods
otherwise. The unit tests fail when a pyOpenSSL release leaves this path
unused or answers differently (tests/unit/transport/test_tlsbio.py). The
reactor thread is the only caller, so one read buffer serves every
connection (its bytes are copied out at once).
"""

from __future__ import annotations

from typing import Any, Final

from OpenSSL import SSL

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - a pyOpenSSL without its cffi binding
    _ffi = _lib = None

#: What pyOpenSSL's ``bio_write`` and ``send`` take (bytes go the direct way).
Buffer = bytes | bytearray | memoryview

#: Largest read from OpenSSL at once (what Twisted asks ``recv``/``bio_read`` for).
READ_SIZE: Final = 2**15

_REQUIRED_CALLS: Final = (
    "SSL_read",
    "SSL_write",
    "SSL_get_error",
    "BIO_read",
    "BIO_write",
    "BIO_should_retry",
    "BIO_should_read",
)
_CONNECTION_FIELDS: Final = ("_ssl", "_into_ssl", "_from_ssl", "_context")
_CONTEXT_FIELDS: Final = ("_verify_helper", "_alpn_select_helper", "_ocsp_helper")
_CONNECTION_METHODS: Final = ("_raise_ssl_error", "_handle_bio_errors")

#: Whether this pyOpenSSL exposes what the direct calls need.
AVAILABLE: Final = (
    _lib is not None
    and all(hasattr(_lib, name) for name in _REQUIRED_CALLS)
    and all(hasattr(SSL.Connection, name) for name in _CONNECTION_METHODS)
)

if AVAILABLE:
    _BUFFER: Any = _ffi.new("char[]", READ_SIZE)
    _WANT_READ: Final[int] = _lib.SSL_ERROR_WANT_READ
    _SSL_read = _lib.SSL_read
    _SSL_write = _lib.SSL_write
    _SSL_get_error = _lib.SSL_get_error
    _BIO_read = _lib.BIO_read
    _BIO_write = _lib.BIO_write
    _BIO_should_retry = _lib.BIO_should_retry
    _BIO_should_read = _lib.BIO_should_read
    _bytes_of = _ffi.buffer


def direct_calls(connection: object) -> bool:
    """Whether ``connection`` is a pyOpenSSL connection on memory BIOs these functions can drive."""
    if not AVAILABLE or not isinstance(connection, SSL.Connection):
        return False
    if not all(hasattr(connection, name) for name in _CONNECTION_FIELDS):
        return False
    if connection._into_ssl is None or connection._from_ssl is None:
        return False
    return all(hasattr(connection._context, name) for name in _CONTEXT_FIELDS)


def _quiet(connection: Any) -> bool:
    """No OpenSSL callback (verify, ALPN, OCSP) left an exception for the next call to raise."""
    context = connection._context
    helper = context._verify_helper
    if helper is not None and helper._problems:
        return False
    helper = context._alpn_select_helper
    if helper is not None and helper._problems:
        return False
    helper = context._ocsp_helper
    return helper is None or not helper._problems


def feed(connection: Any, data: Buffer) -> None:
    """``connection.bio_write(data)``: the peer's bytes into OpenSSL's receive BIO."""
    if type(data) is not bytes:
        connection.bio_write(data)
        return
    bio = connection._into_ssl
    result = _BIO_write(bio, data, len(data))
    if result <= 0:
        connection._handle_bio_errors(bio, result)


def read(connection: Any) -> bytes | None:
    """``connection.recv(READ_SIZE)``, or None where that raises a bare `WantReadError`."""
    ssl = connection._ssl
    result = _SSL_read(ssl, _BUFFER, READ_SIZE)
    if _quiet(connection):
        if result > 0:
            return _bytes_of(_BUFFER, result)[:]
        if _SSL_get_error(ssl, result) == _WANT_READ:
            return None
    connection._raise_ssl_error(ssl, result)
    return _bytes_of(_BUFFER, result)[:]


def write(connection: Any, data: Buffer) -> int:
    """``connection.send(data)``: plaintext into OpenSSL; raises as ``send`` does."""
    if type(data) is not bytes:
        sent: int = connection.send(data)
        return sent
    ssl = connection._ssl
    result: int = _SSL_write(ssl, data, len(data))
    if result <= 0 or not _quiet(connection):
        connection._raise_ssl_error(ssl, result)
    return result


def drain(connection: Any) -> bytes | None:
    """``connection.bio_read(READ_SIZE)``, or None where that raises `WantReadError`."""
    bio = connection._from_ssl
    result = _BIO_read(bio, _BUFFER, READ_SIZE)
    if result > 0:
        return _bytes_of(_BUFFER, result)[:]
    if _BIO_should_retry(bio) and _BIO_should_read(bio):
        return None
    connection._handle_bio_errors(bio, result)
    return None  # pragma: no cover - _handle_bio_errors always raises
