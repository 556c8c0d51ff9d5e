"""``twistd sipsock``: command-line options and the composition of the daemon.

`makeService` reads nothing more than the parsed settings, locks the state
directory, opens the store and loads the SIP application, then composes the
service tree of ``sipsock.daemon``; nothing is bound here. The children bind
at privileged start (static sockets, admin front ends) and start in order;
a start-up error is one line naming the item (`exit_at_start`).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from sipsock.apps.spec import SpecError, build_dispatcher, freeze
from sipsock.autoreload import AutoReloader
from sipsock.config import ConfigError, Settings, load_config
from sipsock.daemon.admin import admin_front_ends
from sipsock.daemon.openers import SocketOpeners, in_process_opener, stream_pool, worker_pools
from sipsock.daemon.resources import StateLockService, StoreService
from sipsock.daemon.root import DaemonService
from sipsock.daemon.startup import (
    StartupError,
    create_sqlite_database,
    exit_at_start,
    lock_state_dir,
    tune_process,
)
from sipsock.daemon.static import StaticSockets
from sipsock.db import StoreError, open_store
from sipsock.incidents import Incidents
from sipsock.logs import use_sipsock_logs
from sipsock.registry import SocketRegistry
from sipsock.sdnotify import Notifier
from sipsock.stackdump import enable_stack_dump
from sipsock.stats import metrics_text
from sipsock.transport.tls import TLSDomains, TLSError
from sipsock.workers import SocketBook
from sipsock.workers.channels import ChannelBroker
from sipsock.workers.stream_pool import PooledTLS

DEFAULT_CONFIG = "etc/sipsock.toml"


class Options(usage.Options):
    """Options of ``twistd sipsock``."""

    synopsis = "[-c FILE]"
    longdesc = (
        "SIP transport whose listening sockets are provisioned in an SQL table "
        "(OpenSIPS sockets_mgm compatible) and changed at runtime with sockets_reload."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "Configuration file (TOML); see etc/sipsock.toml."],
    ]

    def postOptions(self) -> None:
        try:
            self["settings"] = load_config(self["config"])
        except ConfigError as error:
            exit_at_start(str(error))
        core = self["settings"].core
        # twistd's --logger: the configured format and level (an explicit --logger keeps
        # its output, filtered at the level).
        use_sipsock_logs(self.parent, log_format=core.log_format, log_level=core.log_level)


def makeService(config: usage.Options, reactor: Any = None) -> IService:
    """The daemon service for parsed `Options` (twistd's entry point)."""
    if reactor is None:
        from twisted.internet import reactor
    enable_stack_dump()
    try:
        daemon = build_daemon(config["settings"], reactor=reactor)
    except StartupError as error:
        exit_at_start(str(error))
    daemon.daemonized = config.parent is not None and not config.parent["nodaemon"]
    return daemon


def build_daemon(settings: Settings, *, reactor: Any) -> DaemonService:
    """Compose the daemon; raises `StartupError`. The state directory is locked first.

    systemd's notification variables leave the environment before any worker
    is spawned (only this process may notify).
    """
    notifier = Notifier.from_environ(os.environ)
    lock = lock_state_dir(settings.core.state_dir)
    try:
        return _compose(settings, notifier, lock_service=StateLockService(lock), reactor=reactor)
    except BaseException:
        lock.release()
        raise


def _compose(
    settings: Settings, notifier: Notifier, *, lock_service: StateLockService, reactor: Any
) -> DaemonService:
    tune_process(settings)
    source = settings.source
    try:
        tls = TLSDomains(settings.tls.domains)
    except TLSError as error:
        raise StartupError(f"{source}: [tls] {error}") from None
    if settings.sockets_mgm.db_url.scheme == "sqlite":
        create_sqlite_database(settings)
    spec = freeze(settings)  # the workers build the same application from it
    try:
        dispatcher = build_dispatcher(spec, clock=reactor)
    except SpecError as error:
        raise StartupError(str(error)) from None
    book, incidents = SocketBook(), Incidents()
    pools = worker_pools(spec, book, incidents, reactor)
    streams = stream_pool(spec, book, incidents, tls, reactor)
    if streams is not None:  # UDP and stream workers relay to each other directly
        ChannelBroker([pool.supervisor for pool in pools if pool is not None], streams.supervisor)
    openers = SocketOpeners(
        in_process_opener(settings, dispatcher, tls, reactor), book, *pools, streams
    )
    try:
        store = open_store(settings.sockets_mgm, reactor)
    except StoreError as error:
        raise StartupError(f"{source}: [sockets_mgm] db_url: {error}") from None
    registry = SocketRegistry(
        store,
        openers.open_dynamic,
        max_sockets=settings.sockets_mgm.max_sockets,
        reactor=reactor,
        incidents=incidents,
        open_many=openers.open_many,
        close_many=openers.close_many,
    )
    dispatcher.directory = registry
    daemon = DaemonService(
        settings,
        registry,
        openers.pools,
        reactor=reactor,
        notifier=notifier,
        tls=tls if streams is None else PooledTLS(tls, streams),
    )
    static = StaticSockets(settings.core.listen, openers.open_static, registry, source=source)
    children = [lock_service, StoreService(store), *openers.pools, static, registry]
    if settings.sockets_mgm.auto_reload:
        reloader = AutoReloader(registry, settings.sockets_mgm, reactor)
        daemon.statistics.auto_reload = reloader
        children.append(reloader)
    children += admin_front_ends(
        settings,
        daemon.commands,
        metrics=metrics_text(daemon.statistics),
        manhole_namespace=daemon.manhole_namespace(),
        reactor=reactor,
    )
    for child in children:
        child.setServiceParent(daemon)  # type: ignore[no-untyped-call]
    return daemon
