"""The proxy's host-name resolver: `sipsock.resolver` (shared with the registry)."""

from sipsock.resolver import (
    CACHE_SECONDS,
    CACHE_SIZE,
    FAILURE_SECONDS,
    MAX_NAME,
    MAX_PENDING,
    RESOLVE_THREADS,
    RESOLVE_TIMEOUT,
    IResolve,
    LookupRunner,
    ResolveError,
    ThreadResolver,
    lookup_addresses,
)

__all__ = [
    "CACHE_SECONDS",
    "CACHE_SIZE",
    "FAILURE_SECONDS",
    "MAX_NAME",
    "MAX_PENDING",
    "RESOLVE_THREADS",
    "RESOLVE_TIMEOUT",
    "IResolve",
    "LookupRunner",
    "ResolveError",
    "ThreadResolver",
    "lookup_addresses",
]
