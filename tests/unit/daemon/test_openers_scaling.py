"""`worker_pools`: a pool that names an auto-scaling profile gets its `AutoScaler`."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from sipsock.apps.spec import freeze
from sipsock.config import parse_config_text
from sipsock.daemon.openers import worker_pools
from sipsock.incidents import Incidents
from sipsock.workers import SocketBook, UdpWorkerPool

PROFILE = """
[auto_scaling.udp]
min_processes = 2
max_processes = 5
"""


def pools(text: str) -> tuple[UdpWorkerPool, UdpWorkerPool]:
    spec = freeze(parse_config_text(text, source="t.toml"))
    clock = MemoryReactorClock()  # type: ignore[no-untyped-call]
    dynamic, static = worker_pools(spec, SocketBook(), Incidents(), clock)
    assert static is not None
    return dynamic, static


def test_a_fixed_pool_has_no_scaler() -> None:
    dynamic, static = pools('[core]\nlisten = ["udp:127.0.0.1:5999"]\n')
    assert dynamic.scaler is None
    assert static.scaler is None


def test_each_pool_gets_the_profile_it_names_and_starts_at_its_size() -> None:
    dynamic, static = pools(
        '[sockets_mgm]\nauto_scaling_profile = "udp"\n'
        '[core]\nlisten = ["udp:127.0.0.1:5999"]\nudp_auto_scaling_profile = "udp"\n'
        "udp_workers = 3\n" + PROFILE
    )
    for pool, size in ((dynamic, 2), (static, 3)):
        scaler = pool.scaler
        assert scaler is not None and scaler.rule.name == "udp"
        assert len(pool.seats) == size
