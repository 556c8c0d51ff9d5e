"""sipsock: a SIP transport layer for Twisted with database-provisioned sockets."""

__version__ = "0.1.0"
