"""Small pieces of RFC 3261 grammar shared by the parser and the checks."""

from __future__ import annotations

import re
from typing import Final

from sipsock.sip.memo import MAX_NAME, Memo

TOKEN_CHARS: Final = r"A-Za-z0-9\-.!%*_+`'~"
is_token = re.compile(f"[{TOKEN_CHARS}]+").fullmatch

#: Compact header forms (RFC 3261 7.3.3 and extensions), lower case.
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
    "a": "accept-contact",
}

#: Headers whose value may hold commas that do not separate values.
UNSPLIT_HEADERS: Final = frozenset(
    {
        "authorization",
        "authentication-info",
        "call-id",
        "content-length",
        "cseq",
        "date",
        "from",
        "max-forwards",
        "organization",
        "proxy-authenticate",
        "proxy-authorization",
        "retry-after",
        "server",
        "subject",
        "timestamp",
        "to",
        "user-agent",
        "www-authenticate",
    }
)

#: The reason phrases of RFC 3261 (section 21) and of the extensions a proxy
#: or a registrar meets, by status code (`reason_phrase` for any code).
REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}
#: The phrase of a code without its own: its class's (RFC 3261 section 7.2).
CLASS_PHRASES: Final[dict[int, str]] = {
    1: "Provisional",
    2: "Success",
    3: "Redirection",
    4: "Request Failure",
    5: "Server Failure",
    6: "Global Failure",
}


def reason_phrase(code: int) -> str:
    """The standard reason phrase of ``code``, else the name of its class (``"Request Failure"``).

    A code outside 100-699 gets ``"Unknown"``.
    """
    phrase = REASON_PHRASES.get(code)
    if phrase is not None:
        return phrase
    return CLASS_PHRASES.get(code // 100, "Unknown") if 100 <= code <= 699 else "Unknown"


#: Significant digits read from a number; more than any SIP limit needs (2**32-1 has 10).
NUMBER_DIGITS: Final = 18
#: The value `parse_number` gives a number of more than `NUMBER_DIGITS` digits.
HUGE_NUMBER: Final = 10**NUMBER_DIGITS


def parse_number(text: str) -> int | None:
    """The value of ``text`` when it is ``1*DIGIT`` (ASCII digits only), else ``None``.

    Leading zeros are allowed.  A number of more than `NUMBER_DIGITS`
    significant digits comes back as `HUGE_NUMBER`, above every limit SIP has,
    without converting it: ``int()`` refuses more than 4300 digits with
    ``ValueError`` and a header section can hold many more.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0")
    if len(significant) > NUMBER_DIGITS:
        return HUGE_NUMBER
    return int(significant or "0")


#: Memo of header spellings seen to their canonical names (bounded in entries and bytes).
KNOWN_NAMES: Final[Memo[str, str]] = Memo(max_bytes=512 * 1024, max_item=2 * MAX_NAME)


def canonical_name(name: str) -> str:
    """Return the lower-case long form of a header name (``"v"`` -> ``"via"``)."""
    key = KNOWN_NAMES.get(name)
    if key is None:
        key = name.lower()
        key = COMPACT_FORMS.get(key, key)
        KNOWN_NAMES.remember(name, key, len(name) + len(key))
    return key


#: A quoted string, to its closing quote (or to the end: a value cut short).
_QUOTED = r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)'
#: One value of a comma-separated header: plain characters, quoted strings and
#: ``<...>`` spans (whose quoted strings may hold ``>``), up to a comma
#: outside both or the end. Always matches (maybe empty).
_ONE_VALUE: Final = re.compile(
    rf'(?:[^,"<]+|{_QUOTED}|<(?:[^>"]+|{_QUOTED})*(?:>|\Z))*',
    re.DOTALL,
)


def split_values(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets.

    Values are stripped of surrounding whitespace; empty values are kept (a
    caller that validates can see them). Inside quotes a backslash escapes
    the next character; a quote opens inside ``<...>`` too; an unclosed
    quote or bracket runs to the end.
    """
    if "," not in value:
        return [value.strip()]
    if '"' not in value:
        if "<" not in value:
            return [item.strip() for item in value.split(",")]
        return _split_outside_brackets(value)
    values: list[str] = []
    match = _ONE_VALUE.match
    start, end = 0, len(value)
    while True:
        stop = match(value, start).end()  # type: ignore[union-attr]  # always matches
        values.append(value[start:stop].strip())
        if stop >= end:
            return values
        start = stop + 1  # past the comma


def _split_outside_brackets(value: str) -> list[str]:
    """`split_values` of a value without quotes: a ``<`` runs to the next ``>`` or the end.

    What the pattern `_ONE_VALUE` does without quoted strings, by
    ``str.find``: a Route or Record-Route of several entries is split in
    every message a proxy forwards in a dialog. Each search starts where the
    last one of its kind stopped, or later (the comma found is kept until
    the scan passes it), so the cost is linear in the value.
    """
    values: list[str] = []
    start = at = 0
    comma = value.find(",")
    while True:
        if 0 <= comma < at:
            comma = value.find(",", at)
        bracket = value.find("<", at, comma if comma >= 0 else len(value))
        if bracket >= 0:
            close = value.find(">", bracket + 1)
            if close < 0:
                values.append(value[start:].strip())
                return values
            at = close + 1
            continue
        if comma < 0:
            values.append(value[start:].strip())
            return values
        values.append(value[start:comma].strip())
        start = at = comma + 1
