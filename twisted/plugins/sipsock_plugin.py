"""The ``twistd sipsock`` entry point."""

from twisted.application.service import ServiceMaker

sipsock = ServiceMaker(  # type: ignore[no-untyped-call]
    "sipsock",
    "sipsock.tap",
    "SIP transport with listening sockets provisioned in an SQL table.",
    "sipsock",
)
