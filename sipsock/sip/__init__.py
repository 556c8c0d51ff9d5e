"""SIP message core of sipsock: parse, model, serialize, frame and route (pure, no I/O).

Everything here is stdlib only: bytes in, objects out, and back.

* :func:`parse` turns one datagram (or one message cut by
  :class:`StreamFramer`) into a :class:`Request` or :class:`Response`, or
  raises :class:`SipParseError`.  Only the start line, the header split and
  Content-Length are read eagerly; header values are parsed when asked
  (``top_via``, ``call_id``, ``cseq``, ``max_forwards``, ``get``...).
* ``bytes(message)`` / ``message.serialize()`` gives the wire form with a
  correct Content-Length.

Verdicts for malformed messages (RFC 4475)
------------------------------------------

There are two levels, so that the fast path stays fast:

1. :func:`parse` raises :class:`SipParseError` when the bytes cannot be
   turned into a message at all: size above ``max_size``, no empty line
   after the headers, a header line without colon, a malformed status line
   (version other than SIP/2.0, code not 100-699: drop the response), a
   start line that is not a request, or a broken Content-Length (negative,
   not a number, conflicting duplicates, larger than the datagram, missing on
   a stream).  ``error.status`` is 400 for the Content-Length cases (RFC 4475
   3.1.2.2, 3.1.2.3, 3.3.9), ``None`` otherwise.  On a stream the framer raises
   :class:`SipFramingError` first (its ``messages``: the valid messages cut
   before the bad one, to deliver): answer and close the connection.
2. A parsed message may still be malformed for processing.  Read
   ``request.error_response`` once before handing a request to the
   application: ``None`` means well-formed, else ``(code, reason)`` of the
   response to send (400 Bad Request; 505 Version Not Supported for another
   SIP version; 416 Unsupported URI Scheme for a Request-URI scheme other than
   sip, sips, tel; 501 Not Implemented for an unknown method whose CSeq method
   differs).  ``message.validate()`` raises the underlying
   :class:`SipParseError` (for a response its ``status`` is ``None``: drop it).
   The checks: request-line spacing, Request-URI (no whitespace, no ``<>``,
   no headers in a SIP URI), required Via/From/To/Call-ID/CSeq, no duplicate
   single-value header, every Via value, CSeq number within 32 bits and
   method matching, numeric Max-Forwards, From/To/Contact/Route/Record-Route
   address syntax.
"""

from sipsock.sip.errors import FramingKind, SipFramingError, SipParseError
from sipsock.sip.framer import KEEPALIVE_PING, StreamFramer
from sipsock.sip.grammar import canonical_name, split_values
from sipsock.sip.message import Message, Request, Response
from sipsock.sip.parser import parse
from sipsock.sip.response import make_response
from sipsock.sip.routing import ResponseRoute, default_port, route_response
from sipsock.sip.via import (
    MAGIC_COOKIE,
    Via,
    apply_received,
    make_via,
    new_branch,
    parse_via,
    stateless_branch,
)

__all__ = [
    "KEEPALIVE_PING",
    "MAGIC_COOKIE",
    "FramingKind",
    "Message",
    "Request",
    "Response",
    "ResponseRoute",
    "SipFramingError",
    "SipParseError",
    "StreamFramer",
    "Via",
    "apply_received",
    "canonical_name",
    "default_port",
    "make_response",
    "make_via",
    "new_branch",
    "parse",
    "parse_via",
    "route_response",
    "split_values",
    "stateless_branch",
]
