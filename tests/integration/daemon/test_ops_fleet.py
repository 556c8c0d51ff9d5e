"""Two daemons of a fleet on one PostgreSQL table: each binds its own rows; one NOTIFY
reloads both."""

from __future__ import annotations

from sipsock.config import parse_config
from sipsock.db.cli import Database
from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.daemon.test_ops_autoreload import (
    answers,
    settled_reloads,
)
from tests.net import free_port
from tests.pg import PostgresServer
from tests.polling import poll_until


def fleet(node: str) -> str:
    return (
        "[sockets_mgm]\nauto_reload = true\nauto_reload_debounce = 0.2\n"
        f'node_column = "node"\nnode = "{node}"\n'
    )


def test_two_nodes_bind_their_rows_and_one_notify_reloads_both(
    daemon_factory: DaemonFactory, postgres_server: PostgresServer, postgres_db: str
) -> None:
    url = postgres_server.url(postgres_db)
    settings = parse_config(
        {"sockets_mgm": {"db_url": url, "node_column": "node", "node": "a"}}
    ).sockets_mgm
    with Database.open(settings) as db:
        db.init()  # OpenSIPS's table plus the node column
        db.install_notify()
    east, west = free_port(), free_port()
    postgres_server.execute(
        "INSERT INTO sockets (socket, node) VALUES (%s, 'east'), (%s, 'west')",
        (f"udp:127.0.0.1:{east}", f"udp:127.0.0.1:{west}"),
        dbname=postgres_db,
    )
    a = daemon_factory(url, fleet("east"), name="east")
    b = daemon_factory(url, fleet("west"), name="west")
    assert a.mi("sockets_list") == [{"socket": f"udp:127.0.0.1:{east}"}]
    assert b.mi("sockets_list") == [{"socket": f"udp:127.0.0.1:{west}"}]
    assert answers(east) and answers(west)
    before = [settled_reloads(d) for d in (a, b)]  # after the catch-up reloads of the start
    # One statement, one NOTIFY: both daemons reload; each takes its new row only.
    east2, west2 = free_port(), free_port()
    postgres_server.execute(
        "INSERT INTO sockets (socket, node) VALUES (%s, 'east'), (%s, 'west')",
        (f"udp:127.0.0.1:{east2}", f"udp:127.0.0.1:{west2}"),
        dbname=postgres_db,
    )
    poll_until(lambda: answers(east2) and answers(west2), 5, "both new sockets")
    after = [settled_reloads(d) for d in (a, b)]  # a second reload would show here
    assert [x - y for x, y in zip(after, before, strict=True)] == [1, 1]
    assert [e["socket"] for e in a.mi("sockets_list")] == [
        f"udp:127.0.0.1:{east}",
        f"udp:127.0.0.1:{east2}",
    ]
    assert [e["socket"] for e in b.mi("sockets_list")] == [
        f"udp:127.0.0.1:{west}",
        f"udp:127.0.0.1:{west2}",
    ]
