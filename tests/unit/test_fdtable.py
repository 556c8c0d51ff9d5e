"""`reserve_descriptors`: the descriptor table is grown once, and no later socket grows it.

Each case runs in a fresh interpreter with a second thread running (as the
daemon's control process has), since a test process's own table is already
large and the kernel only ever grows it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

TIMEOUT = 60

PRELUDE = """
import json, resource, socket, threading
from sipsock.fdtable import open_descriptors, reserve_descriptors

def table_size():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("FDSize:"):
                return int(line.split()[1])

stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
"""


def run(body: str) -> dict[str, int]:
    code = PRELUDE + textwrap.dedent(body) + "\nstop.set()\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_reserved_room_holds_that_many_sockets_without_growing_again() -> None:
    result = run(
        """
        start, highest, opened = table_size(), max(open_descriptors()), len(open_descriptors())
        reserved = reserve_descriptors(1000)
        grown, still = table_size(), len(open_descriptors())
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(1000)]
        print(json.dumps({"start": start, "highest": highest, "reserved": reserved,
                          "grown": grown, "after": table_size(),
                          "last": socks[-1].fileno(), "opened": opened, "still": still}))
        """
    )
    assert result["start"] < 1000  # a fresh interpreter: the growth is the reservation's
    assert result["reserved"] == result["highest"] + 1000
    assert result["grown"] > result["reserved"]
    assert result["last"] <= result["reserved"]
    assert result["after"] == result["grown"]  # 1000 sockets later: not grown again
    assert result["still"] == result["opened"]  # what grew the table is closed again


def test_the_room_stops_below_the_open_files_limit() -> None:
    result = run(
        """
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
        before = len(open_descriptors())
        reserved = reserve_descriptors(5000)
        print(json.dumps({"reserved": reserved, "size": table_size(),
                          "before": before, "after": len(open_descriptors())}))
        """
    )
    assert result["reserved"] == 199
    assert result["size"] >= 200
    assert result["after"] == result["before"]


def test_nothing_is_reserved_for_no_room_or_at_the_limit() -> None:
    result = run(
        """
        nothing = reserve_descriptors(0)
        highest = max(open_descriptors())
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
        at_limit = reserve_descriptors(100)
        print(json.dumps({"nothing": nothing, "at_limit": at_limit}))
        """
    )
    assert result == {"nothing": 0, "at_limit": 0}
